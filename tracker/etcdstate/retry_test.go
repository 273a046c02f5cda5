package etcdstate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerfs/peerfs/internal/etcdtest"
	"github.com/peerfs/peerfs/tracker"
	"github.com/peerfs/peerfs/tracker/etcdstate"
)

// lookingClient is an etcd client of ps's for the test's own looks,
// closed at its end.
func lookingClient(t *testing.T, ps []*etcdtest.Process) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcdtest.ClientURLs(ps), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// leaderOf returns the member of ps that leads the cluster, asked
// through cli.
func leaderOf(t *testing.T, cli *clientv3.Client, ps []*etcdtest.Process) *etcdtest.Process {
	t.Helper()
	for _, p := range ps {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, p.ClientURL())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader == st.Header.MemberId {
			return p
		}
	}
	t.Fatal("no member leads")
	return nil
}

// TestSessionRidesOutAMemberKill: kill -9 of the etcd member that leads
// the cluster, while a session updates the round and its members in a
// loop, each call bounded as a replica bounds it (its WriteTimeout): no
// call fails. In-flight writes then fail with "leader changed", "request
// timed out" or a closed connection, which etcd's client does not retry
// for writes (one may have been carried out); a replica that passed
// them on refused a peer's SYNC ("SYNC FAIL io"), its fsync got EIO.
// Every write here is a compare-and-swap, safe to try again.
func TestSessionRidesOutAMemberKill(t *testing.T) {
	if testing.Short() {
		t.Skip("three etcd processes and a leader election: ~11 s")
	}
	ps := etcdtest.StartProcesses(t, 3)
	store, err := etcdstate.New(etcdstate.Options{Endpoints: etcdtest.ClientURLs(ps), TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
	sess, err := store.Open(octx)
	ocancel()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	const bound = tracker.DefaultWriteTimeout
	stop := make(chan struct{})
	var loops sync.WaitGroup
	var stopped sync.Once
	end := func() { stopped.Do(func() { close(stop); loops.Wait() }) }
	t.Cleanup(end) // before the store closes: a failed wait leaves no loop
	var mu sync.Mutex
	var errs []error
	var calls, rounds, ids atomic.Int64
	loop := func(name string, call func(ctx context.Context) error) {
		loops.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), bound)
				err := call(ctx)
				cancel()
				calls.Add(1)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					mu.Unlock()
				}
			}
		})
	}
	for i := range 3 {
		loop("UpdateRound", func(ctx context.Context) error {
			// Each call adds a name of its own, once: run again on the
			// state its lost answer stored, fn finds it there.
			id := fmt.Sprint("u", ids.Add(1))
			_, err := sess.UpdateRound(ctx, 0, func(rs *tracker.RoundState) bool {
				if slices.Contains(rs.Todo, id) {
					return false
				}
				rs.Todo = append(rs.Todo, id)
				return true
			})
			if err == nil {
				rounds.Add(1)
			}
			return err
		})
		m := tracker.Member{Name: fmt.Sprintf("p%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 7000+i), Owner: sess.ID() + fmt.Sprint("/", i)}
		jctx, jcancel := context.WithTimeout(context.Background(), bound)
		if _, err := sess.Join(jctx, m); err != nil {
			t.Fatal(err)
		}
		jcancel()
		loop("Update", func(ctx context.Context) error {
			m2 := m
			m2.Holds = !m.Holds
			err := sess.Update(ctx, m, m2)
			m = m2
			return err
		})
	}
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatal("timed out waiting for", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil("updates before the kill", func() bool { return rounds.Load() >= 100 })
	cli := lookingClient(t, ps)
	leader := leaderOf(t, cli, ps)
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	before := rounds.Load()
	waitUntil("updates after the kill", func() bool { return rounds.Load() >= before+100 })
	end()
	t.Logf("%d calls, %d round updates, the leader %s killed", calls.Load(), rounds.Load(), leader.Name)
	for _, err := range errs {
		t.Error(err)
	}
	// Every call that succeeded is stored, once.
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	resp, err := cli.Get(ctx, etcdstate.DefaultPrefix+"round")
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("the round: %v", err)
	}
	var rs tracker.RoundState
	if err := json.Unmarshal(resp.Kvs[0].Value, &rs); err != nil {
		t.Fatal(err)
	}
	if int64(len(rs.Todo)) != rounds.Load() {
		t.Errorf("%d updates stored, %d succeeded", len(rs.Todo), rounds.Load())
	}
}

// TestTransient: what etcd gives while it cannot answer for a moment is
// retried; what is final is not.
func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrLeaderChanged, true},
		{rpctypes.ErrNoLeader, true},
		{rpctypes.ErrTimeout, true},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), true},
		{fmt.Errorf("etcdstate: write the round: %w", status.Error(codes.Unavailable, "connection reset by peer")), true},
		{rpctypes.ErrCompacted, false},
		{rpctypes.ErrLeaseNotFound, false},
		{rpctypes.ErrPermissionDenied, false},
		{context.DeadlineExceeded, false},
		{context.Canceled, false},
		{errors.New("etcdstate: the round: invalid character"), false},
	} {
		if got := etcdstate.Transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
