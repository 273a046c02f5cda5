package tracker

// The client half: a peer's registration with a tracker and its part in
// SYNC rounds. client_session.go runs one connection, client_send.go
// writes to it.
//
// Lock order: Client.mu before sender.mu. Neither is held across network
// I/O: messages are queued to the connection's sender, whose goroutine
// writes them.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
)

// DefaultPingInterval is how often a Client sends PING by default; a
// tracker must not drop peers silent for less than about twice this.
const DefaultPingInterval = 5 * time.Second

// ClientOptions configures a Client. Zero values take the defaults noted.
type ClientOptions struct {
	Addr string // tracker host:port
	// Addrs, if set, are several trackers serving one cluster (replicas
	// on one etcd): the Client registers with one and, when it loses
	// it, with the next. Addr is ignored then.
	Addrs []string
	Name  string // this peer's name; "" registers with the seed's bare REGISTER
	Port  int    // port this peer serves on, advertised with Name

	PingInterval time.Duration // keepalive period (default 5s); the tracker is presumed dead after 3 silent periods
	DialTimeout  time.Duration // connect, REGISTER reply and every write (default 5s)
	// FailoverTimeout is how long a Sync waits, when the tracker
	// connection is lost, for this peer to register again (with the
	// same tracker or another of Addrs) and ask again, before it gives
	// up with ErrDisconnected (default 15s).
	FailoverTimeout time.Duration
	Logger          zerolog.Logger
	// Secure, if set, runs TLS and the membership proofs (package secure)
	// before REGISTER; nil speaks plaintext.
	Secure *secure.Config

	// Handler is told what the tracker says and does this peer's part of
	// SYNC rounds; nil is NopHandler.
	Handler Handler
}

// Handler is what a Client tells of the cluster and asks to work during
// SYNC rounds. The Client calls it from the goroutine that reads the
// tracker, one event at a time in the tracker's order, except SyncTurn,
// which runs on a goroutine of its own.
//
// A Handler may implement WroteReporter, WritesHolder, LeftHandler and
// StateHandler too; the Client asks the tracker for what they need only
// if it does.
type Handler interface {
	// SetPeers receives every UPDATE: the full peer list, this peer
	// included.
	SetPeers(peers []peerproto.PeerAddr)
	// SyncRead is called on SYNC READ: a round is on and another peer
	// writes.
	SyncRead()
	// SyncTurn runs on SYNC OK: it must make this peer's pending writes
	// durable; SYNC FIN is sent when it returns. ctx is cancelled if the
	// lease expires or the tracker is lost.
	SyncTurn(ctx context.Context) error
	// SyncEnd is called on SYNC END, when the whole round is over; the
	// message says which peers may have stored something (see
	// peerproto.SyncEnd.OthersWrote).
	SyncEnd(end peerproto.SyncEnd)
}

// WroteReporter is a Handler that can tell whether this peer stored
// anything on other peers. Its answer goes with SYNC FIN ("SYNC FIN
// wrote" or "SYNC FIN clean"), which lets the other peers keep their
// caches after a round in which nobody wrote; a Handler that cannot tell
// does not implement it, and its Client sends the seed's plain SYNC FIN.
type WroteReporter interface {
	// TakeWrote reports whether this peer may have stored anything on
	// other peers since the last call, and forgets it. It is called as
	// each turn ends, with the Client's lock held: it must return at
	// once and not call the Client.
	TakeWrote() bool
}

// WritesHolder is a Handler that can tell whether this peer holds writes
// the other peers must see. Its Client tells the tracker (FEATURES
// turns, WRITES held|none), so that a round this peer did not ask for
// gives it a turn only while it holds some: rounds then cost what the
// writers cost, not a turn per registered peer. Before it starts to
// hold writes, the Handler calls Client.NoteWrites.
type WritesHolder interface {
	// HoldsWrites reports whether this peer holds writes another peer
	// must see that a turn would make visible or durable. It is called
	// when the peer registers and as each turn ends (after TakeWrote),
	// with the Client's lock held: it must return at once and not call
	// the Client.
	HoldsWrites() bool
}

// LeftHandler is a Handler that wants to hear how peers leave. Its Client
// asks the tracker for these events (FEATURES left); a tracker that
// predates them never sends one.
type LeftHandler interface {
	// PeerLeft is called when an advertised peer's registration ended,
	// before the UPDATE without it: quit is true if it left on purpose
	// (QUIT), false if the tracker lost it.
	PeerLeft(name string, quit bool)
}

// StateHandler is a Handler told when the registration is won or lost.
type StateHandler interface {
	// RegistrationChanged is called when this peer has registered (true)
	// and when its registration ended (false).
	RegistrationChanged(registered bool)
}

// NopHandler is a Handler that does nothing: its turns end at once.
// Embed it to handle only some events.
type NopHandler struct{}

// SetPeers does nothing.
func (NopHandler) SetPeers([]peerproto.PeerAddr) {}

// SyncRead does nothing.
func (NopHandler) SyncRead() {}

// SyncTurn returns nil at once.
func (NopHandler) SyncTurn(context.Context) error { return nil }

// SyncEnd does nothing.
func (NopHandler) SyncEnd(peerproto.SyncEnd) {}

// Errors returned by Client.Sync and Client.Leave.
var (
	ErrNotRegistered = errors.New("tracker: not registered with a tracker")
	ErrDisconnected  = errors.New("tracker: connection to the tracker lost during SYNC")
	ErrLeaseExpired  = errors.New("tracker: SYNC lease expired before the turn finished")
)

// IsFinalRefusal reports whether err is the tracker refusing this peer for
// a reason that retrying does not change until someone acts: it is not a
// member of the cluster (another secret), its name is taken by another
// peer, or the tracker finds its name invalid. Run keeps retrying after
// one (the other peer may leave, the tracker may be fixed), but a command
// that is just starting should give up and say why.
func IsFinalRefusal(err error) bool {
	var fe *peerproto.FailError
	if !errors.As(err, &fe) || fe.Verb != peerproto.VerbRegister {
		return false
	}
	switch fe.Code {
	case peerproto.CodeDenied, peerproto.CodeExists, peerproto.CodeInvalid:
		return true
	}
	return false
}

// Client keeps this peer registered with a tracker: it registers,
// re-registers after the tracker restarts, answers keepalives, follows
// UPDATEs and takes part in SYNC rounds, telling its Handler. Run drives
// it.
type Client struct {
	opts  ClientOptions
	h     Handler
	wrote WroteReporter // nil: plain SYNC FIN
	holds WritesHolder  // nil: no turns asked for (a turn in every round)
	left  LeftHandler   // nil: no LEFT events asked for
	state StateHandler  // may be nil
	log   zerolog.Logger
	addrs []string // the trackers, tried in turn from next
	// dial connects to the tracker at addr; tests replace it before Run.
	dial func(ctx context.Context, addr string) (net.Conn, error)
	next int // index in addrs of the tracker to try next; only Run's goroutine uses it

	first     chan struct{} // closed when the first registration attempt has ended
	firstOnce sync.Once
	firstErr  error // the first attempt's error; written once, before first is closed

	mu         sync.Mutex // protects the fields below; never held across network I/O
	out        *sender    // the registered connection's writer; nil while not registered
	peers      []peerproto.PeerAddr
	round      uint64 // last round ended
	inRound    bool
	holding    bool               // we hold the token
	cancelTurn context.CancelFunc // cancels the running turn
	turnsBegun uint64             // SYNC OK turns started
	requested  bool               // a SYNC of ours is outstanding
	// finished is set when our SYNC FIN of a round went out to a tracker
	// that ends rounds with SYNC END, until that SYNC END: a SYNC OK
	// meanwhile repeats the grant the turn used (the tracker answers a
	// SYNC from its holder so; it gives no peer two turns in a round).
	finished   bool
	endsRounds bool // the registered tracker answered FEATURES, so sends SYNC END
	waiters    []*syncWaiter
	lastErr    error
	changed    chan struct{} // closed (and replaced) whenever the state above changes
	leaving    bool          // Leave sent QUIT: Run returns instead of registering again
	addr       string        // the tracker registered with, or last tried
	lostAt     time.Time     // when the last registration ended; zero if never registered
	running    bool          // Run is running
	writes     writesState   // what the tracker was told of this peer's writes (client_writes.go)
	// writing counts the writes noted (NoteWrites) whose wait has not
	// returned: in progress, so held, whatever HoldsWrites says. It
	// outlives connections.
	writing int
}

// syncWaiter is a Sync call waiting for its turn.
type syncWaiter struct {
	after uint64     // needs a turn numbered above this
	done  chan error // buffered, receives once
}

// NewClient returns a client; call Run to start it.
func NewClient(opts ClientOptions) *Client {
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.FailoverTimeout <= 0 {
		opts.FailoverTimeout = 15 * time.Second
	}
	addrs := slices.Clone(opts.Addrs)
	if len(addrs) == 0 {
		addrs = []string{opts.Addr}
	}
	if opts.Handler == nil {
		opts.Handler = NopHandler{}
	}
	t := &Client{
		opts:  opts,
		h:     opts.Handler,
		log:   opts.Logger.With().Str("component", "tracker-client").Logger(),
		first: make(chan struct{}),
		addrs: addrs,
		addr:  addrs[0],
	}
	t.wrote, _ = opts.Handler.(WroteReporter)
	t.holds, _ = opts.Handler.(WritesHolder)
	t.left, _ = opts.Handler.(LeftHandler)
	t.state, _ = opts.Handler.(StateHandler)
	t.dial = func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	return t
}

// WaitFirstAttempt waits until Run's first registration attempt has ended
// and returns its error: nil if it registered, a *peerproto.FailError if
// the tracker refused (see IsFinalRefusal), or why the tracker could not
// be reached. It returns ctx's error if ctx ends first.
func (t *Client) WaitFirstAttempt(ctx context.Context) error {
	select {
	case <-t.first:
		return t.firstErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempted records the end of a registration attempt.
func (t *Client) attempted(err error) {
	t.firstOnce.Do(func() {
		t.firstErr = err
		close(t.first)
	})
}

// Run registers and stays registered until ctx is done, reconnecting with
// backoff whenever the tracker is lost; with several trackers (Addrs), it
// tries the next one at once, and backs off only once it has tried them
// all. It returns ctx's error, or nil once Leave has ended the
// registration.
func (t *Client) Run(ctx context.Context) error {
	t.mu.Lock()
	t.running = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.running = false
		t.bumpLocked()
		t.mu.Unlock()
	}()
	backoff := 200 * time.Millisecond
	failed := 0 // trackers tried in a row without a registration
	for {
		addr := t.addrs[t.next]
		registeredAt := time.Now()
		err := t.session(ctx, addr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if t.isLeaving() {
			t.log.Info().Msg("left the cluster (QUIT); not registering again")
			return nil
		}
		if time.Since(registeredAt) > 10*time.Second {
			backoff = 200 * time.Millisecond
			failed = 0
		}
		if IsFinalRefusal(err) {
			// Not a network hiccup: someone must act (secret, name).
			t.log.Error().Err(err).Str("tracker", addr).Dur("retry_in", backoff).Msg("the tracker refuses this peer")
		} else {
			t.log.Warn().Err(err).Str("tracker", addr).Dur("retry_in", backoff).Msg("tracker connection lost")
		}
		// The next tracker; a pause only after a whole turn of them.
		t.next = (t.next + 1) % len(t.addrs)
		if failed++; failed < len(t.addrs) {
			continue
		}
		failed = 0
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Registered reports whether the client is currently registered.
func (t *Client) Registered() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out != nil
}

// WaitRegistered blocks until the client is registered or ctx is done.
func (t *Client) WaitRegistered(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !t.Registered() {
		select {
		case <-ctx.Done():
			t.mu.Lock()
			err := t.lastErr
			t.mu.Unlock()
			if err != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Leave ends this peer's membership on purpose: it sends QUIT, so that the
// tracker tells the others this peer left (LEFT <name> quit) and their
// mounts drop its folder, and waits until the tracker has closed the
// connection. Run then returns nil instead of registering again. A peer
// that merely stops (SIGTERM, a crash) does not leave: it is dropped, and
// mounts keep its folder. ErrNotRegistered if not registered.
func (t *Client) Leave(ctx context.Context) error {
	t.mu.Lock()
	out := t.out
	if out == nil {
		t.mu.Unlock()
		return ErrNotRegistered
	}
	t.leaving = true
	out.send(peerproto.Quit{})
	t.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for t.Registered() {
		select {
		case <-ctx.Done():
			out.close() // the QUIT went out or never will
			return fmt.Errorf("tracker: leave: the tracker did not close the connection: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// isLeaving reports whether Leave was called.
func (t *Client) isLeaving() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leaving
}

// Peers returns the last UPDATE's peer list.
func (t *Client) Peers() []peerproto.PeerAddr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.peers)
}

// Changed returns a channel that is closed at the next change of the
// SYNC state (State), so a caller can wait for one without polling.
func (t *Client) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changedLocked()
}

func (t *Client) changedLocked() <-chan struct{} {
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// bumpLocked wakes Changed's waiters. Called with t.mu held.
func (t *Client) bumpLocked() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// SyncState is a snapshot of a Client's view of the SYNC round.
type SyncState struct {
	Registered bool
	// Error is why the client is not registered (the last attempt's or
	// the lost connection's error); "" while registered.
	Error     string
	InRound   bool   // a round is on (we got SYNC OK or SYNC READ, no END yet)
	Holding   bool   // we hold the write token
	LastRound uint64 // number of the last round that ended
	Waiting   int    // Sync callers waiting for a turn
}

// State returns a snapshot of the SYNC state.
func (t *Client) State() SyncState {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := SyncState{Registered: t.out != nil, InRound: t.inRound, Holding: t.holding, LastRound: t.round, Waiting: len(t.waiters)}
	if t.out == nil && t.lastErr != nil {
		st.Error = t.lastErr.Error()
	}
	return st
}

// Sync asks for the write token and waits until a turn that began after
// this call has finished: the Handler's SyncTurn ran during our SYNC OK
// and SYNC FIN was sent. It returns SyncTurn's error, or
// ErrNotRegistered at once when not registered. When the connection to
// the tracker is lost meanwhile, or was lost less than FailoverTimeout
// ago, Sync waits for this peer to register again (with any of the
// trackers) and asks again, up to FailoverTimeout since the loss; then
// it returns ErrDisconnected (ErrNotRegistered if it had not asked). A
// request the tracker refuses (SYNC FAIL, but for a lease that expired)
// returns the refusal, a *peerproto.FailError, wrapped.
func (t *Client) Sync(ctx context.Context) error {
	t.mu.Lock()
	w := &syncWaiter{after: t.turnsBegun, done: make(chan error, 1)}
	asked := false
	for {
		if t.out != nil {
			t.waiters = append(t.waiters, w)
			// While we hold the token, the request goes out when this
			// turn ends.
			if !t.holding && !t.requested {
				t.requested = true
				t.out.send(peerproto.Sync{})
			}
			t.mu.Unlock()
			asked = true
			err := t.await(ctx, w)
			if !errors.Is(err, ErrDisconnected) {
				return err
			}
			t.mu.Lock()
			w = &syncWaiter{after: w.after, done: make(chan error, 1)}
			continue
		}
		// Not registered: wait for a registration if one is likely
		// soon (Run is on, and the last one ended a moment ago).
		deadline := t.lostAt.Add(t.opts.FailoverTimeout)
		if !t.running || t.lostAt.IsZero() || !time.Now().Before(deadline) {
			t.mu.Unlock()
			if asked {
				return ErrDisconnected
			}
			return ErrNotRegistered
		}
		changed := t.changedLocked()
		t.mu.Unlock()
		timer := time.NewTimer(time.Until(deadline))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
		t.mu.Lock()
	}
}

// await waits for w to be done, or ctx.
func (t *Client) await(ctx context.Context, w *syncWaiter) error {
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		t.mu.Lock()
		t.waiters = slices.DeleteFunc(t.waiters, func(x *syncWaiter) bool { return x == w })
		t.mu.Unlock()
		return ctx.Err()
	}
}
