package remote

// The second review's tests (helper session) of the kernel invalidation
// of other writers' changes: this mount's own changes, slow or queued,
// are never taken for another writer's, and another writer's report
// never undoes one of them still on its way.

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// rv3Cache is rvCache with "" listing directory d (watched) and d
// listing file x (watched), both trusted past the attribute timeout.
func rv3Cache(t *testing.T) (*attrCache, *rvClock, uint64) {
	a, c, ep := rvCache()
	list := func(dir string, es ...peerproto.Entry) {
		call, _ := a.beginList(dir)
		a.endList(dir, call, es, nil)
	}
	rvAnswer(t, a, ep)
	dirE := peerproto.Entry{Name: "d", Type: peerproto.TypeDir, Mode: 0o755, Mtime: 100}
	xE := peerproto.Entry{Name: "x", Type: peerproto.TypeFile, Mode: 0o644, Size: 3, Mtime: 100}
	list("", dirE)
	list("d", xE)
	rvAnswer(t, a, ep)
	list("", dirE)
	list("d", xE)
	rvAnswer(t, a, ep)
	if !a.watchedLocked("d") {
		t.Fatal("d not watched")
	}
	return a, c, ep
}

// Q1b: a chmod of directory d written behind waits in the queue (a long
// rm -r ahead of it, the sender in its retry pause) more than ownQuiet;
// meanwhile another writer makes a file in d, and the peer reports d as
// it is there (mode 0755, the chmod not carried out yet). The mount's own
// chmod must still show.
func TestRV3QueuedChmodRevertedByForeignReport(t *testing.T) {
	a, c, ep := rv3Cache(t)
	a.pending = func(path string, in bool) bool { return path == "d" } // the chmod's queue
	a.changedHere("d", func(e *peerproto.Entry) { e.Mode = 0o700 })
	if e, _, _ := a.cached("d"); e.Mode != 0o700 {
		t.Fatalf("chmod not shown: %o", e.Mode)
	}
	c.t = c.t.Add(3 * time.Second) // still queued
	a.onEvent(ep, peerproto.Changed{Entry: peerproto.Entry{Name: "d/new", Type: peerproto.TypeFile, Mode: 0o644, Size: 1, Mtime: 105}})
	a.onEvent(ep, peerproto.Changed{Entry: peerproto.Entry{Name: "d", Type: peerproto.TypeDir, Mode: 0o755, Mtime: 105}})
	e, exists, ok := a.cached("d")
	if ok && exists && e.Mode != 0o700 {
		t.Errorf("this mount's chmod 700 of d, still queued, shows as %o after another writer's change in d", e.Mode)
	}
}

// Q1b through a real peer: a chmod of directory d, written behind, whose
// batch takes 3 s to be carried out (the network or the peer slow: the
// request held on its way); another writer makes a file in d meanwhile.
// The mount's own chmod must still show while it is on its way.
func TestRV3SlowBatchChmodRevertedByForeignChange(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	s, _ := watchedStore(t, bob, gateProxy(t, bob.addr, "SETATTR", release))
	log := &foreignLog{}
	s.WatchEntries(log.add)
	listWatched(t, s, "")
	listWatched(t, s, "d")
	ctx := testCtx(t)
	stat(t, s, "d")
	fi, err := s.Chmod(ctx, "bob", "d", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("chmod: %v", fi.Mode())
	}
	s.mu.Lock()
	p := s.peers["bob"]
	s.mu.Unlock()
	if !s.ns.moving("bob") {
		t.Skip("chmod of d not written behind")
	}
	time.Sleep(ownQuiet + 500*time.Millisecond)
	if err := os.WriteFile(bob.path("d/new"), []byte("bob's"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "d/new reported", func() bool {
		_, exists, ok := p.attrs.cached("d/new")
		return ok && exists
	})
	e, exists, ok := p.attrs.cached("d")
	if ok && exists && e.Mode&0o777 != 0o700 {
		t.Errorf("this mount's chmod 700 of d, on its way to the peer, shows as %o after another writer's change in d (told: %+v)", e.Mode&0o777, log.take())
	}
	open()
}

// Q1/Q5: the peer (its disk, the network) takes 2.5 s to get each of
// this mount's changes: its mark, set as the request goes, is older
// than ownQuiet when the change's report comes. Are this mount's own
// changes told to the kernel as another writer's?
func TestRV3SlowPeerOwnChangesForeign(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	verbs := [][]byte{[]byte("PUT "), []byte("MKDIR "), []byte("RENAME "), []byte("DELETE "), []byte("RMDIR "), []byte("SETATTR ")}
	slow := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		for _, v := range verbs {
			if bytes.Contains(b, v) {
				time.Sleep(2500 * time.Millisecond)
				break
			}
		}
		return b, false
	}, nil)
	if chs := ownWorkTold(t, bob, slow); len(chs) != 0 {
		t.Errorf("this mount's own changes, carried out 2.5 s after they went, told as another writer's: %+v", chs)
	}
}

// The same for a batch written behind that the peer takes long over (a
// slow disk, 128 operations): its first operations are carried out, and
// reported, 2.1 s after the batch went, and its answer comes a second
// later (emulated: the request held 2.1 s on its way, the answer 1 s).
func TestRV3SlowBatchOwnChangesForeign(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	for _, n := range []string{"d/f0", "d/f1", "d/f2", "d/f3"} {
		bobFile(t, bob, n, []byte("one"))
	}
	events := [][]byte{[]byte("CHANGED"), []byte("GONE"), []byte("TICK"), []byte("WATCH"), []byte("PONG"), []byte("UNWATCHED")}
	var armed atomic.Bool
	slow := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("DELETE ")) || bytes.Contains(b, []byte("RENAME ")) {
			time.Sleep(2100 * time.Millisecond)
			armed.Store(true)
		}
		return b, false
	}, func(b []byte) ([]byte, bool) {
		for _, e := range events {
			if bytes.Contains(b, e) {
				return b, false
			}
		}
		if armed.CompareAndSwap(true, false) {
			time.Sleep(time.Second)
		}
		return b, false
	})
	s, _, barrier := foreignStoreVia(t, bob, slow)
	ctx := testCtx(t)
	for _, n := range []string{"d/f0", "d/f1", "d/f2", "d/f3"} {
		stat(t, s, n)
	}
	if err := s.Rename(ctx, "bob", "d/f0", "d/g0"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"d/f1", "d/f2", "d/f3"} {
		if err := s.Remove(ctx, "bob", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if chs := barrier(); len(chs) != 0 {
		t.Errorf("this mount's own batch, carried out 2.1 s after it went, told as another writer's: %+v", chs)
	}
}

// This mount's own work on a watched tree, as a build that rotates its
// output does: d/out with three subdirectories (listed, so watched) is
// moved aside, or removed, then d/out is made again and filled. None of
// it is another writer's (the peer's UNWATCHED lines for the old tree
// included), and after a move the lookups of the new names ask the peer
// nothing (the review found 4 STATs and a LIST: the new d/out's listing
// dropped by the old one's UNWATCHED).
func TestRV3OwnTreeRotate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		aside func(t *testing.T, s *testStore)
		asks  bool // whether its own steps ask the peer (rmdir's emptiness checks)
	}{
		{"mv", func(t *testing.T, s *testStore) {
			if err := s.Rename(testCtx(t), "bob", "d/out", "d/out.old"); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"rm -r", func(t *testing.T, s *testStore) {
			ctx := testCtx(t)
			for i := range 3 {
				if err := s.Remove(ctx, "bob", fmt.Sprintf("d/out/s%d/f", i)); err != nil {
					t.Fatal(err)
				}
				if err := s.Rmdir(ctx, "bob", fmt.Sprintf("d/out/s%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Rmdir(ctx, "bob", "d/out"); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bob := startPeer(t, t.TempDir())
			bobFile(t, bob, "d/a", []byte("one"))
			s, vc, barrier := foreignStoreVia(t, bob, "")
			ctx := testCtx(t)
			mk := func(p string) {
				t.Helper()
				if _, err := s.Mkdir(ctx, "bob", p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			put := func(p string) {
				t.Helper()
				stat(t, s, p) // the kernel's lookup before its create
				fh := s.open(t, "bob", p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
				s.write(t, fh, "x", 0)
				if err := s.Flush(ctx, fh); err != nil {
					t.Fatal(err)
				}
				s.release(t, fh)
			}
			mk("d/out")
			for i := range 3 {
				mk(fmt.Sprintf("d/out/s%d", i))
				put(fmt.Sprintf("d/out/s%d/f", i))
			}
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(watchTestTTL)
			listWatched(t, s, "d/out")
			for i := range 3 {
				listWatched(t, s, fmt.Sprintf("d/out/s%d", i))
			}
			time.Sleep(ownQuiet + 200*time.Millisecond)
			barrier()
			vc.take()

			tc.aside(t, s)
			mk("d/out")
			for i := range 20 {
				put(fmt.Sprintf("d/out/g%d", i))
			}
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			chs := barrier()
			n := vc.take()
			if !tc.asks && n["STAT"]+n["LIST"] != 0 {
				t.Errorf("requests for %s, mkdir, 20 lookups and creates: STAT %d LIST %d (all %v)", tc.name, n["STAT"], n["LIST"], n)
			}
			if len(chs) != 0 {
				t.Errorf("this mount's own %s of d/out told as another writer's change: %+v", tc.name, chs)
			}
		})
	}
}
