package tracker

import (
	"slices"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// syncState is the SYNC round state, part of Tracker and guarded by its mu.
//
// During a round, every registered participant is either in order (holding
// the token, at order[0], or waiting for its turn) or past its turn.
type syncState struct {
	round  uint64      // number of the round in progress, or of the last one
	active bool        // a round is in progress; then order is never empty
	order  []*conn     // order[0] holds the token; the rest wait, in turn order
	next   []*conn     // asked again after their turn: they open the next round
	grant  uint64      // counts SYNC OKs; a lease timer acts only on its own grant
	lease  *time.Timer // revokes the current grant; nil if none is armed
	// writers names the round's participants whose SYNC FIN said wrote.
	// unsure is set when a participant left the order without a
	// reporting SYNC FIN (the seed's SYNC FIN; it left; its lease ran
	// out), so nobody knows what it stored. SYNC END names the writers
	// only when unsure is not set, so a round with a peer that speaks
	// only the seed's protocol ends with the seed's SYNC END.
	writers []string
	unsure  bool
}

// syncLocked handles SYNC from registered c.
func (t *Tracker) syncLocked(c *conn) {
	s := &t.rounds
	if !s.active {
		t.startRoundLocked([]*conn{c}, c.name)
		return
	}
	switch i := slices.Index(s.order, c); {
	case i == 0:
		// Idempotent, and deliberately no new lease: re-asking cannot
		// keep the token from the others.
		t.sendLocked(c, format(peerproto.SyncOK{}))
	case i > 0:
		t.log.Debug().Str("peer", c.name).Uint64("round", s.round).Msg("sync: already waiting for its turn")
	case c.turnRound != s.round:
		// A reader of this round, owed no turn in it: it takes one at
		// the end, as late as a peer that registered now would.
		c.turnRound = s.round
		s.order = append(s.order, c)
		t.log.Debug().Str("peer", c.name).Uint64("round", s.round).Msg("sync: a reader asked, joins the round")
	default:
		if !slices.Contains(s.next, c) {
			s.next = append(s.next, c)
		}
		t.log.Debug().Str("peer", c.name).Uint64("round", s.round).Msg("sync: turn passed, queued for the next round")
	}
}

// finLocked handles SYNC FIN from registered c.
func (t *Tracker) finLocked(c *conn, fin peerproto.SyncFin) {
	s := &t.rounds
	if !s.active || s.order[0] != c {
		t.sendLocked(c, refusal(peerproto.VerbSync, peerproto.CodeState, "not the token holder"))
		return
	}
	switch {
	case !fin.Known:
		s.unsure = true
	case fin.Wrote && !slices.Contains(s.writers, c.name):
		s.writers = append(s.writers, c.name)
	}
	// Its turn made what it held stored and durable: a peer that says
	// when it holds writes holds none until it says so again.
	c.holds = false
	t.log.Debug().Str("peer", c.name).Uint64("round", s.round).Bool("reported", fin.Known).Bool("wrote", fin.Wrote).Msg("sync: turn done")
	s.order = slices.Delete(s.order, 0, 1)
	t.passTokenLocked()
}

// syncJoinLocked lets newly registered c take part in a round in
// progress: it reads now and, if it may hold writes, writes last.
func (t *Tracker) syncJoinLocked(c *conn) {
	s := &t.rounds
	if !s.active {
		return
	}
	if c.mayHoldWrites() {
		c.turnRound = s.round
		s.order = append(s.order, c)
	}
	t.sendLocked(c, format(peerproto.SyncRead{}))
}

// syncLeaveLocked takes departed c out of the SYNC state; if it held the
// token, the token passes on at once.
func (t *Tracker) syncLeaveLocked(c *conn) {
	s := &t.rounds
	s.next = slices.DeleteFunc(s.next, func(p *conn) bool { return p == c })
	if !s.active {
		return
	}
	i := slices.Index(s.order, c)
	if i < 0 {
		return
	}
	s.order = slices.Delete(s.order, i, i+1)
	s.unsure = true // it may have stored something before it left
	if i == 0 {
		t.log.Info().Str("peer", c.name).Uint64("round", s.round).Msg("sync: token holder left")
		t.passTokenLocked()
	}
}

// startRoundLocked opens a round: first (in order) and then, in
// registration order, every other participant that may hold writes the
// others must see. The first writes; every other registered peer reads,
// those that hold no writes without a turn.
func (t *Tracker) startRoundLocked(first []*conn, why string) {
	s := &t.rounds
	s.round++
	order := slices.Clone(first)
	for _, p := range t.peers {
		if !slices.Contains(first, p) && p.mayHoldWrites() {
			order = append(order, p)
		}
	}
	for _, p := range order {
		p.turnRound = s.round
	}
	s.active = true
	s.order = order
	s.writers, s.unsure = nil, false
	t.log.Info().Uint64("round", s.round).Str("requested_by", why).Int("turns", len(order)).Int("readers", len(t.peers)-len(order)).
		Strs("order", names(order[:min(len(order), maxLoggedNames)])).Msg("sync: round started")
	// The first turn's SYNC OK goes out before the readers' lines.
	t.grantLocked()
	read := format(peerproto.SyncRead{})
	for _, p := range t.peers {
		if p != order[0] {
			t.sendLocked(p, read)
		}
	}
}

// maxLoggedNames bounds the names a log line lists.
const maxLoggedNames = 32

// passTokenLocked gives the token to order[0] now that its previous holder
// is out of order, or ends the round if nobody is left, opening the next
// one if peers asked for it.
func (t *Tracker) passTokenLocked() {
	s := &t.rounds
	t.stopLeaseLocked()
	if len(s.order) > 0 {
		t.grantLocked()
		return
	}
	endMsg := peerproto.SyncEnd{Round: s.round}
	if !s.unsure {
		endMsg.Writers, endMsg.WritersKnown = s.writers, true
	}
	end := format(endMsg)
	if len(end) > peerproto.MaxLine {
		// Too many writers to name: everybody drops its caches.
		end = format(peerproto.SyncEnd{Round: s.round})
	}
	for _, p := range t.peers {
		t.sendLocked(p, end)
	}
	s.active = false
	s.order = nil
	t.log.Info().Uint64("round", s.round).Msg("sync: round ended")
	if len(s.next) > 0 {
		first := s.next
		s.next = nil
		t.startRoundLocked(first, "queued requests: "+joinNames(first))
	}
}

// grantLocked sends SYNC OK to order[0] and arms its lease.
func (t *Tracker) grantLocked() {
	s := &t.rounds
	if t.closed {
		return
	}
	holder := s.order[0]
	s.grant++
	grant := s.grant
	t.sendLocked(holder, format(peerproto.SyncOK{}))
	t.log.Debug().Str("peer", holder.name).Uint64("round", s.round).Msg("sync: token granted")
	// The timer's goroutine is counted in wg from now until it has run or
	// been stopped (see stopLeaseLocked), so Close waits for it.
	t.wg.Add(1)
	s.lease = time.AfterFunc(t.opts.Lease, func() {
		defer t.wg.Done()
		t.leaseExpired(grant)
	})
}

// stopLeaseLocked disarms the current lease, if any.
func (t *Tracker) stopLeaseLocked() {
	s := &t.rounds
	if s.lease != nil && s.lease.Stop() {
		t.wg.Done()
	}
	s.lease = nil
}

// leaseExpired revokes grant if it is still current.
func (t *Tracker) leaseExpired(grant uint64) {
	t.mu.Lock()
	defer t.unlock()
	s := &t.rounds
	if t.closed || !s.active || s.grant != grant {
		return
	}
	// This timer has fired: it must not be stopped (and counted) again.
	s.lease = nil
	holder := s.order[0]
	t.sendLocked(holder, refusal(peerproto.VerbSync, peerproto.CodeExpired, "lease of %s expired", t.opts.Lease))
	t.log.Warn().Str("peer", holder.name).Uint64("round", s.round).Dur("lease", t.opts.Lease).Msg("sync: lease expired, token revoked")
	s.order = slices.Delete(s.order, 0, 1)
	s.unsure = true // it may have stored part of its changes
	t.passTokenLocked()
}

func joinNames(cs []*conn) string {
	var b []byte
	for i, c := range cs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.name...)
	}
	return string(b)
}
