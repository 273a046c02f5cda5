package remote

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// A file truncated while its upload is being sent makes that PUT's
// source end early: the upload is sent again as the file is now, and
// close succeeds. The soak test met this: a write's O_TRUNC racing a SYNC
// turn's upload failed the close and, since the peer was taken for down,
// every request to it for a second, with EIO.
func TestUploadOfCopyTruncatedMeanwhile(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	seen, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var put bool
	var sent int
	// Holds the upload after 1 MiB of its payload, so that the client
	// stalls in the middle of sending the rest (more than the sockets
	// buffer) until released.
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		switch {
		case !put:
			put = bytes.Contains(b, []byte("PUT f "))
		case sent < 1<<20:
			sent += len(b)
		default:
			once.Do(func() { close(seen) })
			<-release
		}
		return b, false
	}, nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)

	fh := s.open(t, "bob", "f", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	block := bytes.Repeat([]byte("x"), 1<<20)
	for off := int64(0); off < 32<<20; off += int64(len(block)) {
		if _, err := s.WriteAt(ctx, fh, block, off); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(ctx, fh) }()
	testutil.Recv(t, "1 MiB of the upload's payload", seen)
	if _, err := s.Truncate(ctx, "bob", "f", 5); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := testutil.Recv(t, "the flush", flushed); err != nil {
		t.Fatalf("close after the copy was truncated during its upload: %v", err)
	}
	s.release(t, fh)
	if got := bob.content(t, "f"); got != "xxxxx" {
		t.Errorf("the peer holds %d bytes, want the truncated copy's 5", len(got))
	}
}

// A write that lands while another handle's close waits for the round,
// with only a chmod pending at the time, is uploaded (it used to be marked
// clean after the chmod-only upload, and the writer's close then
// succeeded without storing it).
func TestWriteDuringHeldChmodUploadIsStored(t *testing.T) {
	for _, flags := range []struct {
		name  string
		other int
	}{
		{"other handle read-only", os.O_RDONLY},
		{"other handle read-write", os.O_RDWR},
	} {
		t.Run(flags.name, func(t *testing.T) {
			c := newCluster(t)
			s, ctx := c.store, testCtx(t)
			c.bob.writeFile(t, "c.txt", []byte("hello"), 0o644)

			fh1 := s.open(t, "bob", "c.txt", os.O_RDWR, 0)
			fh2 := s.open(t, "bob", "c.txt", flags.other, 0)
			if _, err := s.Chmod(ctx, "bob", "c.txt", 0o600); err != nil {
				t.Fatalf("Chmod: %v", err)
			}
			endRound := c.holdRound(t)
			done := s.flushAsync(t, fh2) // close(fd2)
			// Either fd2's close waits for the round, or (a reader) it
			// has nothing to wait for.
			var flushed bool
			var err2 error
			testutil.Eventually(t, "close(fd2) to return or wait for the round", func() bool {
				select {
				case err2 = <-done:
					flushed = true
					return true
				default:
					return goroutineIn("remote.(*Store).waitTurn")
				}
			})
			s.write(t, fh1, "J", 0)
			if c.bob.content(t, "c.txt") != "hello" {
				t.Errorf("the peer changed during another peer's turn")
			}
			endRound()
			if !flushed {
				err2 = testutil.Recv(t, "close(fd2)", done)
			}
			if err2 != nil {
				t.Errorf("close(fd2): %v", err2)
			}
			if err := s.Flush(ctx, fh1); err != nil {
				t.Errorf("close(fd1): %v", err)
			}
			s.release(t, fh2)
			s.release(t, fh1)
			if got := c.bob.content(t, "c.txt"); got != "Jello" {
				t.Errorf("peer has %q after both closes succeeded, want %q", got, "Jello")
			}
			if got := c.bob.mode(t, "c.txt"); got != 0o600 {
				t.Errorf("peer's mode %#o, want 0600", got)
			}
			s.noLeftovers(t)
		})
	}
}

// An upload made while another peer holds the write token waits for this
// peer's turn: during the round the peer still has the old content.
func TestUploadHeldDuringRound(t *testing.T) {
	c := newCluster(t)
	s := c.store
	c.bob.writeFile(t, "f", []byte("old"), 0o644)
	fh := s.open(t, "bob", "f", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, fh, "new", 0)

	endRound := c.holdRound(t)
	done := s.flushAsync(t, fh)
	waitHeld(t)
	if got := c.bob.content(t, "f"); got != "old" {
		t.Errorf("peer has %q during another peer's turn", got)
	}
	endRound()
	if err := testutil.Recv(t, "close()", done); err != nil {
		t.Errorf("close(): %v", err)
	}
	s.release(t, fh)
	if got := c.bob.content(t, "f"); got != "new" {
		t.Errorf("peer has %q after the round", got)
	}
	s.noLeftovers(t)
}

// A copy whose upload failed, restored from the cache by the next run of
// the mount, is uploaded on the same condition as before the restart:
// if another writer replaced (or created) the file meanwhile, theirs is
// kept and this copy goes beside it as a conflict copy; otherwise it is
// stored. Before bases were recorded, the restored copy replaced whatever
// the peer held: another writer's data was lost without a word.
func TestRestoredCopyUploadIsConditional(t *testing.T) {
	for _, tc := range []struct {
		name           string
		existed, other bool
		truncate       bool // opened without O_TRUNC, then truncated (a shell's "> f")
		staleCopy      bool // the cache held a clean copy of an older version
	}{
		{name: "replaced meanwhile", existed: true, other: true},
		{name: "created meanwhile", other: true},
		{name: "untouched", existed: true},
		{name: "still new"},
		{name: "truncated, replaced meanwhile", existed: true, other: true, truncate: true},
		{name: "truncated, untouched", existed: true, truncate: true},
		{name: "truncated over a stale copy, untouched", existed: true, truncate: true, staleCopy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bob := startPeer(t, t.TempDir())
			if tc.existed {
				bob.writeFile(t, "f", []byte("v1"), 0o644)
			}
			dir := t.TempDir()
			ctx := testCtx(t)

			// First run: the upload fails (the peer cannot be reached),
			// and the mount stops with the copy unuploaded.
			s1 := newStore(t, dir)
			s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
			if tc.staleCopy {
				fh := s1.open(t, "bob", "f", os.O_RDONLY, 0)
				if _, err := s1.ReadAt(ctx, fh, make([]byte, 16), 0); err != nil {
					t.Fatal(err)
				}
				s1.release(t, fh)
				bob.writeFile(t, "f", []byte("v2"), 0o644)
				future(t, bob.path("f"), 1)
				s1.InvalidateAll() // as after --attr-timeout: the open sees v2
			}
			flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
			if tc.truncate {
				flags = os.O_WRONLY
			}
			fh := s1.open(t, "bob", "f", flags, 0o644)
			if tc.truncate {
				if _, err := s1.Truncate(ctx, "bob", "f", 0); err != nil {
					t.Fatal(err)
				}
			}
			s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: testutil.ClosedAddr(t)}})
			s1.write(t, fh, "mine", 0)
			if err := s1.Flush(ctx, fh); err == nil {
				t.Fatal("upload to an unreachable peer succeeded")
			}
			s1.release(t, fh)
			s1.close()

			if tc.other {
				bob.writeFile(t, "f", []byte("theirs"), 0o644)
				future(t, bob.path("f"), 2) // surely another version
			}

			// Next run: the copy is restored and uploaded.
			s2 := newStore(t, dir)
			s2.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
			err := s2.FlushAll(ctx)
			names := s2.names(t, "bob", "")
			if !tc.other {
				if err != nil {
					t.Fatalf("upload after the restart: %v", err)
				}
				if got := bob.content(t, "f"); got != "mine" || len(names) != 1 {
					t.Fatalf("peer holds %q (entries %v), want this writer's %q alone", got, names, "mine")
				}
				return
			}
			if errnoOf(err) != syscall.ESTALE {
				t.Errorf("upload after the restart: %v, want ESTALE (a conflict)", err)
			}
			if got := bob.content(t, "f"); got != "theirs" {
				t.Errorf("peer's f = %q: the other writer's %q was replaced", got, "theirs")
			}
			var copies []string
			for _, n := range names {
				if strings.HasPrefix(n, "f.conflict-me-") {
					copies = append(copies, n)
				}
			}
			if len(copies) != 1 || bob.content(t, copies[0]) != "mine" {
				t.Errorf("entries %v: want one conflict copy holding %q", names, "mine")
			}
		})
	}
}

// Writes made while an upload was on its way continue from what that
// upload stored: after a restart their upload is conditional on the
// stored version, not on the one the file was opened at, so it is no
// conflict with this writer's own upload.
func TestRestoredCopyWrittenDuringUploadIsNoConflict(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "f", []byte("v1"), 0o644)
	dir := t.TempDir()
	ctx := testCtx(t)
	seen, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	// Holds the first upload's PUT line until released.
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("PUT f ")) {
			once.Do(func() {
				close(seen)
				<-release
			})
		}
		return b, false
	}, nil)

	s1 := newStore(t, dir)
	s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	fh := s1.open(t, "bob", "f", os.O_WRONLY|os.O_TRUNC, 0)
	s1.write(t, fh, "first", 0)
	flushed := make(chan error, 1)
	go func() { flushed <- s1.Flush(ctx, fh) }()
	testutil.Recv(t, "the upload's PUT", seen)
	s1.write(t, fh, "FIRST, then more", 0) // while "first" is on its way
	close(release)
	if err := testutil.Recv(t, "the flush", flushed); err != nil {
		t.Fatal(err)
	}
	if got := bob.content(t, "f"); got != "first" {
		t.Fatalf("peer holds %q, want the upload's %q", got, "first")
	}
	// The rest cannot be uploaded before the mount stops.
	s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: testutil.ClosedAddr(t)}})
	if err := s1.Flush(ctx, fh); err == nil {
		t.Fatal("upload to an unreachable peer succeeded")
	}
	s1.release(t, fh)
	s1.close()

	s2 := newStore(t, dir)
	s2.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := s2.FlushAll(ctx); err != nil {
		t.Fatalf("upload after the restart: %v", err)
	}
	if names := s2.names(t, "bob", ""); len(names) != 1 || bob.content(t, "f") != "FIRST, then more" {
		t.Errorf("peer holds %v, f = %q; want f alone with the last writes", names, bob.content(t, "f"))
	}
}

// The version of an upload that failed but reached the peer (its answer
// was lost) is kept with the copy: after a restart, the peer holding it
// is still no conflict, and the writer's later content replaces it.
func TestRestoredCopyRemembersFailedAttempt(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	dir := t.TempDir()
	ctx := testCtx(t)
	s1 := newStore(t, dir)
	fh := loseTwoAttempts(t, s1, bob)
	s1.release(t, fh)
	s1.close()

	s2 := newStore(t, dir)
	s2.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := s2.FlushAll(ctx); err != nil {
		t.Errorf("upload after the restart: %v, want success", err)
	}
	if names := s2.names(t, "bob", ""); len(names) != 1 || bob.content(t, "f") != "attempt TWO" {
		t.Errorf("peer holds %v, f = %q; want f alone with the last text", names, bob.content(t, "f"))
	}
}

// TestNewFileModeZero: a file created here with mode 0000 (install -m
// 000, a umask of 0777) is stored 0000 on the peer, which makes new files
// 0644: the SETATTR after the PUT compared the mode with the new file's
// remote attributes (none: mode 0) and was not sent, leaving it readable
// by all there. On a plain peer and one that keeps owners and setuid
// bits.
func TestNewFileModeZero(t *testing.T) {
	for _, opts := range []export.Options{{}, {AllowSetuid: true, Owners: true}} {
		opts.Export = t.TempDir()
		dan := startPeerWith(t, opts)
		s := newStore(t, t.TempDir())
		s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: dan.addr}})
		ctx := testCtx(t)
		statRoot(t, s, "dan")
		fh := s.open(t, "dan", "f", os.O_CREATE|os.O_WRONLY, 0)
		if err := s.Flush(ctx, fh); err != nil {
			t.Fatal(err)
		}
		s.release(t, fh)
		if m := dan.mode(t, "f"); m.Perm() != 0 {
			t.Errorf("owners=%v: a file created 0000 here is %v on the peer", opts.Owners, m)
		}
		if fi, err := s.Stat(ctx, "dan", "f"); err != nil || fi.Mode().Perm() != 0 {
			t.Errorf("owners=%v: shown as %v, %v", opts.Owners, fi.Mode(), err)
		}
	}
}
