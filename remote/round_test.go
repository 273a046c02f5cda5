package remote

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/tracker"
)

// roundRecorder is an Observer and a RoundObserver that keeps what it is
// told of the SYNC rounds.
type roundRecorder struct {
	recorder
	rmu    sync.Mutex
	events []string
}

func (r *roundRecorder) note(e string) {
	r.rmu.Lock()
	r.events = append(r.events, e)
	r.rmu.Unlock()
}

func (r *roundRecorder) SyncRoundSeen() { r.note("seen") }

func (r *roundRecorder) SyncTurn(d time.Duration, err error) {
	r.note(fmt.Sprintf("turn err=%v", err))
}

func (r *roundRecorder) SyncRoundEnded(round uint64) { r.note(fmt.Sprintf("ended %d", round)) }

// waitEnded waits for round n to end at tracker client me and for the
// store to have reported it: the client's state changes before it calls
// the store's SyncEnd, which tells the observer.
func (r *roundRecorder) waitEnded(t *testing.T, me *tracker.Client, n uint64) {
	t.Helper()
	end := fmt.Sprintf("ended %d", n)
	testutil.Eventually(t, "the round to end here", func() bool {
		r.rmu.Lock()
		defer r.rmu.Unlock()
		return me.State().LastRound == n && !me.State().InRound && slices.Contains(r.events, end)
	})
}

func (r *roundRecorder) take() []string {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// TestStoreRoundHandler: the Store, as its tracker client's Handler, takes
// its turn in a round another peer opened (SYNC READ, then its turn:
// the pending file is stored), marks what it stored with the round that
// ends, and tells a RoundObserver each step.
func TestStoreRoundHandler(t *testing.T) {
	_, trAddr := testutil.StartTracker(t, testTimeout)
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	rec := &roundRecorder{}
	s.opts.Observer = rec // before any goroutine uses the store
	me := tracker.NewClient(tracker.ClientOptions{Addr: trAddr, Name: "me", Port: 1, Logger: zerolog.Nop(), Handler: s.Store})
	testutil.RunTrackerClient(t, me)
	other := tracker.NewClient(tracker.ClientOptions{Addr: trAddr, Name: "bob", Port: bob.port, Logger: zerolog.Nop()})
	testutil.RunTrackerClient(t, other)
	testutil.Eventually(t, "the store to learn of bob", func() bool { _, ok := s.PeerAddr("bob"); return ok })

	fh := s.open(t, "bob", "new.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	s.write(t, fh, "hello", 0)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
	defer cancel()
	// bob opens the round: me reads, then gets a turn of its own.
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	rec.waitEnded(t, me, 1)
	if got, want := rec.take(), []string{"seen", "seen", "turn err=<nil>", "ended 1"}; !slices.Equal(got, want) {
		t.Errorf("observed %q, want %q", got, want)
	}
	if got := bob.content(t, "new.txt"); got != "hello" {
		t.Errorf("bob has %q after the round, want the pending file stored in our turn", got)
	}
	if st, _ := s.FileState("bob", "new.txt"); st != "stored round=1" {
		t.Errorf("state after round 1 = %q, want it marked with the round", st)
	}
	s.release(t, fh)
}

// TestStoreTurnsOnlyWhenHolding: a mount takes a turn in a round it did
// not ask for only while it holds writes: at its start (a predecessor
// may have left some), after it stored a file (the turn makes it
// durable and names it a writer), in the round after a turn that found
// it had written (a writer is likely to write again), and never while
// idle.
func TestStoreTurnsOnlyWhenHolding(t *testing.T) {
	_, trAddr := testutil.StartTracker(t, testTimeout)
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	rec := &roundRecorder{}
	s.opts.Observer = rec // before any goroutine uses the store
	me := tracker.NewClient(tracker.ClientOptions{Addr: trAddr, Name: "me", Port: 1, Logger: zerolog.Nop(), Handler: s.Store})
	s.SetSyncer(me)
	testutil.RunTrackerClient(t, me)
	other := tracker.NewClient(tracker.ClientOptions{Addr: trAddr, Name: "bob", Port: bob.port, Logger: zerolog.Nop()})
	testutil.RunTrackerClient(t, other)
	testutil.Eventually(t, "the store to learn of bob", func() bool { _, ok := s.PeerAddr("bob"); return ok })
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
	defer cancel()
	round := func(n uint64, want ...string) {
		t.Helper()
		if err := other.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		rec.waitEnded(t, me, n)
		if got := rec.take(); !slices.Equal(got, want) {
			t.Errorf("round %d: observed %q, want %q", n, got, want)
		}
	}
	round(1, "seen", "seen", "turn err=<nil>", "ended 1") // new: may hold a predecessor's writes
	round(2, "seen", "seen", "turn err=<nil>", "ended 2") // it "wrote" before its last turn
	round(3, "seen", "ended 3")                           // idle: reads, no turn

	fh := s.open(t, "bob", "new.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	s.write(t, fh, "hello", 0)
	if err := s.Flush(testCtx(t), fh); err != nil { // close(): stored, not durable
		t.Fatal(err)
	}
	s.release(t, fh)
	if !s.HoldsWrites() {
		t.Fatal("HoldsWrites false after a file was stored on a peer")
	}
	round(4, "seen", "seen", "turn err=<nil>", "ended 4")
	if !s.HoldsWrites() {
		t.Error("HoldsWrites false right after a turn that found a write")
	}
	// Told after its SYNC FIN: the tracker reads it after ending round 4,
	// and may start round 5 first.
	testutil.Eventually(t, "the tracker to answer me's WRITES held", me.WritesAnswered)
	round(5, "seen", "seen", "turn err=<nil>", "ended 5")
	if s.HoldsWrites() {
		t.Error("HoldsWrites true after a turn that found nothing written")
	}
	round(6, "seen", "ended 6")
}
