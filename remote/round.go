package remote

// The Store's part in SYNC rounds: it is the tracker client's Handler
// (tracker.Handler, with TakeWrote and PeerLeft), and an Observer that
// is also a RoundObserver hears how the rounds went.

import (
	"context"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

var (
	_ tracker.Handler       = (*Store)(nil)
	_ tracker.WroteReporter = (*Store)(nil)
	_ tracker.LeftHandler   = (*Store)(nil)
)

// RoundObserver receives the measurements of this mount's SYNC rounds. An
// Options.Observer that implements it too is told of them.
type RoundObserver interface {
	// SyncRoundSeen reports that a round is on: SYNC READ or our turn.
	// It comes at least once per round, before SyncRoundEnded.
	SyncRoundSeen()
	// SyncTurn reports one of this mount's turns: how long its uploads
	// took and how they ended.
	SyncTurn(d time.Duration, err error)
	// SyncRoundEnded reports the end (SYNC END) of round.
	SyncRoundEnded(round uint64)
}

// SyncRead is the tracker client's SYNC READ: a round is on and another
// peer writes, so every cached attribute and listing is dropped
// (InvalidateAll).
func (s *Store) SyncRead() {
	if o := s.roundObserver(); o != nil {
		o.SyncRoundSeen()
	}
	s.InvalidateAll()
}

// SyncTurn is this mount's turn in a SYNC round: every local change is
// uploaded (FlushAll); its error is the turn's.
func (s *Store) SyncTurn(ctx context.Context) error {
	o := s.roundObserver()
	if o != nil {
		o.SyncRoundSeen()
	}
	start := time.Now()
	err := s.FlushAll(ctx)
	if o != nil {
		o.SyncTurn(time.Since(start), err)
	}
	return err
}

// SyncEnd is the tracker client's SYNC END: the files stored from here
// before it are covered by the round (MarkRound), and the caches are
// dropped if another peer may have written (RoundEnded).
func (s *Store) SyncEnd(end peerproto.SyncEnd) {
	s.MarkRound(end.Round)
	if o := s.roundObserver(); o != nil {
		o.SyncRoundEnded(end.Round)
	}
	s.RoundEnded(end)
}

// roundObserver returns the Observer as a RoundObserver, or nil.
func (s *Store) roundObserver() RoundObserver {
	o, _ := s.opts.Observer.(RoundObserver)
	return o
}
