package remote

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

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

// future sets path's mtime hours ahead: a version no earlier write of the
// test can share, whatever the clock's granularity.
func future(t *testing.T, path string, hours int) {
	t.Helper()
	when := time.Now().Add(time.Duration(hours) * time.Hour)
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
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

func TestVersionEncoding(t *testing.T) {
	v, ok := digestOf(bytes.NewReader([]byte("hello")), 5)
	if !ok {
		t.Fatal("versionOf failed")
	}
	if got := parseDigest(v.String()); got == nil || *got != v {
		t.Errorf("parseDigest(%q) = %v, want %v", v.String(), got, v)
	}
	for _, bad := range []string{"", "5", "x:00", "5:zz", "5:abcd", "-1:" + strings.Repeat("0", 64)} {
		if got := parseDigest(bad); got != nil {
			t.Errorf("parseDigest(%q) = %v, want nil", bad, got)
		}
	}
}
