package remote

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// watchTTL is the attribute timeout of these tests: short, so that what
// outlives it is seen to.
const watchTestTTL = 200 * time.Millisecond

// watchedStore is a Store with a short attribute timeout on bob (a real
// peer, maybe through a proxy at addr) and a counter of its requests.
func watchedStore(t *testing.T, bob *testPeer, addr string) (*testStore, *verbCounter) {
	t.Helper()
	vc := &verbCounter{n: map[string]int{}}
	s := newStoreWith(t, t.TempDir(), func(o *Options) {
		o.Observer = vc
		o.AttrTTL = watchTestTTL
		o.WatchTTL = DefaultWatchTTL
	})
	if addr == "" {
		addr = bob.addr
	}
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: addr}})
	return s, vc
}

// watching reports whether bob's dir is watched for s now.
func (s *testStore) watching(dir string) bool {
	s.mu.Lock()
	p := s.peers["bob"]
	s.mu.Unlock()
	if p == nil {
		return false
	}
	p.attrs.mu.Lock()
	defer p.attrs.mu.Unlock()
	return p.attrs.epoch != 0 && p.attrs.watchedLocked(dir)
}

// listWatched lists dir until a listing taken while it was watched is
// in the cache: the first listing asks for the watch, the one after the
// attribute timeout is trusted past it.
func listWatched(t *testing.T, s *testStore, dir string) {
	t.Helper()
	s.names(t, "bob", dir)
	testutil.Eventually(t, "bob watching "+dir, func() bool { return s.watching(dir) })
	time.Sleep(watchTestTTL)
	s.names(t, "bob", dir)
}

// stat returns what s says of bob's path: its FileInfo, or nil if it
// does not exist.
func stat(t *testing.T, s *testStore, path string) fs.FileInfo {
	t.Helper()
	fi, err := s.Stat(testCtx(t), "bob", path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("Stat(%s): %v", path, err)
	}
	return fi
}

// A directory the peer watches is listed once: lookups and listings in
// it long after the attribute timeout ask the peer nothing, and changes
// made there behind the mount's back (here, on the peer's disk: made,
// written, removed) show as soon as they are reported, still without a
// request.
func TestWatchedListingOutlivesTimeout(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	bobFile(t, bob, "d/b", []byte("two"))
	s, vc := watchedStore(t, bob, "")
	listWatched(t, s, "")
	listWatched(t, s, "d")
	stat(t, s, "") // the root's own attributes, asked while it is watched
	vc.take()
	time.Sleep(3 * watchTestTTL)
	if fi := stat(t, s, ""); fi == nil || !fi.IsDir() {
		t.Fatalf("the root: %v", fi)
	}
	if fi := stat(t, s, "d"); fi == nil || !fi.IsDir() {
		t.Fatalf("d: %v", fi)
	}
	if fi := stat(t, s, "d/a"); fi == nil || fi.Size() != 3 {
		t.Fatalf("d/a: %v", fi)
	}
	if fi := stat(t, s, "d/missing"); fi != nil {
		t.Fatalf("d/missing: %v", fi)
	}
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("d lists %v", got)
	}
	if n := vc.take(); len(n) != 0 {
		t.Fatalf("requests %v, long after the attribute timeout, for a watched directory", n)
	}

	bobFile(t, bob, "d/new", []byte("fresh"))
	if err := os.WriteFile(bob.path("d/a"), []byte("one and more"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(bob.path("d/b")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the changes on bob's disk seen", func() bool {
		fa, fn := stat(t, s, "d/a"), stat(t, s, "d/new")
		return fa != nil && fa.Size() == 12 && fn != nil && fn.Size() == 5 && stat(t, s, "d/b") == nil
	})
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"a", "new"}) {
		t.Fatalf("d lists %v", got)
	}
	if n := vc.take(); n["LIST"]+n["STAT"] != 0 {
		t.Errorf("requests %v: the changes were asked for, not taken from the events", n)
	}
	// d's own times changed with its entries: asked again, once.
	stat(t, s, "d")
	if err := os.Chmod(bob.path(""), 0o700); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the root's new mode seen", func() bool { return stat(t, s, "").Mode().Perm() == 0o700 })
}

// What this mount changes in a watched directory is reported back to it
// too: it is known already (PUT DONE), and the listing stays trusted,
// with the new file in it.
func TestWatchedListingOwnChanges(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	s, vc := watchedStore(t, bob, "")
	listWatched(t, s, "")
	listWatched(t, s, "d")
	fh := s.open(t, "bob", "d/mine", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "written here", 0)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	time.Sleep(3 * watchTestTTL)
	vc.take()
	if fi := stat(t, s, "d/mine"); fi == nil || fi.Size() != 12 {
		t.Fatalf("d/mine: %v", fi)
	}
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"a", "mine"}) {
		t.Fatalf("d lists %v", got)
	}
	if n := vc.take(); len(n) != 0 {
		t.Errorf("requests %v: this mount's own upload made the watched listing stale", n)
	}
}

// What events cannot vouch for is trusted for the attribute timeout
// only: a file with another hard link (changed through it, in another
// directory, it is reported there), and everything once the event
// connection is gone (the peer stopped).
func TestWatchedListingLimits(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	bobFile(t, bob, "e/x", []byte("x"))
	if err := os.Link(bob.path("e/x"), bob.path("d/linked")); err != nil {
		t.Fatal(err)
	}
	proxy := newRestartProxy(t, bob.addr, nil)
	s, vc := watchedStore(t, bob, proxy.addr)
	listWatched(t, s, "")
	listWatched(t, s, "d")
	time.Sleep(2 * watchTestTTL)
	vc.take()
	// Changed through its other name, in a directory not watched.
	if err := os.WriteFile(bob.path("e/x"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi := stat(t, s, "d/linked"); fi == nil || fi.Size() != 7 {
		t.Fatalf("d/linked: %v, want the 7 bytes written through e/x", fi)
	}
	if n := vc.take(); n["STAT"]+n["LIST"] == 0 {
		t.Errorf("requests %v: a file with two names answered from the watched listing", n)
	}

	proxy.stop()
	testutil.Eventually(t, "the silent event connection taken for dead", func() bool { return !s.watching("d") })
	time.Sleep(watchTestTTL)
	if fi, err := s.Stat(testCtx(t), "bob", "d/a"); err == nil {
		t.Fatalf("with the peer unreachable and its events gone, d/a still answered from the listing: %v", fi)
	}
}

// A change to a watched directory while its LIST is on its way: the
// listing may predate it, so it is trusted for the attribute timeout
// only, and the change shows once that is over.
func TestWatchedListingChangedWhileListed(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	var hold atomic.Bool
	held, release := make(chan struct{}, 1), make(chan struct{})
	proxy := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		if hold.Load() && bytes.HasPrefix(b, []byte("LIST OK")) {
			hold.Store(false)
			held <- struct{}{}
			<-release
		}
		return b, false
	})
	s, _ := watchedStore(t, bob, proxy)
	listWatched(t, s, "")
	listWatched(t, s, "d")
	time.Sleep(2 * watchTestTTL) // the listing is gone from the attribute timeout's view; not from the watch's
	s.forgetListing("d")
	hold.Store(true)
	done := make(chan []string, 1)
	go func() { done <- s.names(t, "bob", "d") }()
	<-held
	// The LIST was read on bob; now the directory changes, and the
	// event about it comes before the listing does.
	before := s.eventsAbout("d")
	bobFile(t, bob, "d/late", []byte("late"))
	testutil.Eventually(t, "the event about d/late", func() bool { return s.eventsAbout("d") != before })
	close(release)
	<-done
	testutil.Eventually(t, "d/late seen", func() bool { return stat(t, s, "d/late") != nil })
}

// eventsAbout returns the number of the last event about bob's dir or
// its entries that s took (attrCache.gens).
func (s *testStore) eventsAbout(dir string) uint64 {
	s.mu.Lock()
	p := s.peers["bob"]
	s.mu.Unlock()
	p.attrs.mu.Lock()
	defer p.attrs.mu.Unlock()
	return p.attrs.genLocked(dir)
}

// forgetListing drops what s knows of bob's dir (as a new mount would
// know nothing of it).
func (s *testStore) forgetListing(dir string) {
	s.mu.Lock()
	p := s.peers["bob"]
	s.mu.Unlock()
	p.attrs.mu.Lock()
	p.attrs.delDirLocked(dir)
	for k := range p.attrs.stats {
		if parent(k) == dir {
			p.attrs.delStatLocked(k)
		}
	}
	p.attrs.mu.Unlock()
}

// A watched directory moved on the peer: what was listed of it is not
// answered for its old path (its watch ends, UNWATCHED).
func TestWatchedDirectoryMoved(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/sub/f", []byte("one"))
	s, _ := watchedStore(t, bob, "")
	listWatched(t, s, "")
	listWatched(t, s, "d")
	listWatched(t, s, "d/sub")
	if err := os.Rename(bob.path("d"), bob.path("moved")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "d/sub/f gone from its old path", func() bool {
		_, err := s.Stat(testCtx(t), "bob", "d/sub/f")
		return errors.Is(err, fs.ErrNotExist)
	})
	if fi := stat(t, s, "moved/sub/f"); fi == nil || fi.Size() != 3 {
		t.Fatalf("moved/sub/f: %v", fi)
	}
}

// bobFile writes bob's file name (its directories made as needed).
func bobFile(t *testing.T, bob *testPeer, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(bob.path(name)), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, name, data, 0o644)
}
