package tracker

// A Tracker with Options.Shared is one replica of several: the peer list,
// the holders of writes and the SYNC rounds live in the shared store
// (shared.go), and this replica keeps a mirror of them, fed by the
// store's events (Follow), from which it tells its own connections what
// changed. Requests that change the shared state (REGISTER, QUIT,
// WRITES, SYNC, SYNC FIN) are carried out in the store by the reading
// goroutine of their connection, outside Tracker.mu (replica_conn.go);
// the write token is taken in the store by one goroutine per session,
// which gives turns to this replica's connections (replica_turns.go).

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// replica is a Tracker's part as one replica of several. Its fields
// below shared are guarded by Tracker.mu.
type replica struct {
	t      *Tracker
	shared Shared

	sess      SharedSession // the current session; nil while there is none
	members   []Member      // the mirror: every member in registration order
	index     map[string]int
	round     RoundState
	rev       int64         // the store's revision the mirror is at
	advanced  chan struct{} // closed (and replaced) when the mirror advances
	wake      chan struct{} // capacity 1: the turn goroutine looks again
	seq       uint64        // numbers this replica's registrations
	holder    *conn         // this replica's connection holding the token
	turnEnd   chan turnEnd  // capacity 1: how the holder's turn ended
	repairing bool          // a repair of the round is running
}

// turnEnd is how a turn ended: its SYNC FIN, or the holder left.
// recorded, if set, is closed once the end is in the store.
type turnEnd struct {
	fin      peerproto.SyncFin
	left     bool
	recorded chan struct{}
}

// sessionBackoff is the pause before a new session after one failed.
const sessionBackoff = 500 * time.Millisecond

func newReplica(t *Tracker, shared Shared) *replica {
	return &replica{t: t, shared: shared, index: map[string]int{},
		advanced: make(chan struct{}), wake: make(chan struct{}, 1)}
}

// run keeps a session with the shared store until the tracker closes:
// a session lost (the store unreachable for longer than its TTL) drops
// every connection of this replica, whose peers register again, here or
// with another replica, once a new session is up.
func (r *replica) run() {
	t := r.t
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-t.quit
		cancel()
	}()
	for ctx.Err() == nil {
		sess, err := r.shared.Open(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.log.Warn().Err(err).Dur("retry_in", sessionBackoff).Msg("cannot open a session with the shared store")
				select {
				case <-ctx.Done():
				case <-time.After(sessionBackoff):
				}
			}
			continue
		}
		t.log.Info().Str("session", sess.ID()).Msg("session with the shared store open")
		r.serve(ctx, sess)
		_ = sess.Close()
	}
}

// serve runs one session: it follows the store and takes turns until the
// session is lost or ctx ends, then drops this replica's connections.
func (r *replica) serve(ctx context.Context, sess SharedSession) {
	t := r.t
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	t.mu.Lock()
	r.sess = sess
	t.unlock()

	followed := make(chan error, 1)
	go func() { followed <- sess.Follow(sctx, r.apply) }()
	turned := make(chan struct{})
	go func() { defer close(turned); r.turns(sctx, sess) }()
	var why string
	select {
	case <-sess.Done():
		why = "session with the shared store lost"
	case err := <-followed:
		why = "following the shared store failed: " + errString(err)
		followed <- err
	case <-ctx.Done():
		why = "closing"
	}
	stop()
	<-followed
	<-turned
	if ctx.Err() == nil {
		t.log.Warn().Str("session", sess.ID()).Str("reason", why).Msg("session ended: dropping this replica's peers, who register again")
	}
	t.mu.Lock()
	r.sess = nil
	for _, c := range slices.Clone(t.peers) {
		c.linger.Store(true) // a holder hears that its turn was cut
		t.removeLocked(c, why, false)
	}
	r.members, r.index, r.round, r.rev = nil, map[string]int{}, RoundState{}, 0
	t.unlock()
}

func errString(err error) string {
	if err == nil {
		return "stopped"
	}
	return err.Error()
}

// apply brings the mirror up to date with ev and tells this replica's
// connections what changed. It runs on the Follow goroutine.
func (r *replica) apply(ev SharedEvent) {
	t := r.t
	t.mu.Lock()
	defer t.unlock()
	switch {
	case ev.Snapshot:
		r.members = ev.Members
		r.reindex(0)
		r.round = ev.Round
	case ev.Member != nil && ev.Deleted:
		r.memberGoneLocked(*ev.Member)
	case ev.Member != nil:
		r.memberPutLocked(*ev.Member, ev.Created)
	case ev.RoundChanged:
		if !behindRound(ev.Round, r.round) { // takeTurn may have caught up already
			r.roundChangedLocked(ev.Round)
		}
	}
	r.rev = ev.Rev
	close(r.advanced)
	r.advanced = make(chan struct{})
	r.checkRoundLocked()
	r.poke()
}

// reindex rebuilds the name index from position from on.
func (r *replica) reindex(from int) {
	if from == 0 {
		r.index = make(map[string]int, len(r.members))
	}
	for i := from; i < len(r.members); i++ {
		r.index[r.members[i].Name] = i
	}
}

func (r *replica) memberPutLocked(m Member, created bool) {
	t := r.t
	if i, ok := r.index[m.Name]; ok {
		r.members[i] = m
	} else {
		r.index[m.Name] = len(r.members)
		r.members = append(r.members, m)
	}
	// A connection of ours whose member another registration replaced
	// (the peer restarted, here or with another replica) goes quietly.
	for _, c := range slices.Clone(t.peers) {
		if c.name == m.Name && c.member.Owner != m.Owner {
			t.removeLocked(c, reasonReplaced, false)
		}
	}
	if created && m.Addr != "" {
		t.announceJoinLocked(peerproto.PeerAddr{Name: m.Name, Addr: m.Addr}, nil)
	}
}

func (r *replica) memberGoneLocked(m Member) {
	t := r.t
	i, ok := r.index[m.Name]
	if !ok {
		return
	}
	r.members = slices.Delete(r.members, i, i+1)
	delete(r.index, m.Name)
	r.reindex(i)
	for _, c := range slices.Clone(t.peers) {
		if c.name == m.Name && c.member.Owner == m.Owner {
			// Our session's lease ran out (or was revoked): a turn
			// it holds is cut, and it is told so before it goes.
			if r.holder == c {
				t.sendLocked(c, refusal(peerproto.VerbSync, peerproto.CodeExpired, "lease of %s expired: this tracker lost its registration in the shared store", t.opts.Lease))
			}
			c.linger.Store(true)
			t.removeLocked(c, "its registration ended in the shared store", false)
		}
	}
	if m.Addr != "" {
		how := peerproto.LeftDropped
		if m.Left == peerproto.LeftQuit {
			how = peerproto.LeftQuit
		}
		t.announceLeaveLocked(m.Name, how)
	}
}

// behindRound reports whether round state a is older than b by its round
// or the last round ended: a change the watch reports after takeTurn saw
// (and announced) a later one.
func behindRound(a, b RoundState) bool {
	return a.Round < b.Round || a.Round == b.Round && a.Ended.Round < b.Ended.Round
}

// roundChangedLocked tells this replica's connections of a round that
// ended (SYNC END) and of one that started (SYNC READ, but to the peer
// whose turn comes first).
func (r *replica) roundChangedLocked(next RoundState) {
	t := r.t
	prev := r.round
	r.round = next
	if next.Ended.Round > prev.Ended.Round {
		e := next.Ended
		end := peerproto.SyncEnd{Round: e.Round}
		if !e.Unsure {
			end.Writers, end.WritersKnown = e.Writers, true
		}
		line := format(end)
		if len(line) > peerproto.MaxLine {
			line = format(peerproto.SyncEnd{Round: e.Round})
		}
		for _, c := range t.peers {
			t.sendLocked(c, line)
		}
		t.log.Info().Uint64("round", e.Round).Msg("sync: round ended")
	}
	if next.Active && (!prev.Active || next.Round != prev.Round) {
		read := format(peerproto.SyncRead{})
		for _, c := range t.peers {
			if len(next.Todo) == 0 || c.name != next.Todo[0] {
				t.sendLocked(c, read)
			}
		}
		t.log.Info().Uint64("round", next.Round).Int("turns", len(next.Todo)).Msg("sync: round started")
	}
}

// checkRoundLocked starts a repair if the round owes a turn to a name
// that is no member: its replica died, or it left before the round
// that lists it was written.
func (r *replica) checkRoundLocked() {
	if r.repairing || r.sess == nil || !r.round.Active {
		return
	}
	if !slices.ContainsFunc(r.round.Todo, r.absent) && !slices.ContainsFunc(r.round.Next, r.absent) {
		return
	}
	r.repairing = true
	sess := r.sess
	r.t.wg.Go(func() { r.repair(sess) })
}

func (r *replica) absent(name string) bool { _, ok := r.index[name]; return !ok }

// repair removes from the round the names that are no members (the
// round is unsure then: they may have stored something), ending it if
// nobody is left.
func (r *replica) repair(sess SharedSession) {
	t := r.t
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.WriteTimeout)
	defer cancel()
	err := r.updateRound(ctx, sess.UpdateRound, func(rs *RoundState) bool {
		t.mu.Lock()
		gone := func(n string) bool { return r.absent(n) }
		before := len(rs.Todo) + len(rs.Next)
		rs.Todo = slices.DeleteFunc(rs.Todo, gone)
		rs.Next = slices.DeleteFunc(rs.Next, gone)
		t.mu.Unlock()
		if len(rs.Todo)+len(rs.Next) == before || !rs.Active {
			return false
		}
		rs.Unsure = true
		if len(rs.Todo) == 0 {
			r.endRound(rs)
		}
		return true
	})
	if err != nil && ctx.Err() == nil {
		t.log.Warn().Err(err).Msg("sync: cannot repair the round")
	}
	t.mu.Lock()
	r.repairing = false
	t.unlock()
}

// updateRound runs update (a session's or a token's UpdateRound) with
// fn, guarded by the mirror's revision, which fn may read; when the
// members changed meanwhile (ErrStale), it waits for the mirror to catch
// up and tries again.
func (r *replica) updateRound(ctx context.Context, update func(context.Context, int64, func(*RoundState) bool) (RoundState, error), fn func(*RoundState) bool) error {
	for {
		r.t.mu.Lock()
		guard, advanced := r.rev, r.advanced
		r.t.mu.Unlock()
		_, err := update(ctx, guard, fn)
		if !errors.Is(err, ErrStale) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-advanced:
		}
	}
}

// endRound ends the round in rs, and opens the next one if peers asked
// for it: the askers first, then the members that may hold writes, as
// the mirror has them (the update is guarded by its revision).
func (r *replica) endRound(rs *RoundState) {
	rs.Ended = RoundEnd{Round: rs.Round, Writers: rs.Writers, Unsure: rs.Unsure}
	rs.Active, rs.Todo, rs.Done, rs.Writers, rs.Unsure = false, nil, nil, nil, false
	if len(rs.Next) == 0 {
		return
	}
	first := rs.Next
	rs.Next = nil
	r.startRound(rs, first)
}

// startRound opens a round in rs with first, then the holders. It is
// called from UpdateRound functions (see holders).
func (r *replica) startRound(rs *RoundState, first []string) {
	rs.Round++
	rs.Active = true
	rs.Todo = append(slices.Clone(first), r.holders(first)...)
	rs.Done, rs.Writers, rs.Unsure = nil, nil, false
}

// holders names the members that may hold writes, in registration
// order, but those of skip. It reads the mirror without Tracker.mu: it
// is called from UpdateRound functions, which run while the caller waits
// and the mirror may move; the guard revision makes a stale answer fail.
func (r *replica) holders(skip []string) []string {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	var out []string
	for _, m := range r.members {
		if m.Holds && !slices.Contains(skip, m.Name) {
			out = append(out, m.Name)
		}
	}
	return out
}

// waitRev waits until the mirror is at revision rev or later.
func (r *replica) waitRev(ctx context.Context, rev int64) error {
	for {
		r.t.mu.Lock()
		at, advanced := r.rev, r.advanced
		r.t.mu.Unlock()
		if at >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-advanced:
		}
	}
}

// poke wakes the turn goroutine.
func (r *replica) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
