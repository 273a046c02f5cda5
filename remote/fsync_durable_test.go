package remote

import (
	"bytes"
	"maps"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// put writes name on peer bob and closes it (an async PUT).
func (s *testStore) put(t *testing.T, name, data string) {
	t.Helper()
	fh := s.open(t, "bob", name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, data, 0)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
}

// pendingFsync returns what the next FSYNC to peerName covers: whether
// one is due, and the names it will carry (nil: everything).
func (s *testStore) pendingFsync(peerName string) (bool, map[string]bool) {
	p, _ := s.peer(peerName)
	u := &p.unsynced
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.need, maps.Clone(u.names)
}

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

// fsyncDelayProxy forwards connections to addr, holding every client
// write that contains "FSYNC" back for delay; seen is closed when the
// first such write arrives.
func fsyncDelayProxy(t *testing.T, addr string, delay time.Duration) (proxy string, seen <-chan struct{}) {
	seenc := make(chan struct{})
	var once sync.Once
	return tapProxy(t, addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("FSYNC")) {
			once.Do(func() { close(seenc) })
			time.Sleep(delay)
		}
		return b, false
	}, nil), seenc
}

// A second fsync running while an FSYNC covering its file is in flight
// (no tracker: Sync is FlushAll, per caller) waits for that FSYNC's answer
// instead of returning success at once.
func TestConcurrentFsyncWaitsForFsyncOK(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	proxy, fsyncSeen := fsyncDelayProxy(t, bob.addr, 700*time.Millisecond)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	fh := s.open(t, "bob", "g", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "g's data", 0)
	if err := s.Flush(ctx, fh); err != nil { // close(): async PUT, g unsynced
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var aDone time.Time
	wg.Add(1)
	go func() { // thread A: fsync of some other file
		defer wg.Done()
		if err := s.Sync(ctx); err != nil {
			t.Error(err)
		}
		aDone = time.Now()
	}()
	testutil.Recv(t, "A's FSYNC on its way", fsyncSeen)
	if err := s.Fsync(ctx, fh); err != nil { // thread B: fsync(g)
		t.Fatal(err)
	}
	bDone := time.Now()
	s.release(t, fh)
	wg.Wait()
	t.Logf("B's fsync(g) returned %v before the FSYNC covering g was answered", aDone.Sub(bDone))
	if bDone.Before(aDone) {
		t.Fatalf("fsync(g) returned success before any FSYNC naming g was answered")
	}
}
