package remote

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// After "write a; mv a b; write a", the next FSYNC must reach b's data:
// with names it must name b (or sync everything).
func TestFsyncNamesFollowRename(t *testing.T) {
	s, _, _ := countedStore(t)
	s.put(t, "a", "first")
	if err := s.Rename(testCtx(t), "bob", "a", "b"); err != nil {
		t.Fatal(err)
	}
	s.put(t, "a", "second")
	if unsynced, names := s.pendingFsync("bob"); unsynced && names != nil && !names["b"] {
		t.Fatalf("the next FSYNC names %v: b's bytes (uploaded as a) are never fsynced", names)
	}
}

// A directory rename moves the names of files uploaded under it, waiting
// for FSYNC, to their new paths: once the old path is reused (mv logs
// logs.old; mkdir logs; write logs/app.log), naming the old path would
// sync the new file and never the renamed file's data.
func TestFsyncNamesFollowDirRename(t *testing.T) {
	s, _, _ := countedStore(t)
	ctx := testCtx(t)
	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	s.put(t, "d/f", "first")
	if err := s.Rename(ctx, "bob", "d", "e"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	s.put(t, "d/f", "second")
	if unsynced, names := s.pendingFsync("bob"); unsynced && names != nil && !names["e/f"] {
		t.Fatalf("the next FSYNC names %v: every name opens (d/f is the new file), so no syncfs; e/f's bytes (uploaded async as d/f) are never fsynced", names)
	}
}

// An upload that only applies a mode or mtime (the data went up earlier
// and was already FSYNCed) still makes the next fsync send FSYNC.
func TestFsyncAfterSetattrOnlyUpload(t *testing.T) {
	s, _, vc := countedStore(t)
	ctx := testCtx(t)
	fh := s.open(t, "bob", "f", os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	defer s.release(t, fh)
	s.write(t, fh, "data", 0)
	if err := s.Fsync(ctx, fh); err != nil { // PUT + FSYNC f
		t.Fatal(err)
	}
	if _, err := s.Chmod(ctx, "bob", "f", 0o600); err != nil { // fchmod on the open file: local
		t.Fatal(err)
	}
	vc.take()
	if err := s.Fsync(ctx, fh); err != nil { // SETATTR only
		t.Fatal(err)
	}
	got := vc.take()
	t.Logf("requests of the second fsync: %v", got)
	if got["SETATTR"] == 1 && got["FSYNC"] == 0 {
		t.Fatalf("fsync applied the chmod with SETATTR but sent no FSYNC: the mode change is not durable")
	}
}

// A second fsync running while an FSYNC covering its file is in flight
// (no tracker: Sync is FlushAll, per caller) waits for that FSYNC's answer
// instead of returning success at once.
func TestConcurrentFsyncWaitsForFsyncOK(t *testing.T) {
	const delay = 700 * time.Millisecond
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	proxy, fsyncSeen := fsyncDelayProxy(t, bob.addr, delay)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	fh := s.open(t, "bob", "g", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "g's data", 0)
	if err := s.Flush(ctx, fh); err != nil { // close(): async PUT, g unsynced
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // thread A: fsync of some other file
		defer wg.Done()
		if err := s.Sync(ctx); err != nil {
			t.Error(err)
		}
	}()
	testutil.Recv(t, "A's FSYNC on its way", fsyncSeen)
	seen := time.Now()                       // the proxy holds that FSYNC for delay from about now
	if err := s.Fsync(ctx, fh); err != nil { // thread B: fsync(g)
		t.Fatal(err)
	}
	waited := time.Since(seen)
	s.release(t, fh)
	wg.Wait()
	// B and A are woken by the same answer, in either order; what B must
	// not do is return before that answer exists: before the proxy let
	// the FSYNC through. Half the delay leaves room for a loaded machine.
	t.Logf("B's fsync(g) waited %v for an FSYNC held %v", waited, delay)
	if waited < delay/2 {
		t.Fatalf("fsync(g) returned %v after A's FSYNC was sent, before any FSYNC naming g could be answered (held %v)", waited, delay)
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

// Fsync runs a SYNC round through the tracker; the store's turn stores
// every local change, of every open file.
func TestFsyncRunsRound(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	fh1 := s.open(t, "bob", "a", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh1, "aaa", 0)
	fh2 := s.open(t, "bob", "b", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh2, "bbb", 0)

	last := c.meTC.State().LastRound
	if err := s.Fsync(ctx, fh1); err != nil {
		t.Fatalf("Fsync: %v", err)
	}
	if got := c.bob.content(t, "a") + c.bob.content(t, "b"); got != "aaabbb" {
		t.Errorf("after Fsync the peer has %q", got)
	}
	testutil.Eventually(t, "the round to end", func() bool { return c.meTC.State().LastRound > last })
	for _, fh := range []uint64{fh1, fh2} {
		if err := s.Flush(ctx, fh); err != nil {
			t.Error(err)
		}
		s.release(t, fh)
	}
	s.noLeftovers(t)
}

// Without a tracker, Sync uploads directly.
func TestSyncWithoutTracker(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	fh := s.open(t, "bob", "a", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh, "aaa", 0)
	if err := s.Fsync(testCtx(t), fh); err != nil {
		t.Fatalf("Fsync: %v", err)
	}
	if got := bob.content(t, "a"); got != "aaa" {
		t.Errorf("after Fsync the peer has %q", got)
	}
	s.release(t, fh)
	s.noLeftovers(t)
}
