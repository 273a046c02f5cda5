package remote

// Regression tests from the review of the removals written behind (issue
// 16 item 1, behind.go and behind_queue.go): each failed on the code as
// reviewed ("As reviewed" below says how) and passes since its fix.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// heldRemovals is a Store "me" whose peer bob is reached through a proxy
// that holds every DELETE and RMDIR until the test ends: removals written
// behind stay queued.
func heldRemovals(t *testing.T) (*testStore, *testPeer) {
	t.Helper()
	bob := startPeer(t, t.TempDir())
	proxy := heldBackProxy(t, bob.addr, "DELETE", "RMDIR")
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	return s, bob
}

// queueOrder returns the sequence numbers in bob's queue, front first.
func queueOrder(s *testStore) []uint64 {
	s.ns.mu.Lock()
	defer s.ns.mu.Unlock()
	q := s.ns.queues["bob"]
	if q == nil {
		return nil
	}
	out := make([]uint64, 0, len(q.ops))
	for _, op := range q.ops {
		out = append(out, op.Seq)
	}
	return out
}

// TestConcurrentRemovalsQueuedInJournalOrder: removals made at once by
// several programs (rm -r of several trees, a parallel make clean) are
// queued in the order of their sequence numbers, which behind.wait
// relies on (it waits until the front is past the last seq it saw) and
// which replay uses. As reviewed, push takes the sequence number in
// Journal.Append and appends to the queue under behind.mu afterwards, in
// two steps: two Removes interleave between them, and the queue holds a
// later seq before an earlier one.
func TestConcurrentRemovalsQueuedInJournalOrder(t *testing.T) {
	s, bob := heldRemovals(t)
	ctx := testCtx(t)
	const dirs, files = 8, 50
	for d := range dirs {
		if err := os.MkdirAll(bob.path(fmt.Sprint("d", d)), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range files {
			bob.writeFile(t, fmt.Sprintf("d%d/f%d", d, i), []byte("x"), 0o644)
		}
		s.names(t, "bob", fmt.Sprint("d", d))
	}
	var wg sync.WaitGroup
	for d := range dirs {
		wg.Go(func() {
			for i := range files {
				if err := s.Remove(ctx, "bob", fmt.Sprintf("d%d/f%d", d, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	seqs := queueOrder(s)
	if len(seqs) != dirs*files {
		t.Fatalf("%d removals queued, want %d (some went synchronously?)", len(seqs), dirs*files)
	}
	var inverted []string
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			inverted = append(inverted, fmt.Sprintf("%d before %d", seqs[i-1], seqs[i]))
		}
	}
	if len(inverted) > 0 {
		t.Errorf("bob's queue is out of sequence order in %d places: %v", len(inverted), inverted)
	}
}

// TestRoundShowsNameRemovedHereCreatedElsewhere: a SYNC round is a
// barrier (docs/CONSISTENCY.md): once it ends, this mount reads what the
// other writers stored before it. A name this mount removed (written
// behind, carried out) and another writer then created again and
// stored before a round must show after that round. As reviewed, the
// carried-out removal keeps the name hidden for AttrTTL after it reached
// the peer (behind.hidden), and RoundEnded's InvalidateAll drops the
// attribute caches but not that: the other writer's file is ENOENT here.
func TestRoundShowsNameRemovedHereCreatedElsewhere(t *testing.T) {
	c := newClusterWith(t, func(o *Options) { o.AttrTTL = 25 * time.Second })
	s := c.store
	ctx := testCtx(t)
	c.bob.writeFile(t, "x", []byte("old"), 0o644)
	s.names(t, "bob", "")
	if err := s.Remove(ctx, "bob", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync after the removal: %v", err)
	}
	if c.bob.exists(t, "x") {
		t.Fatal("the removal did not reach bob in the round")
	}
	// Another writer (bob, on his export) creates x again and stores it
	// before a round of its own.
	c.bob.writeFile(t, "x", []byte("bob's new x"), 0o644)
	c.bobWrote.Store(true)
	if err := c.bobTC.Sync(ctx); err != nil {
		t.Fatalf("bob's Sync: %v", err)
	}
	testutil.Eventually(t, "bob's round to end at the store's client too", func() bool {
		round, _, _ := c.tracker.Round()
		return round == 0 && !c.meTC.State().InRound
	})
	if _, err := s.Stat(ctx, "bob", "x"); err != nil {
		t.Errorf("Stat of x, created again by another writer before a round that ended: %v (want it shown: the round is a barrier)", err)
	}
	if got := s.names(t, "bob", ""); len(got) != 1 || got[0] != "x" {
		t.Errorf("root lists %q after the round, want [x]", got)
	}
}

// TestReplayWithRestoredPeersCarriesOut: a mount restarted after a crash
// with removals in its journal, whose peers come from the peer list of
// its last run (Options.PeersFile: the tracker has not answered yet, or
// is down), carries them out on a peer that answers, and fsync and
// mkdir on that peer do not wait forever. As reviewed, New starts the
// replay's sender before loadPeers adds the restored peers: the sender
// finds no peer, stops (stopSending), and only SetPeers (resumeBehind)
// starts another. Until the tracker lists the peer, every mutating
// request to it blocks in poolDo's barrier until its context ends (a
// FUSE request's has no deadline), and FlushAll waits its whole context
// for it and then reports success with the removal not carried out.
func TestReplayWithRestoredPeersCarriesOut(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "x", []byte("old"), 0o644)
	var cutting atomic.Bool
	cutting.Store(true)
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if cutting.Load() && (bytes.Contains(b, []byte("DELETE")) || bytes.Contains(b, []byte("RMDIR"))) {
			return nil, true // lost with the connection
		}
		return b, false
	}, nil)
	dir := t.TempDir()
	peersFile := filepath.Join(t.TempDir(), "peers.json")
	tune := func(o *Options) { o.PeersFile = peersFile }
	first := newStoreWith(t, dir, tune)
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	first.names(t, "bob", "")
	if err := first.Remove(ctx, "bob", "x"); err != nil {
		t.Fatal(err)
	}
	first.close() // the crash: the removal is only in the journal
	if pend := len(first.cache.Journal().Pending()); pend != 1 {
		t.Fatalf("journal holds %d operations when the first run ends, want 1", pend)
	}
	cutting.Store(false) // bob is reachable again

	// The race between the replay's sender and loadPeers, which the
	// sender wins most of the time on an idle machine, made certain: the
	// peer list comes through a pipe, a moment after New starts reading
	// it.
	saved, err := os.ReadFile(peersFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(peersFile); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(peersFile, 0o600); err != nil {
		t.Fatal(err)
	}
	fed := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		fed <- os.WriteFile(peersFile, saved, 0o600)
	}()
	second := newStoreWith(t, dir, tune)
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	if got := second.Peers(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("restored peers %q, want [bob]", got)
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := second.Mkdir(mctx, "bob", "d", 0o755); err != nil {
		t.Errorf("Mkdir on a restored peer that answers: %v", err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	defer fcancel()
	began := time.Now()
	err = second.FlushAll(fctx)
	if errors.Is(fctx.Err(), context.DeadlineExceeded) {
		t.Errorf("FlushAll waited %v, until its context ended (%v)", time.Since(began).Round(time.Millisecond), err)
	}
	if bob.exists(t, "x") {
		t.Errorf("the replayed removal never reached bob, who answers (queue %v)", queueOrder(second))
	}
}

// TestFsyncReadOnlyHandleWaitsForRemovals: docs/CONSISTENCY.md says
// "fsync() (any file) ... wait[s] until the removals are on the peer".
// As reviewed, Fsync of a handle open for reading returns nil at once
// (h.state == nil): rm x; fsync(fd of y opened O_RDONLY) returns with x
// still on the peer. (Either the doc narrows to files open for writing
// and directories, or Fsync drains for read-only handles too.)
func TestFsyncReadOnlyHandleWaitsForRemovals(t *testing.T) {
	s, bob := heldRemovals(t)
	ctx := testCtx(t)
	bob.writeFile(t, "x", []byte("x"), 0o644)
	bob.writeFile(t, "y", []byte("y"), 0o644)
	s.names(t, "bob", "")
	if err := s.Remove(ctx, "bob", "x"); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "y", os.O_RDONLY, 0)
	defer s.release(t, fh)
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Fsync(fctx, fh); err == nil && bob.exists(t, "x") {
		t.Errorf("fsync of a file open for reading returned nil with a removal made before it not on the peer")
	}
}

// TestRefusalReachesAProgram: a removal written behind that the peer
// refuses must reach a program (the issue: "a peer's refusal reaches the
// program at the next operation that depends on it, or at fsync/close").
// As reviewed, the refusal is handed to the first FlushAll: when that is
// a SYNC turn this mount takes in another writer's round (it holds
// writes, HoldsWrites), the error goes to the tracker client, which no
// program waits on, and the program's own fsync after it succeeds.
func TestRefusalReachesAProgram(t *testing.T) {
	c := newCluster(t)
	s := c.store
	ctx := testCtx(t)
	if err := os.MkdirAll(c.bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := s.names(t, "bob", "d"); len(got) != 0 {
		t.Fatalf("d lists %q", got)
	}
	c.bob.writeFile(t, "d/intruder", []byte("someone else's"), 0o644)
	if err := s.Rmdir(ctx, "bob", "d"); err != nil {
		t.Fatalf("Rmdir (listing cached empty): %v", err)
	}
	testutil.Eventually(t, "the refusal", func() bool { return !s.ns.pending() })
	// Another writer's round, in which this mount takes a turn (it
	// wrote: the RMDIR).
	c.bobWrote.Store(true)
	if err := c.bobTC.Sync(ctx); err != nil {
		t.Fatalf("bob's Sync: %v", err)
	}
	testutil.Eventually(t, "bob's round to end, the store's turn in it included", func() bool {
		round, _, _ := c.tracker.Round()
		return round == 0 && !c.meTC.State().InRound
	})
	// The program that ran rmdir now fsyncs (any file, or the directory).
	if err := s.Sync(ctx); errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("fsync after the refused rmdir: %v, want ENOTEMPTY (the refusal went to a turn no program waited on)", err)
	}
}

// TestReplayKeepsFileChangedAfterStaleRemoval: docs/CONSISTENCY.md: a
// replay "removes a file only while it is still the version that was
// removed here". As reviewed, removeBehind journals the version only
// from an attribute answer younger than AttrTTL (attrs.cached): a file
// unlinked a moment after its attributes aged (a slow rm -r, a program
// that looked it up earlier) is journalled without one, and its replay
// deletes whatever the peer holds under that name by then, another
// writer's new file included.
func TestReplayKeepsFileChangedAfterStaleRemoval(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "changed", []byte("v1"), 0o644)
	var cutting atomic.Bool
	cutting.Store(true)
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if cutting.Load() && bytes.Contains(b, []byte("DELETE")) {
			return nil, true
		}
		return b, false
	}, nil)
	dir := t.TempDir()
	clock := newFakeClock()
	first := newStoreWith(t, dir, func(o *Options) { o.Now = clock.Now })
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	if _, err := first.Stat(ctx, "bob", "changed"); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Second) // past AttrTTL (1s)
	if err := first.Remove(ctx, "bob", "changed"); err != nil {
		t.Fatal(err)
	}
	pend := first.cache.Journal().Pending()
	first.close()
	if len(pend) != 1 {
		t.Fatalf("journal holds %+v, want the one removal", pend)
	}
	cutting.Store(false)
	bob.writeFile(t, "changed", []byte("v2, another writer's"), 0o644)
	future(t, bob.path("changed"), 3)

	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	testutil.Eventually(t, "the replay to end", func() bool { return !second.ns.pending() })
	if !bob.exists(t, "changed") {
		t.Errorf("the replay deleted a file rewritten after the removal (journalled version %q)", pend[0].Version)
	}
}

// TestRemovalsThenNamesReused (passes: what the review checked holds):
// with every removal reaching the peer late (a slow link), the names it
// frees are used again at once through the mount (a directory removed
// and made again and filled, a file removed and another renamed over its
// name, a name removed and linked again, a removed name renamed away);
// the peer ends as a local filesystem would, and the mount shows the
// same.
func TestRemovalsThenNamesReused(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("DELETE")) || bytes.Contains(b, []byte("RMDIR")) {
			time.Sleep(30 * time.Millisecond)
		}
		return b, false
	}, nil)
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	if err := os.MkdirAll(bob.path("d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d/a", "d/sub/b", "x", "y", "l", "m", "gone"} {
		bob.writeFile(t, name, []byte("old "+name), 0o644)
	}
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	s.names(t, "bob", "d/sub")

	// rm -r d; mkdir d; echo new > d/a
	for _, step := range []struct {
		dir  bool
		name string
	}{{false, "d/sub/b"}, {true, "d/sub"}, {false, "d/a"}, {true, "d"}} {
		var err error
		if step.dir {
			err = s.Rmdir(ctx, "bob", step.name)
		} else {
			err = s.Remove(ctx, "bob", step.name)
		}
		if err != nil {
			t.Fatalf("removing %s: %v", step.name, err)
		}
	}
	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatalf("mkdir d again: %v", err)
	}
	s.put(t, "d/a", "new d/a")
	// rm x; mv y x
	if err := s.Remove(ctx, "bob", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "bob", "y", "x"); err != nil {
		t.Fatalf("mv y x after rm x: %v", err)
	}
	// rm l; ln m l
	if err := s.Remove(ctx, "bob", "l"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Link(ctx, "bob", "m", "l"); err != nil {
		t.Fatalf("ln m l after rm l: %v", err)
	}
	// rm gone; mv gone elsewhere: ENOENT
	if err := s.Remove(ctx, "bob", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "bob", "gone", "elsewhere"); errnoOf(err) != syscall.ENOENT {
		t.Errorf("mv of a removed name: %v, want ENOENT", err)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := bob.content(t, "d/a"); got != "new d/a" {
		t.Errorf("bob's d/a = %q", got)
	}
	if bob.exists(t, "d/sub") || bob.exists(t, "y") || bob.exists(t, "gone") || bob.exists(t, "elsewhere") {
		t.Error("bob keeps a name removed or renamed away")
	}
	if got := bob.content(t, "x"); got != "old y" {
		t.Errorf("bob's x = %q, want y's content", got)
	}
	if got := bob.content(t, "l"); got != "old m" {
		t.Errorf("bob's l = %q, want m's content", got)
	}
	if got := s.names(t, "bob", ""); fmt.Sprint(got) != "[d l m x]" {
		t.Errorf("root lists %q, want [d l m x]", got)
	}
	if got := s.names(t, "bob", "d"); fmt.Sprint(got) != "[a]" {
		t.Errorf("d lists %q, want [a]", got)
	}
	fi, err := s.Stat(ctx, "bob", "m")
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*fusefs.Stat); !ok || st.Nlink != 2 {
		t.Errorf("m's attributes %#v, want 2 links", fi.Sys())
	}
}
