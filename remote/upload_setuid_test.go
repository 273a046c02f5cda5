package remote

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/peerproto"
)

// TestWriteKeepingSetuid: a peer stores new content without setuid and
// setgid (export.contentMode) unless the PUT says setid, as the mount
// does for a writer that kept them here (a write the mount did not clear
// them for: root's). On a peer with --allow-setuid the file then ends as
// on a local disk, whether replaced by a rename or written in place
// (other hard links), and the mount shows it; a default peer drops them,
// and so does one where the content is not the owner's (a peer that does
// not keep owners, another user's program), as the mount then shows. On
// a peer that also keeps owners, the new content keeps the file's owner
// (keep-owner), with no chown after the PUT: no SETATTR with uid= goes.
func TestWriteKeepingSetuid(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("skipping: owners need root on the peer")
	}
	const suid = 0o755 | os.ModeSetuid | os.ModeSetgid
	for _, tc := range []struct {
		name   string
		opts   export.Options
		linked bool
		want   os.FileMode
	}{
		{"allow-setuid", export.Options{AllowSetuid: true}, false, suid},
		{"allow-setuid, other hard links", export.Options{AllowSetuid: true}, true, suid},
		{"default", export.Options{}, false, 0o755},
		{"owners, allow-setuid, other hard links", export.Options{Owners: true, AllowSetuid: true}, true, suid},
		{"owners, allow-setuid", export.Options{Owners: true, AllowSetuid: true}, false, suid},
		// Another user's program on a peer that does not keep owners:
		// the content is the peer's own, and keeps neither bit.
		{"allow-setuid, another user's", export.Options{AllowSetuid: true}, false, 0o755},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Export = t.TempDir()
			dan := startPeerWith(t, tc.opts)
			var chowns atomic.Int32
			proxy := tapProxy(t, dan.addr, func(b []byte) ([]byte, bool) {
				if bytes.Contains(b, []byte("SETATTR prog")) && bytes.Contains(b, []byte("uid=")) {
					chowns.Add(1)
				}
				return b, false
			}, nil)
			s := newStore(t, t.TempDir())
			s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: proxy}})
			dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), 0o644)
			uid, gid := 0, 0
			if tc.opts.Owners || strings.Contains(tc.name, "another user's") {
				uid, gid = 4242, 4343
				if err := os.Chown(dan.path("prog"), uid, gid); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.opts.Owners {
				uid, gid = 0, 0 // what the peer's own content has
			}
			if err := os.Chmod(dan.path("prog"), suid); err != nil {
				t.Fatal(err)
			}
			if tc.linked {
				if err := os.Link(dan.path("prog"), dan.path("link")); err != nil {
					t.Fatal(err)
				}
			}
			fh := s.open(t, "dan", "prog", os.O_WRONLY|os.O_APPEND, 0)
			s.write(t, fh, "echo more\n", 14)
			if err := s.Flush(testCtx(t), fh); err != nil {
				t.Fatal(err)
			}
			s.release(t, fh)
			if got := dan.content(t, "prog"); got != "#!/bin/sh\nid\necho more\n" {
				t.Fatalf("the peer's file holds %q", got)
			}
			fi, err := os.Stat(dan.path("prog"))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid); got != tc.want {
				t.Errorf("on the peer after the upload: %v, want %v", got, tc.want)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uint32(uid) || st.Gid != uint32(gid) {
				t.Errorf("on the peer after the upload: owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
			}
			if n := chowns.Load(); n != 0 {
				t.Errorf("%d SETATTRs with uid= after the upload", n)
			}
			if fi, err := s.Stat(testCtx(t), "dan", "prog"); err != nil || fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid) != tc.want {
				t.Errorf("the mount shows %v (%v), want %v", fi.Mode(), err, tc.want)
			}
		})
	}
}

// holdFirst returns a proxy to addr that holds the first answer
// containing what (peer -> client) until release is closed; held is
// closed once it is held.
func holdFirst(t *testing.T, addr, what string) (proxy string, held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	proxy = tapProxy(t, addr, nil, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte(what)) {
			once.Do(func() {
				close(held)
				<-release
			})
		}
		return b, false
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return proxy, held, release
}

// TestSetuidNotSetAgainOnOthersBytes: root's write to a setuid file is
// being uploaded (its PUT says setid; held before its answer) when
// another user writes to it, which clears the bits here first (fusefs:
// Chmod, then WriteAt). The PUT reads the copy as it sends it: her write
// waits for the upload to end (the Chmod that drops the bits does), so
// her bytes are never in an upload that keeps them, and her own upload
// stores them without.
func TestSetuidNotSetAgainOnOthersBytes(t *testing.T) {
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	proxy, held, release := holdFirst(t, dan.addr, "PUT DONE")
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: proxy}})
	ctx := testCtx(t)
	dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), 0o777|os.ModeSetuid)
	root := s.open(t, "dan", "prog", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, root, "#!/bin/sh\n"+strings.Repeat("#", 100<<10)+"\n", 0) // one PUT, no stream
	done := s.flushAsync(t, root)
	<-held
	// Her write, as fusefs does it for a caller without CAP_FSETID.
	wrote := make(chan error, 1)
	go func() {
		if _, err := s.Chmod(ctx, "dan", "prog", 0o777); err != nil {
			wrote <- err
			return
		}
		_, err := s.WriteAt(ctx, root, []byte("EVIL"), 0) // (her handle's write: the same copy)
		wrote <- err
	}()
	select {
	case err := <-wrote:
		t.Fatalf("her write went through while root's setid upload was under way (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dan.path("prog"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(dan.content(t, "prog"), "EVIL") {
		t.Fatalf("root's upload carried a write made after the bits went here (mode there %v)", fi.Mode())
	}
	// (Root's content may show its setuid bit or not by now: her chmod,
	// done as root's PUT ended, has the upload clear them after it, as
	// her write clears them on a local disk.)
	if err := s.Flush(ctx, root); err != nil {
		t.Fatal(err)
	}
	s.release(t, root)
	if fi, err = os.Stat(dan.path("prog")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dan.content(t, "prog"), "EVIL") || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
		t.Errorf("after her upload: %q... %v, want her bytes without the bits", dan.content(t, "prog")[:4], fi.Mode())
	}
}

// TestSetuidStreamDroppedOnOthersBytes: the same during a streamed
// upload (root writes 2 MiB: it goes while written), which does not
// wait (it lasts as long as its writer writes): her write there makes
// the stream end without END, and the copy goes whole, without setid:
// her bytes are never setuid on the peer.
func TestSetuidStreamDroppedOnOthersBytes(t *testing.T) {
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	proxy, held, release := holdFirst(t, dan.addr, "PUT OK")
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: proxy}})
	ctx := testCtx(t)
	dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), 0o777|os.ModeSetuid)
	root := s.open(t, "dan", "prog", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, root, "#!/bin/sh\n"+strings.Repeat("#", 2<<20)+"\n", 0) // streamed: PUT OK comes
	done := s.flushAsync(t, root)
	<-held
	if _, err := s.Chmod(ctx, "dan", "prog", 0o777); err != nil {
		t.Fatal(err)
	}
	her := s.open(t, "dan", "prog", os.O_WRONLY, 0)
	s.write(t, her, "EVIL", 0)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dan.path("prog"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(dan.content(t, "prog"), "EVIL") && fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
		t.Errorf("another user's bytes are %v on the peer", fi.Mode())
	}
	s.release(t, root)
	s.release(t, her)
}

// TestSetuidDropWaitBounded: the chmod that drops the bits waits for a
// setid upload under way only as long as its request lasts: with the
// peer stalled, it fails when its context ends, and does not wait where
// no upload says setid (the file has no bits left).
func TestSetuidDropWaitBounded(t *testing.T) {
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	proxy, held, release := holdFirst(t, dan.addr, "PUT DONE")
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: proxy}})
	dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), 0o777|os.ModeSetuid)
	root := s.open(t, "dan", "prog", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, root, "#!/bin/sh\n"+strings.Repeat("#", 100<<10)+"\n", 0)
	done := s.flushAsync(t, root)
	<-held
	short, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Chmod(short, "dan", "prog", 0o777); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("chmod u-s while a setid upload is held: %v, want it to end with its request (context deadline)", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("chmod u-s waited %v for a stalled peer", took)
	}
	// A chmod that keeps the bits drops nothing: no wait.
	keep, cancelKeep := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancelKeep()
	if _, err := s.Chmod(keep, "dan", "prog", 0o755|os.ModeSetuid); err != nil {
		t.Errorf("chmod 4755 (the setuid bit kept) while a setid upload is held: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.release(t, root)
}

// TestConflictCopyOfSetuidFile: a conflict copy is a new file: it gets no
// setuid bit of the file it copies, on a peer that allows them too.
func TestConflictCopyOfSetuidFile(t *testing.T) {
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: dan.addr}})
	ctx := testCtx(t)
	dan.writeFile(t, "prog", []byte("v1"), 0o755|os.ModeSetuid)
	if _, err := s.Stat(ctx, "dan", "prog"); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "dan", "prog", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, fh, "mine", 0)
	dan.writeFile(t, "prog", []byte("theirs"), 0o755|os.ModeSetuid)
	future(t, dan.path("prog"), 1)
	_ = s.Flush(ctx, fh) // ESTALE: the writer hears its copy was diverted
	s.release(t, fh)
	des, err := os.ReadDir(dan.export)
	if err != nil {
		t.Fatal(err)
	}
	copies := 0
	for _, d := range des {
		if d.Name() == "prog" {
			continue
		}
		copies++
		fi, err := os.Stat(dan.path(d.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
			t.Errorf("conflict copy %s: %v", d.Name(), fi.Mode())
		}
	}
	if copies != 1 {
		t.Errorf("%d other files beside prog, want one conflict copy", copies)
	}
}

// TestNewSetuidFileKeepsBits: a new file created with setuid and setgid
// bits (open(O_CREAT, 06755), as root may) gets them on a peer that
// allows them: the SETATTR after its PUT gives them, as before setid.
func TestNewSetuidFileKeepsBits(t *testing.T) {
	dan := startPeerWith(t, export.Options{Export: t.TempDir(), AllowSetuid: true})
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: dan.addr}})
	fh := s.open(t, "dan", "prog", os.O_CREATE|os.O_WRONLY, 0o755|os.ModeSetuid|os.ModeSetgid)
	s.write(t, fh, "#!/bin/sh\nid\n", 0)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	const want = 0o755 | os.ModeSetuid | os.ModeSetgid
	fi, err := os.Stat(dan.path("prog"))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid); got != want {
		t.Errorf("a new setuid file on the peer: %v, want %v", got, want)
	}
	if fi, err := s.Stat(testCtx(t), "dan", "prog"); err != nil || fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid) != want {
		t.Errorf("the mount shows %v (%v), want %v", fi.Mode(), err, want)
	}
}
