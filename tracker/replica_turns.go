package tracker

// A replica's turns: one goroutine per session takes the write token in
// the shared store whenever the round's next turn is one of this
// replica's peers', gives that peer SYNC OK, and records the turn's end
// through the token, which fences a holder that lost it (its session
// ended meanwhile): its record is refused.

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// lockBackoff is the pause after a failed attempt to take the token.
const lockBackoff = 200 * time.Millisecond

// turns gives this replica's peers their turns until ctx ends.
func (r *replica) turns(ctx context.Context, sess SharedSession) {
	t := r.t
	for r.waitCandidate(ctx) {
		tok, err := sess.Lock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.log.Warn().Err(err).Msg("sync: cannot take the write token")
			select {
			case <-ctx.Done():
				return
			case <-time.After(lockBackoff):
			}
			continue
		}
		// While the next turn is another of this replica's peers', the
		// token stays: two writes to the store fewer per turn.
		rs, err := tok.Round(ctx)
		for err == nil {
			rs, err = r.takeTurn(ctx, tok, rs)
		}
		uctx, cancel := r.opContext()
		if err := tok.Unlock(uctx); err != nil && ctx.Err() == nil {
			t.log.Warn().Err(err).Msg("sync: cannot give the write token back; it goes with the session")
		}
		cancel()
	}
}

// waitCandidate waits until the round owes one of this replica's peers
// a turn; false when ctx ended first.
func (r *replica) waitCandidate(ctx context.Context) bool {
	for {
		r.t.mu.Lock()
		ok := r.candidateLocked(r.round) != nil
		r.t.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-r.wake:
		}
	}
}

// candidateLocked returns this replica's peer whose turn is next in rs,
// if it is one of this replica's. Turns go in the round's order, as on a
// single tracker: the askers first, then the holders in registration
// order; the token, taken for each, fences it.
func (r *replica) candidateLocked(rs RoundState) *conn {
	if !rs.Active || len(rs.Todo) == 0 {
		return nil
	}
	if c := r.t.byName[rs.Todo[0]]; c != nil && c.registered && !c.gone {
		return c
	}
	return nil
}

// takeTurn, with the token held, gives the turn to this replica's peer
// that rs, the round as stored, owes the next turn, waits for its end
// (SYNC FIN, its departure, its lease, the session's end) and records
// it. It returns the round as it stored it, or errNoTurn if the next
// turn is not this replica's.
func (r *replica) takeTurn(ctx context.Context, tok Token, rs RoundState) (RoundState, error) {
	t := r.t
	t.mu.Lock()
	c := r.candidateLocked(rs)
	if c == nil {
		t.unlock()
		return rs, errNoTurn
	}
	// The round as stored may be ahead of what the watch has told this
	// replica (its own write ended the last round and started this
	// one): the SYNC END of that round, and this one's SYNC READ, go out
	// first. A client reads a SYNC OK between its SYNC FIN and the SYNC
	// END of that round as its grant repeated, and ignores it.
	if behindRound(r.round, rs) {
		r.roundChangedLocked(rs)
	}
	ends := make(chan turnEnd, 1)
	r.holder, r.turnEnd = c, ends
	name := c.name
	t.sendLocked(c, format(peerproto.SyncOK{}))
	t.unlock()
	t.log.Debug().Str("peer", name).Uint64("round", rs.Round).Msg("sync: token granted")

	lease := time.NewTimer(t.opts.Lease)
	defer lease.Stop()
	var e turnEnd
	cut := false
	select {
	case e = <-ends:
	case <-lease.C:
		cut = true
	case <-ctx.Done():
		cut = true // the session, and the token with it, is lost
	}
	if cut {
		t.mu.Lock()
		if r.holder == c {
			r.holder = nil
			t.sendLocked(c, refusal(peerproto.VerbSync, peerproto.CodeExpired, "lease of %s expired", t.opts.Lease))
			t.log.Warn().Str("peer", name).Uint64("round", rs.Round).Dur("lease", t.opts.Lease).Msg("sync: lease expired, token revoked")
		} else {
			e, cut = <-ends, false // it ended as the lease ran out
		}
		t.unlock()
	}
	if e.recorded != nil {
		defer close(e.recorded)
	}
	if ctx.Err() != nil {
		return rs, ctx.Err()
	}
	var stored RoundState
	turn := rs.Round
	err := r.updateRound(ctx, tok.UpdateRound, func(rs *RoundState) bool {
		stored = *rs
		i := slices.Index(rs.Todo, name)
		if !rs.Active || rs.Round != turn || i < 0 {
			// Repaired meanwhile, or recorded already: this end
			// stored, its answer lost, ended the round and a next one
			// owes name a turn of its own.
			return false
		}
		rs.Todo = slices.Delete(rs.Todo, i, i+1)
		rs.Done = append(rs.Done, name)
		switch {
		case cut || e.left || !e.fin.Known:
			rs.Unsure = true
		case e.fin.Wrote && !slices.Contains(rs.Writers, name):
			rs.Writers = append(rs.Writers, name)
		}
		if len(rs.Todo) == 0 {
			r.endRound(rs)
		}
		stored = *rs
		return true
	})
	if errors.Is(err, ErrTokenLost) {
		t.log.Warn().Str("peer", name).Msg("sync: the write token was lost during the turn; its end is not recorded")
	} else if err != nil {
		t.log.Warn().Err(err).Str("peer", name).Msg("sync: cannot record the end of a turn")
	}
	return stored, err
}

// errNoTurn: the round's next turn is not this replica's.
var errNoTurn = errors.New("tracker: the next turn is another replica's")
