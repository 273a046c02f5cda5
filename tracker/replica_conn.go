package tracker

// A replica's requests that change the shared state, carried out by the
// connection's reading goroutine, outside Tracker.mu: one request of a
// connection at a time, in order, as the protocol wants.

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// handle carries out m for c if it is one of the requests a replica runs
// in the shared store, and reports whether it was; quit reports a QUIT.
func (r *replica) handle(c *conn, m peerproto.Message) (handled, quit bool) {
	switch m := m.(type) {
	case peerproto.Register:
		r.register(c, m)
	case peerproto.Writes:
		r.writes(c, m)
	case peerproto.Sync:
		r.sync(c)
	case peerproto.SyncFin:
		r.fin(c, m)
	case peerproto.Quit:
		t := r.t
		t.mu.Lock()
		t.removeLocked(c, reasonQuit, true)
		t.unlock()
		return true, true
	default:
		return false, false
	}
	return true, false
}

// opContext bounds one operation on the shared store.
func (r *replica) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.t.opts.WriteTimeout)
}

func (r *replica) register(c *conn, m peerproto.Register) {
	t := r.t
	const verb = peerproto.VerbRegister
	// A replica just started (or whose session was lost) has none yet.
	wctx, wcancel := r.opContext()
	sess := r.waitSession(wctx)
	wcancel()
	t.mu.Lock()
	var refuse []byte
	switch {
	case c.registered:
		refuse = refusal(verb, peerproto.CodeState, "already registered")
	case sess == nil:
		refuse = refusal(verb, peerproto.CodeBusy, "this tracker has lost its shared store: try another")
	case len(r.members) >= t.opts.MaxPeers && !r.listedLocked(m.Name, net.JoinHostPort(c.host, strconv.Itoa(m.Port))):
		// A peer listed at this address replaces itself (it restarted,
		// or comes over from another replica): the count stays.
		refuse = refusal(verb, peerproto.CodeBusy, "tracker is full (%d peers)", t.opts.MaxPeers)
	}
	if refuse != nil {
		t.sendLocked(c, refuse)
		t.unlock()
		return
	}
	mem := Member{Holds: c.mayHoldWrites()}
	r.seq++
	mem.Owner = sess.ID() + "/" + strconv.FormatUint(r.seq, 10)
	if m.Name == "" {
		mem.Name = "anon-" + sess.ID() + "-" + strconv.FormatUint(r.seq, 10)
	} else {
		mem.Name, mem.Addr = m.Name, net.JoinHostPort(c.host, strconv.Itoa(m.Port))
	}
	t.unlock()

	ctx, cancel := r.opContext()
	defer cancel()
	rev, err := sess.Join(ctx, mem)
	if err == nil {
		// The list it gets includes itself.
		err = r.waitRev(ctx, rev)
	}
	var taken *TakenError
	t.mu.Lock()
	defer t.unlock()
	switch {
	case errors.As(err, &taken):
		t.sendLocked(c, refusal(verb, peerproto.CodeExists, "name %q is taken by %s", mem.Name, taken.Addr))
		return
	case err != nil:
		// The member may be stored (the answer was lost, or the
		// mirror lags): it must not outlive the refusal.
		r.leaveAsync(sess, mem, false)
		t.sendLocked(c, refusal(verb, peerproto.CodeIO, "the shared store: %v", err))
		return
	case c.gone || r.sess != sess:
		// Gone meanwhile: the member goes too.
		r.leaveAsync(sess, mem, false)
		return
	}
	c.registered, c.member = true, mem
	c.name, c.addr = mem.Name, mem.Addr
	t.peers = append(t.peers, c)
	t.byName[c.name] = c
	r.poke() // its turn may be due
	t.log.Info().Str("peer", c.name).Str("addr", c.addr).Str("remote", c.remote).
		Int("peers", len(r.members)).Msg("peer joined")
	t.sendLocked(c, format(peerproto.RegisterOK{}))
	t.sendListLocked(c)
	if rs := r.round; rs.Active {
		t.sendLocked(c, format(peerproto.SyncRead{}))
		if c.mayHoldWrites() && !slices.Contains(rs.Todo, c.name) && !slices.Contains(rs.Done, c.name) {
			// It may hold writes: a turn at the end, as it would have
			// had if it had been registered at the start.
			name := c.name
			t.wg.Go(func() { r.joinRound(sess, name) })
		}
	}
}

// listedLocked reports whether the mirror lists a member name at addr.
func (r *replica) listedLocked(name, addr string) bool {
	i, ok := r.index[name]
	return ok && name != "" && r.members[i].Addr == addr
}

// waitSession waits until the replica has a session whose state it
// follows, and returns it; nil if ctx ends first.
func (r *replica) waitSession(ctx context.Context) SharedSession {
	for {
		r.t.mu.Lock()
		sess, ready, advanced := r.sess, r.rev > 0, r.advanced
		r.t.mu.Unlock()
		if sess != nil && ready {
			return sess
		}
		select {
		case <-ctx.Done():
			return nil
		case <-advanced:
		case <-time.After(50 * time.Millisecond): // a session may come without an event
		}
	}
}

// joinRound gives name a turn at the end of the round in progress, if
// it has none and had none.
func (r *replica) joinRound(sess SharedSession, name string) {
	ctx, cancel := r.opContext()
	defer cancel()
	_, err := sess.UpdateRound(ctx, 0, func(rs *RoundState) bool {
		if !rs.Active || slices.Contains(rs.Todo, name) || slices.Contains(rs.Done, name) {
			return false
		}
		rs.Todo = append(rs.Todo, name)
		return true
	})
	if err != nil {
		r.t.log.Warn().Err(err).Str("peer", name).Msg("sync: cannot give a new peer a turn")
	}
}

// leaveAsync removes member m from the store, in the background, trying
// again until it is done, the session ends (its members go with it) or
// the tracker closes: a member left behind while its session lives is a
// ghost, listed for good and, if it holds writes, owed a turn that no
// replica gives, so that no round ends.
func (r *replica) leaveAsync(sess SharedSession, m Member, quit bool) {
	r.t.wg.Go(func() {
		for delay := leaveBackoff; ; delay = min(2*delay, maxLeaveBackoff) {
			ctx, cancel := r.opContext()
			err := sess.Leave(ctx, m, quit)
			cancel()
			if err == nil {
				return
			}
			r.t.log.Warn().Err(err).Str("peer", m.Name).Dur("retry_in", delay).Msg("cannot remove a member from the shared store")
			select {
			case <-sess.Done():
				return
			case <-r.t.quit:
				return
			case <-time.After(delay):
			}
		}
	})
}

// The pauses between attempts to remove a member.
const (
	leaveBackoff    = 100 * time.Millisecond
	maxLeaveBackoff = 5 * time.Second
)

// removeLocked is Tracker.removeLocked's part for a registered
// connection of a replica: its member leaves the store (the others hear
// of it from there, this replica too), and a turn it holds ends.
func (r *replica) removeLocked(c *conn, reason string) {
	if r.holder == c {
		r.endTurnLocked(turnEnd{left: true})
	}
	if r.sess != nil && c.member.Owner != "" && reason != reasonReplaced {
		r.leaveAsync(r.sess, c.member, reason == reasonQuit)
	}
}

func (r *replica) writes(c *conn, m peerproto.Writes) {
	t := r.t
	t.mu.Lock()
	if !c.turns {
		t.sendLocked(c, refusal(peerproto.VerbWrites, peerproto.CodeState, "ask for FEATURES turns first"))
		t.unlock()
		return
	}
	c.holds = m.Held
	if !c.registered {
		t.sendLocked(c, format(peerproto.WritesOK{}))
		t.unlock()
		return
	}
	t.unlock()
	// The answer goes once the store has it: a round started later
	// (anywhere) acts on it. Without it, the answer would be a lie,
	// and the store's view of the peer is unknown: the connection goes,
	// and the peer tells afresh when it registers again.
	if err := r.updateMember(c); err != nil {
		t.drop(c, "cannot record its writes in the shared store: "+err.Error())
		return
	}
	t.mu.Lock()
	t.sendLocked(c, format(peerproto.WritesOK{}))
	t.unlock()
}

// updateMember writes c's holding to its member, if it changed, and
// returns the store's error.
func (r *replica) updateMember(c *conn) error {
	t := r.t
	t.mu.Lock()
	sess, old := r.sess, c.member
	next := old
	next.Holds = c.mayHoldWrites()
	if sess == nil || c.gone || old.Holds == next.Holds {
		t.unlock()
		return nil
	}
	c.member = next
	t.unlock()
	ctx, cancel := r.opContext()
	defer cancel()
	if err := sess.Update(ctx, old, next); err != nil {
		t.log.Warn().Err(err).Str("peer", c.name).Msg("cannot record in the shared store whether a peer holds writes")
		return err
	}
	return nil
}

func (r *replica) sync(c *conn) {
	t := r.t
	t.mu.Lock()
	if !t.mustRegisterLocked(c, peerproto.VerbSync) {
		t.unlock()
		return
	}
	if r.holder == c {
		// Idempotent, and no new lease.
		t.sendLocked(c, format(peerproto.SyncOK{}))
		t.unlock()
		return
	}
	sess, name := r.sess, c.name
	t.unlock()
	if sess == nil {
		return
	}
	ctx, cancel := r.opContext()
	defer cancel()
	err := r.updateRound(ctx, sess.UpdateRound, func(rs *RoundState) bool {
		switch {
		case !rs.Active:
			r.startRound(rs, []string{name})
		case slices.Contains(rs.Todo, name):
			return false // waiting for its turn already
		case slices.Contains(rs.Done, name):
			if slices.Contains(rs.Next, name) {
				return false
			}
			rs.Next = append(rs.Next, name) // turn passed: the next round
		default:
			rs.Todo = append(rs.Todo, name) // a reader: a turn at the end
		}
		return true
	})
	if err != nil {
		t.log.Warn().Err(err).Str("peer", name).Msg("sync: cannot record the request in the shared store")
		t.mu.Lock()
		t.sendLocked(c, refusal(peerproto.VerbSync, peerproto.CodeIO, "the shared store: %v", err))
		t.unlock()
	}
}

func (r *replica) fin(c *conn, m peerproto.SyncFin) {
	t := r.t
	t.mu.Lock()
	if !t.mustRegisterLocked(c, peerproto.VerbSync) {
		t.unlock()
		return
	}
	if r.holder != c {
		t.sendLocked(c, refusal(peerproto.VerbSync, peerproto.CodeState, "not the token holder"))
		t.unlock()
		return
	}
	// The next line of c (a SYNC for the next round) is read once the
	// store has this turn's end, as a single tracker has it at once.
	recorded := make(chan struct{})
	r.endTurnLocked(turnEnd{fin: m, recorded: recorded})
	// Its turn made what it held stored and durable (sync.go).
	c.holds = false
	t.unlock()
	ctx, cancel := r.opContext()
	defer cancel()
	select {
	case <-recorded:
	case <-ctx.Done():
	}
	// Not recorded, the store has it holding writes still (a turn
	// too many), but what it has is unknown: as in writes.
	if err := r.updateMember(c); err != nil {
		t.drop(c, "cannot record its writes in the shared store: "+err.Error())
	}
}

// endTurnLocked hands the end of the current turn to the turn goroutine.
func (r *replica) endTurnLocked(e turnEnd) {
	r.holder = nil
	select {
	case r.turnEnd <- e:
	default:
	}
}
