package etcdstate

// Writes carried out by etcd whose answers are lost (the client gets
// Unavailable), then tried again (retry.go). Found by a review of the
// retries: each test failed before its fix.

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerfs/peerfs/internal/etcdtest"
	"github.com/peerfs/peerfs/tracker"
)

// loser loses the answer of the next Txn that puts under key prefix
// want: etcd carries it out, the caller gets Unavailable. Before the
// error is returned, meanwhile runs (another replica's write).
type loser struct {
	mu        sync.Mutex
	want      string
	meanwhile func()
}

func (l *loser) arm(want string, meanwhile func()) {
	l.mu.Lock()
	l.want, l.meanwhile = want, meanwhile
	l.mu.Unlock()
}

func (l *loser) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	tr, ok := req.(*pb.TxnRequest)
	if err != nil || !ok {
		return err
	}
	l.mu.Lock()
	want, meanwhile := l.want, l.meanwhile
	hit := false
	if want != "" {
		for _, op := range append(slices.Clone(tr.Success), tr.Failure...) {
			if p := op.GetRequestPut(); p != nil && strings.HasPrefix(string(p.Key), want) && reply.(*pb.TxnResponse).Succeeded == slices.Contains(tr.Success, op) {
				hit = true
			}
		}
	}
	if hit {
		l.want, l.meanwhile = "", nil
	}
	l.mu.Unlock()
	if !hit {
		return err
	}
	if meanwhile != nil {
		meanwhile()
	}
	return status.Error(codes.Unavailable, "review: error reading from server: EOF")
}

func lossyStore(t *testing.T, eps []string) (*Store, *loser) {
	t.Helper()
	l := &loser{}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(l.intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &Store{cli: cli, prefix: DefaultPrefix, ttl: 10, dialTimeout: 5 * time.Second}, l
}

func openSession(t *testing.T, s *Store) *session {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	x, err := s.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x.(*session)
}

// TestJoinWithoutAddrAnswerLost: a bare REGISTER's member has no
// address. Its Join is carried out, the answer lost: the retry must find
// the member its own (by Owner), not taken; a replica refuses a taken
// name and leaves the member in the store, a ghost for the session's
// lifetime (owed a turn if it Holds).
func TestJoinWithoutAddrAnswerLost(t *testing.T) {
	s, l := lossyStore(t, etcdtest.Start(t))
	x := openSession(t, s)
	m := tracker.Member{Name: "anon-1-1", Owner: x.ID() + "/1", Holds: true}
	l.arm(s.memberKey(m.Name), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := x.Join(ctx, m)
	var taken *tracker.TakenError
	if errors.As(err, &taken) {
		t.Errorf("Join of its own member, answer lost, then retried: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestJoinRetryKeepsNewerRegistration: peer p registers with replica A;
// the put is carried out, the answer lost. Meanwhile p (given up on A)
// registers at the same address with replica B, which replaces A's
// member. A's retry must not replace B's newer registration with its
// own: B would drop p's live connection as "replaced".
func TestJoinRetryKeepsNewerRegistration(t *testing.T) {
	eps := etcdtest.Start(t)
	s, l := lossyStore(t, eps)
	a := openSession(t, s)
	b := openSession(t, s)
	mA := tracker.Member{Name: "p", Addr: "127.0.0.1:7001", Owner: a.ID() + "/1"}
	mB := tracker.Member{Name: "p", Addr: "127.0.0.1:7001", Owner: b.ID() + "/1"}
	l.arm(s.memberKey("p"), func() {
		if _, err := b.Join(context.Background(), mB); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.Join(ctx, mA)
	var taken *tracker.TakenError
	if !errors.As(err, &taken) {
		t.Errorf("A's Join after B's registration of the same peer: %v, want a TakenError", err)
	}
	resp, err := s.cli.Get(context.Background(), s.memberKey("p"))
	if err != nil {
		t.Fatal(err)
	}
	var got tracker.Member
	_ = json.Unmarshal(resp.Kvs[0].Value, &got)
	if got.Owner != mB.Owner {
		t.Errorf("p's registration is %s (A's stale retry), want B's newer %s", got.Owner, mB.Owner)
	}
}

// TestTurnEndAnswerLostOwnNextRound: b asked for the next round during
// round 1 (Next), so a's turn end, ending round 1, opens round 2 with b
// then the holders, a among them (its member still Holds). The answer
// lost, the retry runs fn on the state it stored itself: fn must see
// that round 2 is not the one its turn was of (the tracker's takeTurn
// compares the round), or it takes a's turn of round 2. fn here is
// takeTurn's, unexported in package tracker.
func TestTurnEndAnswerLostOwnNextRound(t *testing.T) {
	s, l := lossyStore(t, etcdtest.Start(t))
	x := openSession(t, s)
	b, _ := json.Marshal(tracker.RoundState{Round: 1, Active: true, Todo: []string{"a"}, Done: []string{"b"}, Next: []string{"b"}})
	if _, err := s.cli.Put(context.Background(), s.roundKey(), string(b)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := x.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Unlock(ctx)
	l.arm(s.roundKey(), nil)
	holders := []string{"a", "b"} // the mirror's members that Hold, in order
	name, turn := "a", uint64(1)
	runs := 0
	// takeTurn's fn with endRound and startRound (replica.go).
	_, err = tok.UpdateRound(ctx, 0, func(rs *tracker.RoundState) bool {
		runs++
		i := slices.Index(rs.Todo, name)
		if !rs.Active || rs.Round != turn || i < 0 {
			return false
		}
		rs.Todo = slices.Delete(rs.Todo, i, i+1)
		rs.Done = append(rs.Done, name)
		if !slices.Contains(rs.Writers, name) {
			rs.Writers = append(rs.Writers, name)
		}
		if len(rs.Todo) == 0 {
			rs.Ended = tracker.RoundEnd{Round: rs.Round, Writers: rs.Writers, Unsure: rs.Unsure}
			rs.Active, rs.Todo, rs.Done, rs.Writers, rs.Unsure = false, nil, nil, nil, false
			if len(rs.Next) > 0 {
				first := rs.Next
				rs.Next = nil
				rs.Round++
				rs.Active = true
				rs.Todo = slices.Clone(first)
				for _, h := range holders {
					if !slices.Contains(first, h) {
						rs.Todo = append(rs.Todo, h)
					}
				}
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs < 2 {
		t.Fatalf("fn ran %d times: the answer was not lost", runs)
	}
	resp, err := s.cli.Get(context.Background(), s.roundKey())
	if err != nil {
		t.Fatal(err)
	}
	var rs tracker.RoundState
	_ = json.Unmarshal(resp.Kvs[0].Value, &rs)
	if rs.Round != 2 || !slices.Contains(rs.Todo, "a") {
		t.Errorf("round 2 after a retried end of a's round-1 turn: %+v; want Todo [b a]", rs)
	}
}
