package etcdstate_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/etcdtest"
	"github.com/peerfs/peerfs/tracker"
)

// faultyStore is a real store whose sessions fail the next failUpdates
// calls of Update without doing them, as when etcd does not answer in
// time, and lose the answers of the next lostJoins calls of Join.
type faultyStore struct {
	tracker.Shared
	failUpdates atomic.Int32
	// lostJoins counts the next calls of Join that are done but whose
	// answer is lost: an error, as when the answer comes too late.
	lostJoins atomic.Int32
}

func (f *faultyStore) Open(ctx context.Context) (tracker.SharedSession, error) {
	s, err := f.Shared.Open(ctx)
	if err != nil {
		return nil, err
	}
	return faultySession{s, f}, nil
}

type faultySession struct {
	tracker.SharedSession
	f *faultyStore
}

var errInjected = errors.New("injected: etcd did not answer")

func (s faultySession) Join(ctx context.Context, m tracker.Member) (int64, error) {
	rev, err := s.SharedSession.Join(ctx, m)
	if err == nil && s.f.lostJoins.Add(-1) >= 0 {
		return 0, errInjected
	}
	return rev, err
}

func (s faultySession) Update(ctx context.Context, old, m tracker.Member) error {
	if s.f.failUpdates.Add(-1) >= 0 {
		return errInjected
	}
	return s.SharedSession.Update(ctx, old, m)
}

// TestReplicaFailedUpdateLeavesNoGhost: when a replica cannot record
// in the store that a peer stopped holding writes, the peer's member
// must still go when the peer does: a member left behind (a ghost)
// stays listed for as long as its replica lives, and, holding writes, is
// owed a turn that nobody ever takes, so that no round ends again.
func TestReplicaFailedUpdateLeavesNoGhost(t *testing.T) {
	eps := etcdtest.Start(t)
	faulty := &faultyStore{}
	a := startReplicaWrapped(t, eps, tracker.Options{}, func(s tracker.Shared) tracker.Shared {
		faulty.Shared = s
		return faulty
	})
	b := startReplica(t, eps, tracker.Options{Lease: time.Minute})
	watcher := join(t, b.addr, "watcher", 7000, false, 1)
	p := join(t, a.addr, "p", 7001, true, 2)
	watcher.expect("JOINED p@127.0.0.1:7001")

	faulty.failUpdates.Store(1)
	p.send("WRITES none") // not recorded: the store keeps Holds
	_ = p.nc.SetReadDeadline(time.Now().Add(replyTimeout))
	if got, err := p.r.ReadString('\n'); err == nil && got == "WRITES OK\n" {
		t.Error("WRITES OK although the store did not record it")
	}
	p.nc.Close()
	watcher.expect("LEFT p dropped")

	watcher.send("SYNC")
	watcher.expect("SYNC OK")
	watcher.send("SYNC FIN clean")
	watcher.expect("SYNC END 1 writers=")
}

// TestReplicaFailedJoinLeavesNoGhost: a REGISTER refused because the
// store's answer was lost leaves no member behind, though the store did
// register it: the peer (one speaking only the seed, which may always
// hold writes) is not listed, and rounds owe it no turn.
func TestReplicaFailedJoinLeavesNoGhost(t *testing.T) {
	eps := etcdtest.Start(t)
	faulty := &faultyStore{}
	a := startReplicaWrapped(t, eps, tracker.Options{}, func(s tracker.Shared) tracker.Shared {
		faulty.Shared = s
		return faulty
	})
	b := startReplica(t, eps, tracker.Options{Lease: time.Minute})
	watcher := join(t, b.addr, "watcher", 7000, false, 1)

	faulty.lostJoins.Store(1)
	seed := dial(t, a.addr)
	seed.send("REGISTER p 7001")
	seed.expectPrefix("REGISTER FAIL io the shared store: " + errInjected.Error())
	seed.nc.Close()
	// It may have been seen joining; it must be seen going.
	watcher.expect("JOINED p@127.0.0.1:7001", "LEFT p dropped")

	watcher.send("SYNC")
	watcher.expect("SYNC OK")
	watcher.send("SYNC FIN clean")
	watcher.expect("SYNC END 1 writers=")
}
