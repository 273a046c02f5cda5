package tracker_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// listWatcher is a Handler that keeps the last list and counts turns.
type listWatcher struct {
	tracker.NopHandler
	mu    sync.Mutex
	list  []peerproto.PeerAddr
	calls int
	lefts []string
	turns atomic.Int32
	held  atomic.Bool // what HoldsWrites says, when used as a WritesHolder
}

func (w *listWatcher) SetPeers(ps []peerproto.PeerAddr) {
	w.mu.Lock()
	w.list, w.calls = ps, w.calls+1
	w.mu.Unlock()
}

func (w *listWatcher) PeerLeft(name string, quit bool) {
	w.mu.Lock()
	if quit {
		w.lefts = append(w.lefts, name)
	}
	w.mu.Unlock()
}

func (w *listWatcher) SyncTurn(context.Context) error { w.turns.Add(1); return nil }

func (w *listWatcher) names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, p := range w.list {
		out = append(out, p.Name)
	}
	return out
}

// holder is a listWatcher that says when it holds writes.
type holder struct{ *listWatcher }

func (h holder) HoldsWrites() bool { return h.held.Load() }

func newTestClient(addrs []string, name string, port int, h tracker.Handler) *tracker.Client {
	return tracker.NewClient(tracker.ClientOptions{
		Addrs: addrs, Name: name, Port: port, Logger: zerolog.Nop(), Handler: h,
		PingInterval: time.Second, FailoverTimeout: 5 * time.Second,
	})
}

// TestClientDeltas: a Client follows the list as deltas (its tracker
// serves them): every join and leave reaches its Handler's list, a
// burst of joins in few calls, and a peer that quits is told.
func TestClientDeltas(t *testing.T) {
	tcNoLeaks(t)
	_, addr := testutil.StartTracker(t, 10*time.Second)
	w := &listWatcher{}
	testutil.RunTrackerClient(t, newTestClient([]string{addr}, "w", 1000, w))
	const n = 40
	var want []string
	want = append(want, "w")
	clients := make([]*tracker.Client, n)
	for i := range n {
		name := "p" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		clients[i] = newTestClient([]string{addr}, name, 2000+i, nil)
		testutil.RunTrackerClient(t, clients[i])
		want = append(want, name)
	}
	testutil.Eventually(t, "the watcher to list every peer", func() bool { return slices.Equal(w.names(), want) })

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := clients[3].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	want = slices.Delete(want, 4, 5)
	testutil.Eventually(t, "the watcher to drop the peer that left", func() bool { return slices.Equal(w.names(), want) })
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(w.lefts, []string{"pda"}) {
		t.Errorf("LEFT quit for %v, want pda", w.lefts)
	}
}

// TestClientTurns: a Client whose Handler tells when it holds writes
// gets no turn in a round it did not ask for while it holds none;
// NoteWrites (answered before it returns) gets it one in the next round
// another peer starts, and the turn ends its holding.
func TestClientTurns(t *testing.T) {
	tcNoLeaks(t)
	tr, addr := testutil.StartTracker(t, 10*time.Second)
	idle := holder{&listWatcher{}}
	asker := holder{&listWatcher{}}
	ic := newTestClient([]string{addr}, "idle", 1001, idle)
	ac := newTestClient([]string{addr}, "asker", 1002, asker)
	testutil.RunTrackerClient(t, ic)
	testutil.RunTrackerClient(t, ac)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	round := func() uint64 {
		t.Helper()
		if err := ac.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		n := tr.Stats().Rounds
		testutil.Eventually(t, "the round to end", func() bool { return ic.State().LastRound == n })
		return n
	}
	round()
	if got := idle.turns.Load(); got != 0 {
		t.Fatalf("an idle peer had %d turns", got)
	}

	idle.held.Store(true)
	wait := ic.NoteWrites()
	wait(ctx) // the tracker knows now
	// As its turn will make them durable, it holds none when it ends.
	idle.held.Store(false)
	round()
	if got := idle.turns.Load(); got != 1 {
		t.Fatalf("a peer holding writes had %d turns, want 1", got)
	}
	round()
	if got := idle.turns.Load(); got != 1 {
		t.Fatalf("after its turn, a peer holding nothing had %d turns, want 1", got)
	}

	// Still holding after its turn (a write during it): told again.
	idle.held.Store(true)
	ic.NoteWrites()(ctx)
	round() // its turn; HoldsWrites is still true when it ends
	round() // so it has another
	if got := idle.turns.Load(); got != 3 {
		t.Fatalf("a peer still holding writes after its turn had %d turns, want 3", got)
	}
}

// TestClientFailover: with two trackers, a Client whose tracker dies
// registers with the other, and a Sync waiting for its turn when it died
// gets one there, instead of failing.
func TestClientFailover(t *testing.T) {
	tcNoLeaks(t)
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trA := tracker.New(tracker.Options{Logger: zerolog.Nop()})
	servedA := make(chan struct{})
	go func() { defer close(servedA); _ = trA.Serve(lnA) }()
	t.Cleanup(func() { trA.Close(); <-servedA })
	trB, addrB := testutil.StartTracker(t, 10*time.Second)

	// A stalled peer on A holds the token, so the Sync waits there.
	stalled := make(chan struct{})
	staller := newTestClient([]string{lnA.Addr().String()}, "staller", 1000, funcHandler{turn: func(ctx context.Context) error {
		close(stalled)
		<-ctx.Done()
		return ctx.Err()
	}})
	testutil.RunTrackerClient(t, staller)
	w := &listWatcher{}
	c := newTestClient([]string{lnA.Addr().String(), addrB}, "c", 1001, w)
	testutil.RunTrackerClient(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	go func() { _ = staller.Sync(ctx) }()
	<-stalled
	synced := make(chan error, 1)
	go func() { synced <- c.Sync(ctx) }()
	testutil.Eventually(t, "c's Sync to wait", func() bool { return c.State().Waiting == 1 })

	trA.Close()
	if err := <-synced; err != nil {
		t.Fatalf("Sync across the failover: %v", err)
	}
	if got := w.turns.Load(); got != 1 {
		t.Errorf("%d turns, want 1", got)
	}
	if r := trB.Stats().Rounds; r != 1 {
		t.Errorf("tracker B ran %d rounds, want 1", r)
	}
	if got := trB.Peers(); len(got) != 1 || got[0].Name != "c" {
		t.Errorf("tracker B lists %v, want c", got)
	}
}

// TestClientOldTracker: a tracker that predates the extensions refuses
// FEATURES; the Client registers all the same, takes the UPDATEs, and
// NoteWrites has nothing to wait for.
func TestClientOldTracker(t *testing.T) {
	tcNoLeaks(t)
	addr := scriptedTracker(t, func(m peerproto.Message) string {
		switch m.(type) {
		case peerproto.Features:
			return "FEATURES FAIL invalid unknown verb \"FEATURES\"\n"
		case peerproto.Register:
			return "REGISTER OK\nUPDATE old@127.0.0.1:1 h@127.0.0.1:1001\n"
		}
		return ""
	})
	h := holder{&listWatcher{}}
	h.held.Store(true)
	c := newTestClient([]string{addr}, "h", 1001, h)
	testutil.RunTrackerClient(t, c)
	testutil.Eventually(t, "the UPDATE", func() bool { return slices.Equal(h.names(), []string{"old", "h"}) })
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	c.NoteWrites()(ctx)
	if ctx.Err() != nil {
		t.Fatal("NoteWrites waited for a tracker without turns")
	}
}

// turnWriter is a holder whose first turn sees a write begin (as a
// mount's program writes while its fsync's turn runs): it calls
// NoteWrites and hands its wait out, for the test to end the write
// after the turn.
type turnWriter struct {
	holder
	c     *tracker.Client
	waits chan func(context.Context)
}

func (w *turnWriter) SyncTurn(ctx context.Context) error {
	if w.turns.Add(1) == 1 {
		w.waits <- w.c.NoteWrites()
	}
	return nil
}

// TestClientWriteDuringTurn: a write that begins during this peer's
// turn and succeeds after its SYNC FIN (which ends its holding at the
// tracker) is still owed a turn: the next round another peer starts
// gives it one, even though HoldsWrites said nothing when the turn
// ended (the write was in flight, its effects not recorded yet).
func TestClientWriteDuringTurn(t *testing.T) {
	tcNoLeaks(t)
	tr, addr := testutil.StartTracker(t, 10*time.Second)
	w := &turnWriter{holder: holder{&listWatcher{}}, waits: make(chan func(context.Context), 1)}
	wc := newTestClient([]string{addr}, "writer", 1001, w)
	w.c = wc
	asker := holder{&listWatcher{}}
	ac := newTestClient([]string{addr}, "asker", 1002, asker)
	testutil.RunTrackerClient(t, wc)
	testutil.RunTrackerClient(t, ac)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	if err := wc.Sync(ctx); err != nil { // its fsync: round 1, its turn
		t.Fatal(err)
	}
	wait := <-w.waits
	testutil.Eventually(t, "round 1 to end", func() bool { return ac.State().LastRound == 1 })
	wait(ctx) // the write succeeds now, after the turn: the tracker must know

	if err := ac.Sync(ctx); err != nil { // round 2, started by another
		t.Fatal(err)
	}
	testutil.Eventually(t, "round 2 to end", func() bool { return wc.State().LastRound == 2 })
	if n := tr.Stats().Rounds; n != 2 {
		t.Fatalf("%d rounds, want 2", n)
	}
	if got := w.turns.Load(); got != 2 {
		t.Errorf("the writer had %d turns, want 2: its write that succeeded before round 2 began has no turn in it", got)
	}
}

// TestClientRepeatedGrantAfterFin: a tracker answers a SYNC from the
// peer that already holds the token with SYNC OK again (the peer's SYNC
// crossed the grant on the wire). That second SYNC OK arrives after the
// peer's turn may have ended: it repeats the grant that turn used, and
// must not start a turn without the token (whose SYNC FIN the tracker
// refuses, and whose uploads no one orders).
func TestClientRepeatedGrantAfterFin(t *testing.T) {
	tcNoLeaks(t)
	var stray atomic.Int32
	round, granted := 0, false // the script's own: one connection, one goroutine
	addr := scriptedTracker(t, func(m peerproto.Message) string {
		switch m.(type) {
		case peerproto.Features:
			return "FEATURES OK\n"
		case peerproto.Register:
			return "REGISTER OK\nUPDATE h@127.0.0.1:1001\n"
		case peerproto.Sync:
			round, granted = round+1, true
			return "SYNC OK\n"
		case peerproto.SyncFin:
			if !granted {
				stray.Add(1)
				return "SYNC FAIL state not the token holder\n"
			}
			granted = false
			// The repeated grant went out before this FIN was read
			// (the holder's SYNC came first), and reaches the peer
			// after its FIN: a quick turn ends before a round trip.
			return fmt.Sprintf("SYNC OK\nSYNC END %d\n", round)
		}
		return ""
	})
	w := &listWatcher{}
	c := newTestClient([]string{addr}, "h", 1001, w)
	testutil.RunTrackerClient(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), testutil.Wait)
	defer cancel()
	for range 2 {
		if err := c.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The second round's lines come after the first's repeated grant:
	// a turn it started has begun by now, and its FIN is on its way.
	testutil.Eventually(t, "the second round's end", func() bool { return c.State().LastRound == 2 })
	if got := w.turns.Load(); got != 2 {
		t.Errorf("%d turns for 2 grants", got)
	}
	if n := stray.Load(); n != 0 {
		t.Errorf("%d SYNC FINs without the token", n)
	}
}

// scriptedTracker serves one connection on a loopback port until the test
// ends, answering each line with script's answer to it (PING with PONG,
// and what script leaves empty with a refusal), and returns its address:
// a tracker whose every line a test chooses.
func scriptedTracker(t *testing.T, script func(peerproto.Message) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 1)
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		conns <- nc
		defer nc.Close()
		r := bufio.NewReader(nc)
		for {
			line, err := peerproto.ReadLine(r)
			if err != nil {
				return
			}
			m, _ := peerproto.ParseTrackerRequest(line)
			answer := script(m)
			if _, ping := m.(peerproto.Ping); ping && answer == "" {
				answer = "PONG\n"
			}
			if answer == "" {
				answer = "X FAIL invalid unexpected\n"
			}
			if _, err := nc.Write([]byte(answer)); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case nc := <-conns:
			nc.Close() // ends the read loop whatever the client does
		default:
		}
		<-done
	})
	return ln.Addr().String()
}

// TestClientAsksAgainAfterUntakenGrantExpired: a grant this client did
// not take (read as a repeat of the last one) that the tracker then
// revokes (SYNC FAIL expired) leaves the request answered: the client
// asks again for the callers still waiting, rather than leave their
// fsync waiting for good.
func TestClientAsksAgainAfterUntakenGrantExpired(t *testing.T) {
	tcNoLeaks(t)
	syncs := 0 // the script's own: one connection, one goroutine
	addr := scriptedTracker(t, func(m peerproto.Message) string {
		switch m.(type) {
		case peerproto.Features:
			return "FEATURES OK\n"
		case peerproto.Register:
			return "REGISTER OK\nUPDATE h@127.0.0.1:1001\n"
		case peerproto.Sync:
			syncs++
			if syncs == 1 {
				// The grant went to a turn the client did not take.
				return "SYNC FAIL expired lease ran out\n"
			}
			return "SYNC OK\n"
		case peerproto.SyncFin:
			return "SYNC END 1\n"
		}
		return ""
	})
	c := newTestClient([]string{addr}, "h", 1001, &listWatcher{})
	testutil.RunTrackerClient(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), testutil.Wait)
	defer cancel()
	if err := c.Sync(ctx); err != nil {
		t.Fatalf("Sync after a revoked grant it never took: %v", err)
	}
}
