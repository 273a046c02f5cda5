package remote

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// verbCounter is an Observer counting the requests sent, by verb.
type verbCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (v *verbCounter) PeerRequest(peer, verb string, d time.Duration, err error) {
	v.mu.Lock()
	v.n[verb]++
	v.mu.Unlock()
}

func (v *verbCounter) PeerBytes(string, int64, int64) {}

// take returns the counts so far and starts again from zero.
func (v *verbCounter) take() map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.n
	v.n = map[string]int{}
	return n
}

// countedStore is a Store talking to one real peer, bob, whose requests
// are counted.
func countedStore(t *testing.T) (*testStore, *testPeer, *verbCounter) {
	t.Helper()
	return countedStoreWith(t, nil)
}

// countedStoreWith is countedStore with the Store's Options changed by
// tune, if not nil.
func countedStoreWith(t *testing.T, tune func(*Options)) (*testStore, *testPeer, *verbCounter) {
	t.Helper()
	bob := startPeer(t, t.TempDir())
	vc := &verbCounter{n: map[string]int{}}
	s := newStoreWith(t, t.TempDir(), func(o *Options) {
		o.Observer = vc
		if tune != nil {
			tune(o)
		}
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	return s, bob, vc
}

// A burst of lookups in a directory that was never listed costs a few
// STATs and then one LIST, and still answers every name right, missing
// ones included.
func TestLookupBurstLists(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		bob.writeFile(t, fmt.Sprintf("d/f%d", i), make([]byte, i), 0o644)
	}
	vc.take()
	for i := range n {
		fi, err := s.Stat(ctx, "bob", fmt.Sprintf("d/f%d", i))
		if err != nil || fi.Size() != int64(i) {
			t.Fatalf("Stat d/f%d = %v, %v; want size %d", i, fi, err, i)
		}
	}
	if _, err := s.Stat(ctx, "bob", "d/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing name: %v, want ErrNotExist", err)
	}
	got := vc.take()
	if got["LIST"] != 1 || got["STAT"] > burstStats {
		t.Errorf("%d lookups cost %v; want 1 LIST and at most %d STATs", n+1, got, burstStats)
	}

	// What the owner changes meanwhile shows once the attributes expire.
	bob.writeFile(t, "d/late", []byte("late"), 0o644)
	testutil.Eventually(t, "the owner's new file to show", func() bool {
		fi, err := s.Stat(ctx, "bob", "d/late")
		return err == nil && fi.Size() == 4
	})
}

// A few lookups in a directory do not list it: a large directory where
// a program looks at one or two names costs STATs only.
func TestLookupFewStats(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "a", []byte("a"), 0o644)
	bob.writeFile(t, "b", []byte("bb"), 0o644)
	for _, name := range []string{"a", "b"} {
		if _, err := s.Stat(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
	}
	if got := vc.take(); got["LIST"] != 0 || got["STAT"] != 2 {
		t.Errorf("2 lookups cost %v; want 2 STATs", got)
	}
}

// Filling a directory made through the store asks nothing about the new
// names: it was empty when made, and the store knows what it added.
func TestNewDirectoryNeedsNoLookups(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	if _, err := s.Mkdir(ctx, "bob", "new", 0o755); err != nil {
		t.Fatal(err)
	}
	vc.take()
	for i := range 10 {
		name := fmt.Sprintf("new/f%d", i)
		if _, err := s.Stat(ctx, "bob", name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat %s before creating it: %v, want ErrNotExist", name, err)
		}
		fh := s.open(t, "bob", name, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		s.write(t, fh, "x", 0)
		if err := s.Flush(ctx, fh); err != nil {
			t.Fatal(err)
		}
		s.release(t, fh)
		if fi, err := s.Stat(ctx, "bob", name); err != nil || fi.Size() != 1 {
			t.Fatalf("Stat %s after creating it: %v, %v", name, fi, err)
		}
	}
	got := vc.take()
	if got["STAT"] != 0 || got["LIST"] != 0 || got["PUT"] != 10 {
		t.Errorf("creating 10 files in a new directory cost %v; want 10 PUTs and nothing else", got)
	}
	if bob.content(t, "new/f9") != "x" {
		t.Error("the peer does not have new/f9")
	}
}

// An editor's save (write a temporary file, rename it over the original)
// leaves the store knowing the original's new attributes.
func TestRenameKeepsAttributes(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "doc", []byte("old"), 0o644)
	fh := s.open(t, "bob", ".doc.swp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "new text", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if err := s.Rename(ctx, "bob", ".doc.swp", "doc"); err != nil {
		t.Fatal(err)
	}
	vc.take()
	fi, err := s.Stat(ctx, "bob", "doc")
	if err != nil || fi.Size() != int64(len("new text")) {
		t.Fatalf("Stat doc after the save: %v, %v", fi, err)
	}
	if _, err := s.Stat(ctx, "bob", ".doc.swp"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of the renamed temporary: %v, want ErrNotExist", err)
	}
	if got := vc.take(); len(got) != 0 {
		t.Errorf("lookups after the save cost %v; want none", got)
	}
	if bob.content(t, "doc") != "new text" {
		t.Errorf("peer's doc = %q", bob.content(t, "doc"))
	}
}

// After a SYNC round in which only this client wrote, its caches are
// kept (its own uploads are in them); after one in which another peer
// wrote, they are dropped and the other's change is read at once.
func TestRoundKeepsCachesUnlessOthersWrote(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "other", []byte("v1"), 0o644)
	if fi, err := s.Stat(ctx, "bob", "other"); err != nil || fi.Size() != 2 {
		t.Fatalf("Stat other = %v, %v", fi, err)
	}
	fh := s.open(t, "bob", "mine", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "data", 0)
	if err := s.Fsync(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	lastRound := func() uint64 { return c.meTC.State().LastRound }
	testutil.Eventually(t, "the round to end", func() bool { return lastRound() >= 1 })
	c.calls.take()
	for _, name := range []string{"mine", "other"} {
		if _, err := s.Stat(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.calls.take(); len(got) != 0 {
		t.Errorf("lookups after a round only this client wrote in cost %v; want none", got)
	}

	// Now bob reports a write of its own (its owner changed "other").
	c.bob.writeFile(t, "other", []byte("version 2"), 0o644)
	c.bobWrote.Store(true)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the second round to end", func() bool { return lastRound() >= 2 })
	fi, err := s.Stat(ctx, "bob", "other")
	if err != nil || fi.Size() != int64(len("version 2")) {
		t.Errorf("Stat other after a round bob wrote in = %v, %v; want the new size at once", fi, err)
	}
}

// While a peer is unreachable its folder is still a directory (with the
// attributes last seen), so local files pending upload in it stay
// reachable; anything that needs the peer says EIO.
func TestRootOfUnreachablePeer(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	if err := os.Chmod(bob.export, 0o750); err != nil {
		t.Fatal(err)
	}
	fi, err := s.Stat(ctx, "bob", "")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("Stat of bob's root = %v, %v", fi, err)
	}
	fh := s.open(t, "bob", "pending", os.O_CREATE|os.O_WRONLY, 0o644)
	defer s.release(t, fh)
	s.write(t, fh, "x", 0)
	bob.stop()
	s.InvalidateAll()
	fi, err = s.Stat(ctx, "bob", "")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("Stat of an unreachable peer's root = %v, %v; want the directory as last seen", fi, err)
	}
	if fi, err := s.Stat(ctx, "bob", "pending"); err != nil || fi.Size() != 1 {
		t.Errorf("Stat of a pending local file = %v, %v", fi, err)
	}
	if _, err := s.Stat(ctx, "bob", "other"); errnoOf(err) != syscall.EIO {
		t.Errorf("Stat of a remote name while unreachable: %v, want EIO", err)
	}
}

// A conditional upload refused because the peer's file changed, when the
// peer's new version is byte for byte what this writer uploads (its own
// earlier attempt, stored after it gave up on a stalled peer), is no
// conflict: no copy, no error.
func TestConflictWithSameContentIsNone(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "f", []byte("v1"), 0o644)
	if _, err := s.Stat(ctx, "bob", "f"); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "f", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, fh, "version two", 0)
	time.Sleep(10 * time.Millisecond) // a new mtime
	bob.writeFile(t, "f", []byte("version two"), 0o644)
	if err := s.Flush(ctx, fh); err != nil {
		t.Errorf("Flush after the peer got the same bytes: %v, want success", err)
	}
	s.release(t, fh)
	des, err := os.ReadDir(bob.export)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || bob.content(t, "f") != "version two" {
		t.Errorf("export holds %d entries (f = %q); want f alone, with the new text", len(des), bob.content(t, "f"))
	}
}

// An upload that failed may still have been stored by the peer (the
// answer was lost, or a stalled peer ran again). If the writer changed the
// file meanwhile, the next upload finds the peer's file changed, but to
// the content of that failed attempt: its own version, which it replaces
// without a conflict copy. A retry that fails without reaching the peer
// in between does not make it forget that version.
func TestConflictWithOwnFailedAttemptIsNone(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	ctx := testCtx(t)
	fh := loseTwoAttempts(t, s, bob)

	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := s.Flush(ctx, fh); err != nil {
		t.Errorf("Flush after the peer stored the failed attempt: %v, want success", err)
	}
	s.release(t, fh)
	des, err := os.ReadDir(bob.export)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || bob.content(t, "f") != "attempt TWO" {
		t.Errorf("export holds %d entries (f = %q); want f alone, with the last text", len(des), bob.content(t, "f"))
	}
}

// loseTwoAttempts writes f on bob (holding "v1", an hour old) through s
// twice and leaves it open: the first upload ("attempt one") reaches bob,
// who stores it, but its answer is lost; the second ("attempt TWO") never
// reaches him. It returns the open handle.
func loseTwoAttempts(t *testing.T, s *testStore, bob *testPeer) uint64 {
	t.Helper()
	ctx := testCtx(t)
	bob.writeFile(t, "f", []byte("v1"), 0o644)
	future(t, bob.path("f"), -1) // the attempt stored later gets another mtime
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: replyCutProxy(t, bob.addr, "PUT ")}})
	fh := s.open(t, "bob", "f", os.O_RDWR|os.O_TRUNC, 0)
	s.write(t, fh, "attempt one", 0)
	if err := s.Flush(ctx, fh); err == nil {
		t.Fatal("Flush whose answer was cut succeeded")
	}
	testutil.Eventually(t, "bob to store the attempt whose answer was lost", func() bool {
		return bob.content(t, "f") == "attempt one"
	})
	// The peer is unreachable for a while: the next attempt never gets
	// there, and the writer goes on writing meanwhile.
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: testutil.ClosedAddr(t)}})
	s.write(t, fh, "attempt TWO", 0)
	if err := s.Flush(ctx, fh); err == nil {
		t.Fatal("Flush to an unreachable peer succeeded")
	}
	return fh
}

// replyCutProxy forwards connections to addr and closes the client's side
// as soon as the peer answers a line starting with cut: the request was
// carried out, its answer is lost.
func replyCutProxy(t *testing.T, addr, cut string) string {
	return tapProxy(t, addr, nil, func(b []byte) ([]byte, bool) {
		if bytes.HasPrefix(b, []byte(cut)) {
			return nil, true
		}
		if i := bytes.Index(b, []byte("\n"+cut)); i >= 0 {
			return b[:i+1], true
		}
		return b, false
	})
}
