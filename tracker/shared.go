package tracker

// What tracker replicas share (Options.Shared). With it, a Tracker is one
// replica of several serving one cluster: the registered peers, who holds
// writes, the SYNC rounds and the write token live in the shared store
// (package tracker/etcdstate keeps them in etcd), and each replica tells
// its own connections what changes there. The replica's logic is in
// replica*.go; this file is the contract with the store.

import (
	"context"
	"errors"
	"fmt"
)

// Shared is a store that tracker replicas share. Everything a replica
// writes there is tied to a session: when the session ends (the replica
// stopped, crashed or lost the store for longer than the session's TTL),
// its members and its hold on the write token go with it.
type Shared interface {
	// Open starts a session. It ends when ctx does, or when the store
	// loses it (SharedSession.Done). A store that does not answer in
	// bounded time is an error: the replica logs it and tries again.
	Open(ctx context.Context) (SharedSession, error)
}

// SharedSession is one replica's session with the shared store.
type SharedSession interface {
	// ID identifies the session among all replicas' sessions.
	ID() string
	// Done is closed when the session is lost: its members are gone (or
	// about to be) and its hold on the token with them.
	Done() <-chan struct{}
	// Follow calls fn with the whole state, then with every change in
	// the store's order, from one goroutine, until ctx ends or the
	// store fails; it returns why it stopped.
	Follow(ctx context.Context, fn func(SharedEvent)) error
	// Join registers m, tied to this session, and returns the store's
	// revision that holds it. A name held by a member at another address
	// is a *TakenError; at the same address (the peer restarted), m
	// replaces it in its place.
	Join(ctx context.Context, m Member) (rev int64, err error)
	// Update replaces member m.Name with m, if it is still old's
	// registration (the same Owner: not replaced since), whatever its
	// other fields are now.
	Update(ctx context.Context, old, m Member) error
	// Leave removes member m, if it is still m's registration (the same
	// Owner); quit records that it left on purpose (the Deleted event
	// says so).
	Leave(ctx context.Context, m Member, quit bool) error
	// UpdateRound applies fn to the round state and stores the result if
	// fn reports a change and nobody changed the round meanwhile (else
	// it tries again with the new state); with guard > 0, also only if
	// no member changed after revision guard (ErrStale otherwise: the
	// caller's view of the members is behind). It returns the state as
	// stored, or as found if fn changed nothing. fn may run on a state
	// later than the one it meant (another writer's, or its own change
	// stored by a try whose answer was lost): it must find that state
	// needs no change, or apply only what still belongs to it.
	UpdateRound(ctx context.Context, guard int64, fn func(*RoundState) bool) (RoundState, error)
	// Lock waits for the write token and returns it.
	Lock(ctx context.Context) (Token, error)
	// Close ends the session; its members stay until its TTL runs out
	// (peers that register again elsewhere in time replace them).
	Close() error
}

// Token is the write token, held by this session until Unlock. Its
// revision fences a holder that lost it: UpdateRound through the token
// succeeds only while the token is still held.
type Token interface {
	// Round reads the round state as it is now.
	Round(ctx context.Context) (RoundState, error)
	// UpdateRound is SharedSession.UpdateRound, done only while the
	// token is held: ErrTokenLost otherwise.
	UpdateRound(ctx context.Context, guard int64, fn func(*RoundState) bool) (RoundState, error)
	// Unlock gives the token back.
	Unlock(ctx context.Context) error
}

// Member is a registered peer as the shared store keeps it.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr,omitempty"`  // advertised host:port; "" for a bare REGISTER
	Holds bool   `json:"holds,omitempty"` // may hold writes a round must give a turn for
	Owner string `json:"owner"`           // the session and connection that registered it
	Left  string `json:"left,omitempty"`  // peerproto.LeftQuit once it said QUIT
}

// RoundState is the SYNC round as the shared store keeps it.
type RoundState struct {
	Round  uint64   `json:"round"` // the round in progress, or the last one
	Active bool     `json:"active"`
	Todo   []string `json:"todo,omitempty"` // participants still owed their turn, preferred order
	Done   []string `json:"done,omitempty"` // participants whose turn is over
	Next   []string `json:"next,omitempty"` // asked after their turn: they open the next round
	// Writers and Unsure are SYNC END's writers (syncState in sync.go).
	Writers []string `json:"writers,omitempty"`
	Unsure  bool     `json:"unsure,omitempty"`
	// Ended is the SYNC END of the last round that ended: every replica
	// sends it when it sees Ended.Round grow.
	Ended RoundEnd `json:"ended"`
}

// RoundEnd is a round's SYNC END as the shared store keeps it.
type RoundEnd struct {
	Round   uint64   `json:"round"`
	Writers []string `json:"writers,omitempty"`
	Unsure  bool     `json:"unsure,omitempty"`
}

// SharedEvent is what Follow reports: a Snapshot first, then changes.
type SharedEvent struct {
	Rev int64 // the store's revision after the event
	// Snapshot, when set, is the whole state: Members in registration
	// order and Round.
	Snapshot bool
	Members  []Member
	// Otherwise one of: a member put (Created if it is new, else it was
	// updated or replaced), a member deleted (Deleted, with its last
	// value), or the round changed (RoundChanged).
	Member       *Member
	Created      bool
	Deleted      bool
	RoundChanged bool
	Round        RoundState
}

// TakenError is the refusal of a name held by a member at another
// address.
type TakenError struct{ Addr string }

// Error says which address holds the name.
func (e *TakenError) Error() string { return fmt.Sprintf("name is taken by %s", e.Addr) }

// Errors of the shared store.
var (
	ErrStale     = errors.New("tracker: the members changed since the given revision")
	ErrTokenLost = errors.New("tracker: the write token was lost")
)
