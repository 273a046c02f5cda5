package tracker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
	"github.com/peerfs/peerfs/tracker"
)

// These tests run Clients against a real tracker on 127.0.0.1.

// funcHandler is a Handler that passes each event to its function (nil:
// ignored). It implements neither TakeWrote nor PeerLeft: its Client
// sends the seed's plain SYNC FIN and asks for no LEFT events.
type funcHandler struct {
	update func([]peerproto.PeerAddr)
	read   func()
	turn   func(context.Context) error
	end    func(peerproto.SyncEnd)
}

func (e funcHandler) SetPeers(ps []peerproto.PeerAddr) {
	if e.update != nil {
		e.update(ps)
	}
}

func (e funcHandler) SyncRead() {
	if e.read != nil {
		e.read()
	}
}

func (e funcHandler) SyncTurn(ctx context.Context) error {
	if e.turn != nil {
		return e.turn(ctx)
	}
	return nil
}

func (e funcHandler) SyncEnd(end peerproto.SyncEnd) {
	if e.end != nil {
		e.end(end)
	}
}

// leave is a LEFT event.
type leave struct {
	name string
	quit bool
}

// leftWatcher is a Handler that hears how peers leave.
type leftWatcher struct {
	tracker.NopHandler
	lefts chan leave
}

func (w leftWatcher) PeerLeft(name string, quit bool) { w.lefts <- leave{name, quit} }

// tcNoLeaks checks, when the test is over, that it left no goroutine.
func tcNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last
}

func TestClientNotRegistered(t *testing.T) {
	tc := tracker.NewClient(tracker.ClientOptions{Addr: "127.0.0.1:1", Name: "a", Port: 1, Logger: zerolog.Nop()})
	if err := tc.Sync(t.Context()); !errors.Is(err, tracker.ErrNotRegistered) {
		t.Errorf("Sync before registering: %v, want ErrNoTracker", err)
	}
	if st := tc.State(); st.Registered || st.InRound {
		t.Errorf("State before registering: %+v", st)
	}
}

// A round between two clients: the one that asked writes first, the other
// reads and then gets its turn; both see the round end.
func TestClientSyncRound(t *testing.T) {
	tcNoLeaks(t)
	_, addr := testutil.StartTracker(t, 10*time.Second)

	type event struct{ who, what string }
	var mu sync.Mutex
	var events []event
	var updates [][]peerproto.PeerAddr
	record := func(who, what string) {
		mu.Lock()
		events = append(events, event{who, what})
		mu.Unlock()
	}
	newClient := func(name string, port int) *tracker.Client {
		return tracker.NewClient(tracker.ClientOptions{
			Addr: addr, Name: name, Port: port, Logger: zerolog.Nop(),
			Handler: funcHandler{
				update: func(ps []peerproto.PeerAddr) {
					if name == "b" {
						mu.Lock()
						updates = append(updates, ps)
						mu.Unlock()
					}
				},
				read: func() { record(name, "read") },
				turn: func(ctx context.Context) error { record(name, "turn"); return nil },
				end:  func(peerproto.SyncEnd) { record(name, "end") },
			},
		})
	}
	a, b := newClient("a", 1001), newClient("b", 1002)
	testutil.RunTrackerClient(t, a)
	testutil.RunTrackerClient(t, b)
	testutil.Eventually(t, "b to learn of both peers", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(updates) > 0 && len(updates[len(updates)-1]) == 2
	})
	if got := b.Peers(); len(got) != 2 || got[0].Name != "a" || got[0].Addr != "127.0.0.1:1001" {
		t.Errorf("b.Peers() = %v", got)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.Sync(ctx); err != nil {
		t.Fatalf("a.Sync: %v", err)
	}
	testutil.Eventually(t, "the round to end at both", func() bool {
		return a.State().LastRound == 1 && b.State().LastRound == 1 && !a.State().InRound && !b.State().InRound
	})
	mu.Lock()
	defer mu.Unlock()
	order := func(who string) []string {
		var out []string
		for _, e := range events {
			if e.who == who {
				out = append(out, e.what)
			}
		}
		return out
	}
	if got := order("a"); !slices.Equal(got, []string{"turn", "end"}) {
		t.Errorf("a saw %q, want [turn end]", got)
	}
	if got := order("b"); !slices.Equal(got, []string{"read", "turn", "end"}) {
		t.Errorf("b saw %q, want [read turn end]", got)
	}
	if i, j := slices.Index(events, event{"a", "turn"}), slices.Index(events, event{"b", "turn"}); i > j {
		t.Errorf("b's turn came before a's: %v", events)
	}
}

// A Sync that arrives during our turn still gets a turn of its own when
// that turn's lease expires (it used to be stranded: nobody asked the
// tracker for another turn).
func TestClientSyncAfterLeaseExpiry(t *testing.T) {
	tcNoLeaks(t)
	const lease = time.Second
	_, addr := testutil.StartTracker(t, lease)

	var mu sync.Mutex
	turns := 0
	firstTurn := make(chan struct{})
	tc := tracker.NewClient(tracker.ClientOptions{
		Addr: addr, Name: "a", Port: 1, Logger: zerolog.Nop(),
		Handler: funcHandler{turn: func(ctx context.Context) error {
			mu.Lock()
			turns++
			n := turns
			mu.Unlock()
			if n == 1 { // overstay the lease
				close(firstTurn)
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}},
	})
	testutil.RunTrackerClient(t, tc)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() { first <- tc.Sync(ctx) }()
	testutil.Recv(t, "the first turn", firstTurn)

	second := make(chan error, 1)
	go func() { second <- tc.Sync(ctx) }()
	testutil.Eventually(t, "the second Sync to wait", func() bool { return tc.State().Waiting == 2 })
	if !tc.State().Holding {
		t.Fatalf("the lease expired before the second Sync arrived; the test needs a longer lease")
	}

	if err := testutil.Recv(t, "the first Sync", first); !errors.Is(err, tracker.ErrLeaseExpired) {
		t.Errorf("first Sync: %v, want ErrLeaseExpired", err)
	}
	if err := testutil.Recv(t, "the second Sync", second); err != nil {
		t.Errorf("second Sync, asked during the expired turn: %v, want a turn of its own", err)
	}
	mu.Lock()
	n := turns
	mu.Unlock()
	if n != 2 {
		t.Errorf("SyncTurn ran %d times, want 2", n)
	}
	if st := tc.State(); st.Holding || st.Waiting != 0 {
		t.Errorf("state after both Syncs: %+v", st)
	}
}

// startClient runs tc until the test ends, without waiting for it to
// register.
func startClient(t *testing.T, tc *tracker.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// The first registration attempt's outcome tells a starting command
// whether to go on: registered, refused for good (a taken name, another
// cluster's secret), or not reached (try again later). The state says
// why the client is not registered.
func TestClientFirstAttempt(t *testing.T) {
	tcNoLeaks(t)
	_, addr := testutil.StartTracker(t, 10*time.Second)
	first := func(tc *tracker.Client) error {
		t.Helper()
		startClient(t, tc)
		ctx, cancel := context.WithTimeout(t.Context(), testutil.Wait)
		defer cancel()
		err := tc.WaitFirstAttempt(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("the first attempt did not end")
		}
		return err
	}

	a := tracker.NewClient(tracker.ClientOptions{Addr: addr, Name: "a", Port: 1001, Logger: zerolog.Nop()})
	if err := first(a); err != nil {
		t.Fatalf("registering a: %v", err)
	}
	if st := a.State(); !st.Registered || st.Error != "" {
		t.Errorf("a's state: %+v", st)
	}

	// The name is a's, from another address.
	taken := tracker.NewClient(tracker.ClientOptions{Addr: addr, Name: "a", Port: 1002, Logger: zerolog.Nop()})
	err := first(taken)
	if !tracker.IsFinalRefusal(err) {
		t.Errorf("a taken name: %v, want a final refusal", err)
	}
	testutil.Eventually(t, "the refusal in the state", func() bool {
		st := taken.State()
		return !st.Registered && strings.Contains(st.Error, "REGISTER FAIL exists")
	})

	// Another cluster's secret.
	s1, err := secure.New([]byte("the-cluster-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := secure.New([]byte("another-cluster-secret-98765"))
	if err != nil {
		t.Fatal(err)
	}
	secAddr := testutil.Serve(t, tracker.New(tracker.Options{Secure: s1, Logger: zerolog.Nop()}))
	stranger := tracker.NewClient(tracker.ClientOptions{Addr: secAddr, Name: "s", Port: 1003, Secure: s2, Logger: zerolog.Nop()})
	if err := first(stranger); !tracker.IsFinalRefusal(err) || !strings.Contains(err.Error(), "not a member") {
		t.Errorf("another secret: %v, want a final refusal: not a member", err)
	}
	// No secret at all: the tracker answers its first line (FEATURES)
	// with the registration's refusal, which is final too.
	plain := tracker.NewClient(tracker.ClientOptions{Addr: secAddr, Name: "p", Port: 1006, Logger: zerolog.Nop()})
	if err := first(plain); !tracker.IsFinalRefusal(err) || !strings.Contains(err.Error(), "REGISTER FAIL denied this tracker speaks TLS only") {
		t.Errorf("no secret: %v, want a final refusal: speaks TLS only", err)
	}
	member := tracker.NewClient(tracker.ClientOptions{Addr: secAddr, Name: "m", Port: 1004, Secure: s1, Logger: zerolog.Nop()})
	if err := first(member); err != nil {
		t.Errorf("a member: %v", err)
	}

	// Nobody listening: an error, but not a refusal.
	gone := tracker.NewClient(tracker.ClientOptions{Addr: testutil.ClosedAddr(t), Name: "g", Port: 1005, Logger: zerolog.Nop()})
	if err := first(gone); err == nil || tracker.IsFinalRefusal(err) {
		t.Errorf("no tracker: %v, want a connection error", err)
	}
	if st := gone.State(); !strings.Contains(st.Error, "refused") {
		t.Errorf("no tracker: state %+v, want the connection error", st)
	}
}

// TestClientLeave: a client that stops is dropped (PeerLeft with
// quit false); one that calls Leave quits (quit true), and its Run
// returns instead of registering again.
func TestClientLeave(t *testing.T) {
	tcNoLeaks(t)
	_, addr := testutil.StartTracker(t, 10*time.Second)
	lefts := make(chan leave, 10)
	watcher := tracker.NewClient(tracker.ClientOptions{
		Addr: addr, Name: "watcher", Port: 1000, Logger: zerolog.Nop(),
		Handler: leftWatcher{lefts: lefts},
	})
	testutil.RunTrackerClient(t, watcher)

	// Stopped (its context ended, as on SIGTERM): dropped.
	stopped := tracker.NewClient(tracker.ClientOptions{Addr: addr, Name: "stopped", Port: 1001, Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- stopped.Run(ctx) }()
	if err := stopped.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if got := testutil.Recv(t, "LEFT stopped", lefts); got != (leave{"stopped", false}) {
		t.Errorf("a stopped client: %+v, want dropped", got)
	}

	// Leaving on purpose: QUIT.
	leaver := tracker.NewClient(tracker.ClientOptions{Addr: addr, Name: "leaver", Port: 1002, Logger: zerolog.Nop()})
	done = make(chan error, 1)
	go func() { done <- leaver.Run(t.Context()) }()
	if err := leaver.WaitRegistered(t.Context()); err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithTimeout(t.Context(), testutil.Wait)
	defer lcancel()
	if err := leaver.Leave(lctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := testutil.Recv(t, "Run to return after Leave", done); err != nil {
		t.Errorf("Run after Leave: %v, want nil", err)
	}
	if got := testutil.Recv(t, "LEFT leaver", lefts); got != (leave{"leaver", true}) {
		t.Errorf("a client that left: %+v, want quit", got)
	}
	if leaver.Registered() {
		t.Error("still registered after Leave")
	}
	if err := leaver.Leave(lctx); !errors.Is(err, tracker.ErrNotRegistered) {
		t.Errorf("Leave again: %v, want ErrNoTracker", err)
	}
	testutil.Eventually(t, "the watcher's list without both", func() bool { return len(watcher.Peers()) == 1 })
}
