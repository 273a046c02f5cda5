package remote

// The Store's part in SYNC rounds: it is the tracker client's Handler
// (tracker.Handler, with TakeWrote, HoldsWrites and PeerLeft), and an
// Observer that is also a RoundObserver hears how the rounds went.
//
// A round gives this mount a turn only when it asked for one (its own
// fsync) or holds writes the other mounts must see (HoldsWrites). The
// tracker knows which, because the Store says so before the first
// request that changes a peer's export after its last turn
// (noteWrites, from poolDo) and the client says so again after a turn
// that left something behind.

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
	_ tracker.WritesHolder  = (*Store)(nil)
)

// HoldsWrites implements tracker.WritesHolder: whether this mount holds
// writes a turn must deal with before the other mounts can count on
// them. It does while
//
//   - it has changed a peer's export since its last turn (the flag
//     TakeWrote reports): the round's SYNC END must name it as a writer,
//     or the other mounts keep caches that predate the change;
//   - a local copy holds changes not stored on its peer yet (written,
//     closed or not, and pending upload or retry): the turn uploads it;
//   - a peer stored something from here that it has not made durable
//     (async PUTs, namespace changes; unsynced): the turn's FSYNC does.
//
// A mount whose writes are stored already still takes a turn, for the
// first and last reasons' sake: after a round ends, what every mount
// wrote and closed before it is visible to all, caches included, and
// durable on its peer, as when every mount had a turn. A mount with none
// of these needs none: it reads (SYNC READ, SYNC END) and drops its
// caches as before.
//
// A mount that wrote before its last turn also says it holds writes,
// until a turn finds it wrote nothing since: a writer is likely to write
// again soon (an editor renames the file it just fsynced), and its next
// change then waits for no answer from the tracker. The price is one
// turn with nothing to do, in the next round, once it stopped writing.
func (s *Store) HoldsWrites() bool {
	if s.wrote.Load() || s.wroteLast.Load() || s.ns.pending() {
		return true
	}
	for _, f := range s.states() {
		if f.live() {
			return true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if p.unsynced.pending() {
			return true
		}
	}
	return false
}

// writesNoter is a Syncer that tells the tracker when this mount starts
// to hold writes (*tracker.Client does).
type writesNoter interface {
	NoteWrites() (wait func(context.Context))
}

// noteWritesWait bounds how long a request that changes a peer's export
// waits, after it is done, for the tracker to acknowledge that this
// mount holds writes: a tracker that does not answer in that time is
// as good as lost (a round goes on without it).
const noteWritesWait = 5 * time.Second

// noteWrites tells the tracker, before a request that changes a peer's
// export, that this mount holds writes; the function it returns waits
// for the acknowledgement (bounded by ctx and noteWritesWait), and is
// called before the request's success is returned.
func (s *Store) noteWrites() func(context.Context) {
	s.mu.Lock()
	n, _ := s.syncer.(writesNoter)
	s.mu.Unlock()
	if n == nil {
		return func(context.Context) {}
	}
	wait := n.NoteWrites()
	return func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, noteWritesWait)
		defer cancel()
		wait(ctx)
	}
}

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
