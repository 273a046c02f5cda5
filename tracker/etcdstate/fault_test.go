package etcdstate_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/internal/etcdtest"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
	"github.com/peerfs/peerfs/tracker/etcdstate"
)

// faultyStore is a real store whose sessions fail the next failUpdates
// calls of Update without doing them, as when etcd does not answer in
// time, and lose the answers of the next lostJoins calls of Join; so
// fail the next failRounds calls of UpdateRound.
type faultyStore struct {
	tracker.Shared
	failUpdates atomic.Int32
	// lostJoins counts the next calls of Join that are done but whose
	// answer is lost: an error, as when the answer comes too late.
	lostJoins atomic.Int32
	// failRounds counts the next calls of UpdateRound that fail undone.
	failRounds atomic.Int32
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

func (s faultySession) UpdateRound(ctx context.Context, guard int64, fn func(*tracker.RoundState) bool) (tracker.RoundState, error) {
	if s.f.failRounds.Add(-1) >= 0 {
		return tracker.RoundState{}, errInjected
	}
	return s.SharedSession.UpdateRound(ctx, guard, fn)
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

// syncBuffer is a log's destination, read by the test meanwhile.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReplicaWithoutEtcd: a replica whose etcd does not answer says so
// in its log, again and again, instead of waiting in silence, and
// refuses REGISTER in bounded time, telling the peer to try another.
func TestReplicaWithoutEtcd(t *testing.T) {
	port, err := etcdtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	store, err := etcdstate.New(etcdstate.Options{Endpoints: []string{"http://127.0.0.1:" + strconv.Itoa(port)}, DialTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	tr := tracker.New(tracker.Options{Shared: store, WriteTimeout: time.Second, Logger: zerolog.New(&log)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = tr.Serve(ln) }()
	t.Cleanup(func() { tr.Close(); <-served; store.Close() })

	seed := dial(t, ln.Addr().String())
	seed.send("REGISTER p 7001")
	seed.expect("REGISTER FAIL busy this tracker has lost its shared store: try another")
	testutil.Eventually(t, "the log to say why", func() bool {
		return strings.Count(log.String(), "cannot open a session with the shared store") >= 2
	})
}

// TestSyncRefusedByReplica: a SYNC the replica cannot record in the
// store is refused (SYNC FAIL io), and the Client's Sync returns that
// refusal instead of waiting for a turn that will never come.
func TestSyncRefusedByReplica(t *testing.T) {
	eps := etcdtest.Start(t)
	faulty := &faultyStore{}
	a := startReplicaWrapped(t, eps, tracker.Options{}, func(s tracker.Shared) tracker.Shared {
		faulty.Shared = s
		return faulty
	})
	c := tracker.NewClient(tracker.ClientOptions{Addrs: []string{a.addr}, Name: "p", Port: 7001, Logger: zerolog.Nop()})
	testutil.RunTrackerClient(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	faulty.failRounds.Store(1)
	err := c.Sync(ctx)
	var fe *peerproto.FailError
	if !errors.As(err, &fe) || fe.Code != peerproto.CodeIO {
		t.Fatalf("Sync: %v, want the refusal SYNC FAIL io", err)
	}
	// The next one gets its turn.
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// slowWatch is a real store whose sessions report changes (Follow) late:
// a replica's watch behind its own writes, as on a loaded machine.
type slowWatch struct {
	tracker.Shared
	delay time.Duration
}

func (w slowWatch) Open(ctx context.Context) (tracker.SharedSession, error) {
	s, err := w.Shared.Open(ctx)
	if err != nil {
		return nil, err
	}
	return slowWatchSession{s, w.delay}, nil
}

type slowWatchSession struct {
	tracker.SharedSession
	delay time.Duration
}

func (s slowWatchSession) Follow(ctx context.Context, fn func(tracker.SharedEvent)) error {
	return s.SharedSession.Follow(ctx, func(ev tracker.SharedEvent) {
		if !ev.Snapshot {
			time.Sleep(s.delay)
		}
		fn(ev)
	})
}

// TestReplicaEndsRoundBeforeNextGrant: a peer that asks again right
// after its turn gets the next round's SYNC OK only after the SYNC END of
// the round its turn ended, even when the replica's watch reports that
// end late: a client reads a SYNC OK between its SYNC FIN and that SYNC
// END as the grant it just used, repeated (the tracker answers a SYNC from
// its holder so), and ignores it; its turn then never came, its lease
// ran out, and its fsync waited for good (TestReplicasManyWriters hung
// this way under load).
func TestReplicaEndsRoundBeforeNextGrant(t *testing.T) {
	eps := etcdtest.Start(t)
	r := startReplicaWrapped(t, eps, tracker.Options{}, func(s tracker.Shared) tracker.Shared {
		return slowWatch{Shared: s, delay: 300 * time.Millisecond}
	})
	w := join(t, r.addr, "w", 7001, false, 1)
	w.send("SYNC")
	w.expect("SYNC OK")
	w.send("SYNC FIN wrote")
	w.send("SYNC")
	w.expect("SYNC END 1 writers=w", "SYNC OK")
	w.send("SYNC FIN clean")
	w.expectPrefix("SYNC END 2")
}
