package tracker

import (
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

// Defaults for the zero fields of Options.
const (
	DefaultLease        = 30 * time.Second
	DefaultIdleTimeout  = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	// DefaultHandshakeTimeout bounds the TLS handshake and membership proofs.
	DefaultHandshakeTimeout = 10 * time.Second
)

const (
	// maxKeptBuffer is the largest write buffer a connection keeps
	// between bursts.
	maxKeptBuffer = 4 << 10
	// maxAcceptBackoff caps the pause after a failing Accept.
	maxAcceptBackoff = time.Second
)

// maxConns bounds open connections, so that unregistered ones cannot
// exhaust the tracker while leaving room for every registration.
func maxConns(maxPeers int) int { return 3*maxPeers + 8 }

// Options configures a Tracker. The zero value of each field selects its
// default.
type Options struct {
	// Lease is how long a SYNC OK holder may keep the write token before it
	// is revoked with "SYNC FAIL expired ..."; default 30s.
	Lease time.Duration
	// IdleTimeout drops a connection that sends no line for longer (peers
	// PING every few seconds); default 15s. It applies before REGISTER too.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a peer; a peer that does not take
	// its bytes in time is dropped; default 10s.
	WriteTimeout time.Duration
	// MaxPeers is the most registrations (advertised or not) at once;
	// default and upper bound peerproto.MaxPeers, the most an UPDATE carries.
	// Open connections, registered or not, are limited to 3*MaxPeers+8;
	// at the limit, a new connection evicts the oldest unregistered one,
	// so idle strangers cannot lock peers out.
	MaxPeers int
	// Secure, if set, makes every connection TLS with a membership proof
	// (package secure) before any line; nil serves plaintext to anyone.
	Secure *secure.Config
	// HandshakeTimeout bounds the TLS handshake and proofs; default 10s.
	HandshakeTimeout time.Duration
	// MaxPendingPerSource bounds the connections from one source (IPv4
	// address or IPv6 /64) still in the TLS handshake and proofs; more are
	// closed at once, so that one source cannot evict everyone else's
	// handshakes; default secure.DefaultMaxPendingPerSource. (The
	// connection limit above bounds them all.)
	MaxPendingPerSource int
	// RefusalLogInterval: refused connections (strangers, the excess
	// over the limits, evictions) are logged one line per interval at
	// most, with counts; default secure.DefaultRefusalLogInterval.
	RefusalLogInterval time.Duration
	// Logger receives the tracker's log, with component=tracker added.
	Logger zerolog.Logger
	// Shared, if set, makes this tracker one replica of several that
	// keep the peers and the SYNC rounds in a shared store
	// (tracker/etcdstate); nil keeps them in this process.
	Shared Shared
}

func (o Options) withDefaults() Options {
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.MaxPeers <= 0 || o.MaxPeers > peerproto.MaxPeers {
		o.MaxPeers = peerproto.MaxPeers
	}
	return o
}

// Tracker is the registration server and SYNC arbiter. Create one with New,
// run it with Serve and stop it with Close.
//
// All state is guarded by mu. Handlers only queue outbound lines (a
// non-blocking channel send) while holding it; the per-connection writer
// goroutines do the network writes. A connection that must go while the
// lock is held (its queue overflowed) is put on drops and removed once the
// current step is done, so that lists being iterated are never changed
// underneath; the sockets of removed connections are closed after mu is
// released.
type Tracker struct {
	opts Options
	log  zerolog.Logger
	gate *secure.Gate  // handshakes per source, and the log of refusals
	quit chan struct{} // closed by Close; wakes Serve from its accept backoff

	// wg counts every goroutine the tracker owns: Serve loops, connection
	// readers and writers, and armed lease timers.
	wg sync.WaitGroup

	mu        sync.Mutex // protects the fields below
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{} // every open connection, registered or not
	peers     []*conn            // registered connections, in registration order
	byName    map[string]*conn   // advertised peers by name
	anonSeq   uint64             // numbers anonymous registrations: anon-1, anon-2, ...
	rounds    syncState          // see sync.go
	drops     []pendingDrop      // connections to remove at the end of this step
	closing   []*conn            // removed connections whose sockets await closing
	// seedLine is the last UPDATE sent to the connections without
	// deltas (members.go); nil while there are none.
	seedLine        []byte
	warnedTruncated bool // logged that the list no longer fits in an UPDATE

	// rep is the tracker's part as a replica (Options.Shared); nil
	// otherwise. Its state is guarded by mu too.
	rep *replica
}

// Reasons removeLocked is given. reasonQuit, for a peer that said QUIT,
// is the only leave on purpose; reasonReplaced is no leave at all.
const (
	reasonQuit     = "quit"
	reasonReplaced = "replaced by a new registration from the same address"
)

type pendingDrop struct {
	c      *conn
	reason string
}

// New returns a Tracker configured by opts; it serves nothing until Serve.
func New(opts Options) *Tracker {
	opts = opts.withDefaults()
	t := &Tracker{
		opts:      opts,
		log:       opts.Logger.With().Str("component", "tracker").Logger(),
		quit:      make(chan struct{}),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		byName:    make(map[string]*conn),
	}
	t.gate = secure.NewGate(secure.GateOptions{
		MaxPendingPerSource: opts.MaxPendingPerSource,
		// The connection limit, which evicts the oldest unregistered
		// connection, is reached first: the gate never evicts.
		MaxPending:         maxConns(opts.MaxPeers) + 1,
		RefusalLogInterval: opts.RefusalLogInterval,
		Logger:             t.log,
	})
	if opts.Shared != nil {
		t.rep = newReplica(t, opts.Shared)
		t.wg.Go(t.rep.run)
	}
	return t
}

// Serve accepts connections on ln until Close, and then returns nil. It may
// be called for several listeners at once. It returns an error wrapping the
// cause if ln fails for another reason (net.ErrClosed if ln was closed by
// someone else); transient Accept errors are retried after a pause.
func (t *Tracker) Serve(ln net.Listener) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ln.Close()
		return nil
	}
	t.listeners[ln] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	defer func() {
		t.mu.Lock()
		delete(t.listeners, ln)
		t.mu.Unlock()
	}()

	t.log.Info().Str("addr", ln.Addr().String()).Msg("listening")
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if t.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("tracker: accept on %s: %w", ln.Addr(), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
			t.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
				continue
			case <-t.quit:
				return nil
			}
		}
		backoff = 0
		t.accept(nc)
	}
}

func (t *Tracker) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// accept starts the reader and writer of a new connection.
func (t *Tracker) accept(nc net.Conn) {
	c := newConn(nc)
	t.log.Debug().Str("remote", c.remote).Msg("connection accepted")
	if t.opts.Secure != nil {
		var ok bool
		if c.pending, ok = t.gate.Enter(nc); !ok {
			// Too many handshakes from its source: closed at once,
			// counted and logged (at a bounded rate) by the gate.
			nc.Close()
			return
		}
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.pending.Done()
		nc.Close()
		return
	}
	var evicted *conn
	if len(t.conns) >= maxConns(t.opts.MaxPeers) {
		evicted = t.oldestUnregisteredLocked()
		if evicted == nil {
			t.mu.Unlock()
			c.pending.Done() // counted below as busy
			nc.Close()
			t.gate.Refused(nc.RemoteAddr(), secure.ReasonBusy, errors.New("too many connections, all registered"))
			return
		}
		t.removeLocked(evicted, "evicted: connection limit reached", false)
	}
	t.conns[c] = struct{}{}
	// readLoop starts the writer once the connection is set up.
	t.wg.Go(func() { t.readLoop(c) })
	t.unlock()
	if evicted != nil {
		evicted.pending.Done() // counted here as evicted
		t.gate.Refused(evicted.nc.RemoteAddr(), secure.ReasonEvicted, errors.New("connection limit reached: the oldest unregistered connection makes room"))
	}
}

// oldestUnregisteredLocked returns the connection that has been open the
// longest without registering, or nil.
func (t *Tracker) oldestUnregisteredLocked() *conn {
	var old *conn
	for c := range t.conns {
		if !c.registered && !c.gone && (old == nil || c.accepted.Before(old.accepted)) {
			old = c
		}
	}
	return old
}

// Close stops the tracker: it closes every listener and connection, without
// sending anything more, and waits until all of the tracker's goroutines
// have returned. Serve then returns nil. Close may be called more than once.
func (t *Tracker) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	close(t.quit)
	lns := make([]net.Listener, 0, len(t.listeners))
	for ln := range t.listeners {
		lns = append(lns, ln)
	}
	t.stopLeaseLocked()
	for c := range t.conns {
		c.gone = true
		t.closing = append(t.closing, c)
	}
	clear(t.conns)
	clear(t.byName)
	t.peers = nil
	t.drops = nil
	t.rounds = syncState{round: t.rounds.round}
	t.unlock()

	var err error
	for _, ln := range lns {
		if e := ln.Close(); e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
			err = fmt.Errorf("tracker: close %s: %w", ln.Addr(), e)
		}
	}
	t.wg.Wait()
	t.gate.Close()
	t.log.Info().Msg("closed")
	return err
}

// Peers returns the advertised peers, in registration order, as the next
// UPDATE would list them. Anonymous registrations (bare REGISTER) are not
// included.
func (t *Tracker) Peers() []peerproto.PeerAddr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peerListLocked()
}

// Stats is a snapshot of a Tracker's state, for its metrics. A
// replica's counts are the whole cluster's, as its shared store has them.
type Stats struct {
	Peers            int    // registrations, anonymous ones (bare REGISTER) included
	RoundsInProgress int    // SYNC rounds in progress: 0 or 1, rounds do not overlap
	Rounds           uint64 // SYNC rounds started since the tracker started
}

// Stats returns the tracker's current Stats.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.rep; r != nil {
		st := Stats{Peers: len(r.members), Rounds: r.round.Round}
		if r.round.Active {
			st.RoundsInProgress = 1
		}
		return st
	}
	st := Stats{Peers: len(t.peers), Rounds: t.rounds.round}
	if t.rounds.active {
		st.RoundsInProgress = 1
	}
	return st
}

// Round returns the SYNC round in progress: its number (rounds count from
// 1), the name of the token holder and the names of the participants still
// waiting for their turn, in turn order. With no round in progress it
// returns 0, "" and nil. Anonymous participants appear as "anon-<n>".
// For a replica, the holder is the first participant still owed its
// turn, as the shared store has it (turns across replicas go in the order
// their replicas take the token).
func (t *Tracker) Round() (round uint64, holder string, queue []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.rep; r != nil {
		if !r.round.Active || len(r.round.Todo) == 0 {
			return 0, "", nil
		}
		return r.round.Round, r.round.Todo[0], slices.Clone(r.round.Todo[1:])
	}
	s := &t.rounds
	if !s.active {
		return 0, "", nil
	}
	return s.round, s.order[0].name, names(s.order[1:])
}

// unlock finishes a step begun with t.mu.Lock: it removes the connections
// dropped during the step, releases the lock, and only then closes the
// sockets of every connection removed.
func (t *Tracker) unlock() {
	for len(t.drops) > 0 {
		d := t.drops[0]
		t.drops = t.drops[1:]
		t.removeLocked(d.c, d.reason, true)
	}
	closing := t.closing
	t.closing = nil
	t.mu.Unlock()
	for _, c := range closing {
		c.shutdown()
	}
}

// sendLocked queues line for c without blocking. A connection whose queue
// is full is not keeping up: it is dropped at the end of the step.
func (t *Tracker) sendLocked(c *conn, line []byte) {
	if c.gone || c.dropping {
		return
	}
	if !c.out.put(line) {
		c.dropping = true
		t.drops = append(t.drops, pendingDrop{c, "outbound queue full (not reading)"})
	}
}

// drop removes c now, from outside any step.
func (t *Tracker) drop(c *conn, reason string) {
	t.mu.Lock()
	t.removeLocked(c, reason, true)
	t.unlock()
}

// removeLocked forgets c and schedules its socket for closing. If c was
// registered, the others learn of it (an UPDATE, if c was advertised and
// announce is set) and the SYNC round is repaired.
func (t *Tracker) removeLocked(c *conn, reason string, announce bool) {
	if c.gone {
		return
	}
	c.gone = true
	delete(t.conns, c)
	t.closing = append(t.closing, c)
	if !c.registered {
		t.log.Debug().Str("remote", c.remote).Str("reason", reason).Msg("connection closed")
		return
	}
	for i, p := range t.peers {
		if p == c {
			t.peers = append(t.peers[:i], t.peers[i+1:]...)
			break
		}
	}
	if c.addr != "" && t.byName[c.name] == c {
		delete(t.byName, c.name)
	}
	t.log.Info().Str("peer", c.name).Str("addr", c.addr).Str("remote", c.remote).
		Str("reason", reason).Int("peers", len(t.peers)).Msg("peer left")
	if t.rep != nil {
		// The store tells everybody, this replica too.
		t.rep.removeLocked(c, reason)
		return
	}
	if announce && c.addr != "" {
		// Those who asked learn first how it left: a peer that quit is
		// gone for good, one that was dropped may be back.
		how := peerproto.LeftDropped
		if reason == reasonQuit {
			how = peerproto.LeftQuit
		}
		t.announceLeaveLocked(c.name, how)
	}
	t.syncLeaveLocked(c)
}

// format returns m as a line, terminator included. The slice is shared by
// every queue it is sent to and never modified.
func format(m peerproto.Message) []byte {
	return []byte(peerproto.Format(m))
}

// refusal formats "<verb> FAIL <code> <text>".
func refusal(verb, code, text string, args ...any) []byte {
	return format(peerproto.Refusal{Err: peerproto.Fail(verb, code, text, args...)})
}

func names(cs []*conn) []string {
	if len(cs) == 0 {
		return nil
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}
