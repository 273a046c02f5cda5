package peer

import (
	"bufio"
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

// DefaultPingInterval is how often a TrackerClient sends PING by default;
// a tracker must not drop peers silent for less than about twice this.
const DefaultPingInterval = 5 * time.Second

// TrackerOptions configures a TrackerClient. Zero values take the defaults
// noted.
type TrackerOptions struct {
	Addr string // tracker host:port
	Name string // this peer's name; "" registers with the seed's bare REGISTER
	Port int    // port this peer serves on, advertised with Name

	PingInterval time.Duration // keepalive period (default 5s); the tracker is presumed dead after 3 silent periods
	DialTimeout  time.Duration // connect and REGISTER reply (default 5s)
	Logger       zerolog.Logger
	// Secure, if set, runs TLS and the membership proofs (package secure)
	// before REGISTER; nil speaks plaintext.
	Secure *secure.Config

	// OnUpdate receives every UPDATE (the full peer list, this peer included).
	OnUpdate func(peers []peerproto.PeerAddr)
	// OnRead is called on SYNC READ: a round is on and another peer writes.
	OnRead func()
	// OnTurn is called on SYNC OK, on its own goroutine: it must make this
	// peer's pending writes durable; SYNC FIN is sent when it returns. ctx
	// is cancelled if the lease expires or the tracker is lost. Nil: FIN at
	// once.
	OnTurn func(ctx context.Context) error
	// OnEnd is called on SYNC END, when the whole round is over; the
	// message says which peers may have stored something (see
	// peerproto.SyncEnd.OthersWrote).
	OnEnd func(end peerproto.SyncEnd)
	// Wrote, if set, reports whether this peer may have stored anything
	// on other peers since the last call, and forgets it: it is called as
	// each turn ends, and its answer goes with SYNC FIN ("SYNC FIN wrote"
	// or "SYNC FIN clean"), which lets the other peers keep their caches
	// after a round in which nobody wrote. A peer that cannot tell leaves
	// it nil and sends the seed's plain SYNC FIN.
	Wrote func() bool
	// OnState is called when the registration is won or lost.
	OnState func(registered bool)
	// OnLeft, if set, is called when an advertised peer's registration
	// ended, before the UPDATE without it: quit is true if it left on
	// purpose (QUIT), false if the tracker lost it. The client asks the
	// tracker for these events (FEATURES left) only if OnLeft is set; a
	// tracker that predates them never calls it.
	OnLeft func(name string, quit bool)
}

// Errors returned by TrackerClient.Sync.
var (
	ErrNoTracker     = errors.New("peer: not registered with a tracker")
	ErrTrackerLost   = errors.New("peer: connection to the tracker lost during SYNC")
	ErrLeaseExpired  = errors.New("peer: SYNC lease expired before the turn finished")
	ErrTrackerClosed = errors.New("peer: tracker client stopped")
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

// TrackerClient keeps this peer registered with a tracker: it registers,
// re-registers after the tracker restarts, answers keepalives, follows
// UPDATEs and takes part in SYNC rounds. Run drives it.
type TrackerClient struct {
	opts TrackerOptions
	log  zerolog.Logger

	wmu sync.Mutex // serialises writes to the tracker connection

	mu         sync.Mutex // protects the fields below
	nc         net.Conn   // nil while not registered
	peers      []peerproto.PeerAddr
	round      uint64 // last round ended
	inRound    bool
	holding    bool               // we hold the token
	cancelTurn context.CancelFunc // cancels the running turn
	turnsBegun uint64             // SYNC OK turns started
	requested  bool               // a SYNC of ours is outstanding
	waiters    []*syncWaiter
	lastErr    error
	changed    chan struct{} // closed (and replaced) whenever the state above changes
	leaving    bool          // Leave sent QUIT: Run returns instead of registering again

	firstOnce sync.Once
	first     chan struct{} // closed when the first registration attempt has ended
	firstErr  error         // its error; written before first is closed
}

type syncWaiter struct {
	after uint64     // needs a turn numbered above this
	done  chan error // buffered, receives once
}

// NewTrackerClient returns a client; call Run to start it.
func NewTrackerClient(opts TrackerOptions) *TrackerClient {
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	return &TrackerClient{opts: opts, log: opts.Logger.With().Str("component", "tracker-client").Str("tracker", opts.Addr).Logger(), first: make(chan struct{})}
}

// WaitFirstAttempt waits until Run's first registration attempt has ended
// and returns its error: nil if it registered, a *peerproto.FailError if
// the tracker refused (see IsFinalRefusal), or why the tracker could not
// be reached. It returns ctx's error if ctx ends first.
func (t *TrackerClient) WaitFirstAttempt(ctx context.Context) error {
	select {
	case <-t.first:
		return t.firstErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempted records the end of a registration attempt.
func (t *TrackerClient) attempted(err error) {
	t.firstOnce.Do(func() {
		t.firstErr = err
		close(t.first)
	})
}

// Run registers and stays registered until ctx is done, reconnecting with
// backoff whenever the tracker is lost. It returns ctx's error, or nil
// once Leave has ended the registration.
func (t *TrackerClient) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		registeredAt := time.Now()
		err := t.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if t.left() {
			t.log.Info().Msg("left the cluster (QUIT); not registering again")
			return nil
		}
		if time.Since(registeredAt) > 10*time.Second {
			backoff = 200 * time.Millisecond
		}
		if IsFinalRefusal(err) {
			// Not a network hiccup: someone must act (secret, name).
			t.log.Error().Err(err).Dur("retry_in", backoff).Msg("the tracker refuses this peer")
		} else {
			t.log.Warn().Err(err).Dur("retry_in", backoff).Msg("tracker connection lost")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Registered reports whether the client is currently registered.
func (t *TrackerClient) Registered() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nc != nil
}

// WaitRegistered blocks until the client is registered or ctx is done.
func (t *TrackerClient) WaitRegistered(ctx context.Context) error {
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
// mounts keep its folder. ErrNoTracker if not registered.
func (t *TrackerClient) Leave(ctx context.Context) error {
	t.mu.Lock()
	nc := t.nc
	if nc == nil {
		t.mu.Unlock()
		return ErrNoTracker
	}
	t.leaving = true
	t.mu.Unlock()
	t.write(nc, peerproto.Quit{})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for t.Registered() {
		select {
		case <-ctx.Done():
			nc.Close() // the QUIT went out or never will
			return fmt.Errorf("peer: leave: the tracker did not close the connection: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// left reports whether Leave was called.
func (t *TrackerClient) left() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leaving
}

// Peers returns the last UPDATE's peer list.
func (t *TrackerClient) Peers() []peerproto.PeerAddr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.peers)
}

// Changed returns a channel that is closed at the next change of the
// SYNC state (State), so a caller can wait for one without polling.
func (t *TrackerClient) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// bumpLocked wakes Changed's waiters. Called with t.mu held.
func (t *TrackerClient) bumpLocked() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// SyncState is a snapshot of this client's view of the SYNC round.
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
func (t *TrackerClient) State() SyncState {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := SyncState{Registered: t.nc != nil, InRound: t.inRound, Holding: t.holding, LastRound: t.round, Waiting: len(t.waiters)}
	if t.nc == nil && t.lastErr != nil {
		st.Error = t.lastErr.Error()
	}
	return st
}

// Sync asks for the write token and waits until a turn that began after
// this call has finished: OnTurn ran during our SYNC OK and SYNC FIN was
// sent. It returns OnTurn's error, or ErrNoTracker at once when not
// registered.
func (t *TrackerClient) Sync(ctx context.Context) error {
	t.mu.Lock()
	if t.nc == nil {
		t.mu.Unlock()
		return ErrNoTracker
	}
	w := &syncWaiter{after: t.turnsBegun, done: make(chan error, 1)}
	t.waiters = append(t.waiters, w)
	// While we hold the token, the request goes out when this turn ends.
	if !t.holding && !t.requested {
		t.requested = true
		t.sendLocked(peerproto.Sync{})
	}
	t.mu.Unlock()
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

// sendLocked writes m to the tracker connection. Called with t.mu held;
// the write has a short deadline so it never blocks long, and a failed
// write closes the connection, which the reader notices.
func (t *TrackerClient) sendLocked(m peerproto.Message) {
	if t.nc == nil {
		return
	}
	t.write(t.nc, m)
}

func (t *TrackerClient) write(nc net.Conn, m peerproto.Message) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_ = nc.SetWriteDeadline(time.Now().Add(t.opts.DialTimeout))
	if err := peerproto.WriteMessage(nc, m); err != nil {
		t.log.Debug().Err(err).Msg("write to tracker failed")
		nc.Close()
	}
}

// session runs one connection (register) and records the outcome of the
// registration attempt for WaitFirstAttempt.
func (t *TrackerClient) session(ctx context.Context) error {
	registered := false
	err := t.register(ctx, func() { registered = true; t.attempted(nil) })
	if !registered {
		t.attempted(err)
	}
	return err
}

// register runs one connection: dial, register (then calling ok), then
// read events until the connection fails or ctx is done.
func (t *TrackerClient) register(ctx context.Context, ok func()) error {
	dctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", t.opts.Addr)
	cancel()
	if err != nil {
		t.setErr(err)
		return fmt.Errorf("connect to tracker %s: %w", t.opts.Addr, err)
	}
	raw := nc
	// The socket, not the TLS layer, is closed: no close_notify that could
	// block on a tracker that does not read.
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if t.opts.Secure != nil {
		if nc, err = t.opts.Secure.Client(raw, t.opts.DialTimeout); err != nil {
			var re *secure.RefusedError
			if errors.As(err, &re) {
				// "REGISTER FAIL denied not a member of this cluster"
				if ev, perr := peerproto.ParseTrackerEvent([]byte(re.Line)); perr == nil {
					if r, ok := ev.(peerproto.Refusal); ok {
						err = r.Err
					}
				}
			}
			t.setErr(err)
			return fmt.Errorf("connect to tracker %s: %w", t.opts.Addr, err)
		}
	}

	r := bufio.NewReader(nc)
	_ = nc.SetDeadline(time.Now().Add(t.opts.DialTimeout))
	if err := peerproto.WriteMessage(nc, peerproto.Register{Name: t.opts.Name, Port: t.opts.Port}); err != nil {
		t.setErr(err)
		return fmt.Errorf("register: %w", err)
	}
	line, err := peerproto.ReadLine(r)
	if err != nil {
		t.setErr(err)
		return fmt.Errorf("register: %w", err)
	}
	ev, err := peerproto.ParseTrackerEvent(line)
	if err != nil {
		t.setErr(err)
		return fmt.Errorf("register: %w", err)
	}
	switch ev := ev.(type) {
	case peerproto.RegisterOK:
	case peerproto.Refusal:
		t.setErr(ev.Err)
		return fmt.Errorf("register: %w", ev.Err)
	default:
		err := fmt.Errorf("register: unexpected reply %q", line)
		t.setErr(err)
		return err
	}
	_ = nc.SetDeadline(time.Time{})
	t.log.Info().Str("name", t.opts.Name).Int("port", t.opts.Port).Msg("registered with tracker")

	t.mu.Lock()
	if t.leaving {
		t.mu.Unlock()
		return errors.New("leaving")
	}
	t.nc = nc
	t.lastErr = nil
	t.mu.Unlock()
	ok()
	if t.opts.OnState != nil {
		t.opts.OnState(true)
	}
	defer t.lost()
	if t.opts.OnLeft != nil {
		// Ask how peers leave; the answer comes with the events.
		t.write(nc, peerproto.Features{Words: []string{peerproto.FeatureLeft}})
	}

	// Keepalive: the tracker drops a silent peer, and we notice a dead
	// tracker by its silence (it answers every PING).
	pingDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(t.opts.PingInterval)
		defer tick.Stop()
		for {
			select {
			case <-pingDone:
				return
			case <-tick.C:
				t.write(nc, peerproto.Ping{})
			}
		}
	}()
	defer wg.Wait()
	defer close(pingDone)

	for {
		_ = nc.SetReadDeadline(time.Now().Add(3 * t.opts.PingInterval))
		line, err := peerproto.ReadLine(r)
		if err != nil {
			t.setErr(err)
			return err
		}
		ev, err := peerproto.ParseTrackerEvent(line)
		if err != nil {
			t.log.Warn().Err(err).Msg("ignoring malformed line from tracker")
			continue
		}
		t.handle(ctx, nc, ev)
	}
}

func (t *TrackerClient) setErr(err error) {
	t.mu.Lock()
	t.lastErr = err
	t.mu.Unlock()
}

// lost tears down the state of a registration that ended.
func (t *TrackerClient) lost() {
	t.mu.Lock()
	t.nc = nil
	t.inRound, t.holding, t.requested = false, false, false
	t.bumpLocked()
	if t.cancelTurn != nil {
		t.cancelTurn()
		t.cancelTurn = nil
	}
	waiters := t.waiters
	t.waiters = nil
	t.mu.Unlock()
	for _, w := range waiters {
		w.done <- ErrTrackerLost
	}
	if t.opts.OnState != nil {
		t.opts.OnState(false)
	}
}

func (t *TrackerClient) handle(ctx context.Context, nc net.Conn, ev peerproto.Message) {
	switch ev := ev.(type) {
	case peerproto.Update:
		t.mu.Lock()
		t.peers = ev.Peers
		t.mu.Unlock()
		t.log.Debug().Int("peers", len(ev.Peers)).Msg("UPDATE")
		if t.opts.OnUpdate != nil {
			t.opts.OnUpdate(slices.Clone(ev.Peers))
		}
	case peerproto.SyncRead:
		t.mu.Lock()
		t.inRound = true
		t.bumpLocked()
		t.mu.Unlock()
		t.log.Debug().Msg("SYNC READ")
		if t.opts.OnRead != nil {
			t.opts.OnRead()
		}
	case peerproto.SyncOK:
		t.mu.Lock()
		if t.holding {
			t.mu.Unlock()
			return // a repeated grant of the turn we are in
		}
		t.inRound, t.holding, t.requested = true, true, false
		t.bumpLocked()
		t.turnsBegun++
		turn := t.turnsBegun
		tctx, cancel := context.WithCancel(ctx)
		t.cancelTurn = cancel
		t.mu.Unlock()
		t.log.Debug().Uint64("turn", turn).Msg("SYNC OK: holding the write token")
		go t.runTurn(tctx, cancel, nc, turn)
	case peerproto.SyncEnd:
		t.mu.Lock()
		t.inRound = false
		t.bumpLocked()
		t.round = ev.Round
		t.mu.Unlock()
		t.log.Debug().Uint64("round", ev.Round).Msg("SYNC END")
		if t.opts.OnEnd != nil {
			t.opts.OnEnd(ev)
		}
	case peerproto.Left:
		t.log.Debug().Str("peer", ev.Name).Str("how", ev.How).Msg("LEFT")
		if t.opts.OnLeft != nil {
			t.opts.OnLeft(ev.Name, ev.Quit())
		}
	case peerproto.FeaturesOK:
		if !ev.Has(peerproto.FeatureLeft) {
			t.log.Info().Msg("the tracker does not say how peers leave (no LEFT): a peer that quits stays listed here as down")
		}
	case peerproto.Refusal:
		if ev.Err.Verb == peerproto.VerbFeatures {
			t.log.Info().Err(ev.Err).Msg("the tracker predates protocol extensions (no LEFT): a peer that quits stays listed here as down")
			return
		}
		t.log.Warn().Err(ev.Err).Msg("tracker refused")
		if ev.Err.Verb == peerproto.VerbSync && ev.Err.Code == peerproto.CodeExpired {
			t.mu.Lock()
			if t.holding {
				t.holding = false
				t.bumpLocked()
				t.cancelTurn()
				t.cancelTurn = nil
				t.finishWaiters(t.turnsBegun, ErrLeaseExpired)
				t.requestForWaitersLocked()
			}
			t.mu.Unlock()
		}
		if ev.Err.Verb == peerproto.VerbSync && ev.Err.Code == peerproto.CodeState {
			t.mu.Lock()
			t.requested = false
			t.requestForWaitersLocked()
			t.mu.Unlock()
		}
	case peerproto.Pong:
	}
}

// runTurn runs OnTurn for our SYNC OK, then returns the token.
func (t *TrackerClient) runTurn(ctx context.Context, cancel context.CancelFunc, nc net.Conn, turn uint64) {
	defer cancel()
	var err error
	if t.opts.OnTurn != nil {
		err = t.opts.OnTurn(ctx)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.holding || t.turnsBegun != turn || t.nc != nc {
		return // revoked or lost meanwhile; waiters were told
	}
	t.holding = false
	t.bumpLocked()
	t.cancelTurn = nil
	fin := peerproto.SyncFin{}
	if t.opts.Wrote != nil {
		fin.Known, fin.Wrote = true, t.opts.Wrote()
	}
	t.sendLocked(fin)
	t.log.Debug().Uint64("turn", turn).Err(err).Msg("SYNC FIN")
	t.finishWaiters(turn, err)
	t.requestForWaitersLocked()
}

// requestForWaitersLocked asks for another turn when Sync callers are
// still waiting (they arrived during a turn that could not serve them).
// Called with t.mu held.
func (t *TrackerClient) requestForWaitersLocked() {
	if len(t.waiters) > 0 && !t.requested && !t.holding {
		t.requested = true
		t.sendLocked(peerproto.Sync{})
	}
}

// finishWaiters completes the waiters satisfied by turn. Called with t.mu held.
func (t *TrackerClient) finishWaiters(turn uint64, err error) {
	t.waiters = slices.DeleteFunc(t.waiters, func(w *syncWaiter) bool {
		if w.after < turn {
			w.done <- err
			return true
		}
		return false
	})
}
