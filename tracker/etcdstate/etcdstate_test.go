package etcdstate_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/peerfs/peerfs/internal/etcdtest"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
	"github.com/peerfs/peerfs/tracker/etcdstate"
)

const replyTimeout = 5 * time.Second

// replica is one tracker replica on an etcd, served on loopback.
type replica struct {
	tr    *tracker.Tracker
	addr  string
	store *etcdstate.Store
	stop  func()
}

// startReplica serves a tracker on endpoints until stop or the end of
// the test.
func startReplica(t *testing.T, endpoints []string, opts tracker.Options) *replica {
	t.Helper()
	return startReplicaWrapped(t, endpoints, opts, nil)
}

// startReplicaWrapped is startReplica with the store seen through wrap
// (fault injection), if not nil.
func startReplicaWrapped(t *testing.T, endpoints []string, opts tracker.Options, wrap func(tracker.Shared) tracker.Shared) *replica {
	t.Helper()
	store, err := etcdstate.New(etcdstate.Options{Endpoints: endpoints, TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opts.Shared = store
	if wrap != nil {
		opts.Shared = wrap(store)
	}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	tr := tracker.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = tr.Serve(ln) }()
	r := &replica{tr: tr, addr: ln.Addr().String(), store: store}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		tr.Close()
		<-served
		store.Close()
	}
	t.Cleanup(r.stop)
	return r
}

// line is a test peer speaking the protocol over a raw connection.
type line struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *line {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, replyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &line{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (l *line) send(s string) {
	l.t.Helper()
	_ = l.nc.SetWriteDeadline(time.Now().Add(replyTimeout))
	if _, err := io.WriteString(l.nc, s+"\n"); err != nil {
		l.t.Fatalf("send %q: %v", s, err)
	}
}

// expect reads lines, skipping PONGs, and compares them with want.
func (l *line) expect(want ...string) {
	l.t.Helper()
	for _, w := range want {
		_ = l.nc.SetReadDeadline(time.Now().Add(replyTimeout))
		got, err := l.r.ReadString('\n')
		if err != nil {
			l.t.Fatalf("want %q, got %q and %v", w, got, err)
		}
		if got = strings.TrimSuffix(got, "\n"); got == "PONG" {
			w := w
			l.expect(w)
			continue
		}
		if got != w {
			l.t.Fatalf("want %q, got %q", w, got)
		}
	}
}

// expectPrefix reads a line and checks that it starts with want.
func (l *line) expectPrefix(want string) {
	l.t.Helper()
	_ = l.nc.SetReadDeadline(time.Now().Add(replyTimeout))
	got, err := l.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(got, want) {
		l.t.Fatalf("want %q..., got %q and %v", want, got, err)
	}
}

// quiet checks with a PING that nothing is pending.
func (l *line) quiet() {
	l.t.Helper()
	l.send("PING")
	_ = l.nc.SetReadDeadline(time.Now().Add(replyTimeout))
	if got, err := l.r.ReadString('\n'); err != nil || got != "PONG\n" {
		l.t.Fatalf("want PONG, got %q and %v", got, err)
	}
}

// join registers name with turns and deltas, saying whether it holds
// writes, and reads its list (count entries).
func join(t *testing.T, addr, name string, port int, held bool, count int) *line {
	t.Helper()
	l := dial(t, addr)
	l.send("FEATURES turns deltas left")
	l.expect("FEATURES OK turns deltas left")
	if held {
		l.send("WRITES held")
	} else {
		l.send("WRITES none")
	}
	l.expect("WRITES OK")
	l.send("REGISTER " + name + " " + strconv.Itoa(port))
	l.expect("REGISTER OK", "PEERS "+strconv.Itoa(count))
	for range count {
		_ = l.nc.SetReadDeadline(time.Now().Add(replyTimeout))
		if _, err := l.r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// TestReplicasShareTheList: peers registered with different replicas
// see each other join and leave, as deltas and as the seed's UPDATE; a
// name is unique across replicas.
func TestReplicasShareTheList(t *testing.T) {
	eps := etcdtest.Start(t)
	a := startReplica(t, eps, tracker.Options{})
	b := startReplica(t, eps, tracker.Options{})
	const alice, bob = "alice@127.0.0.1:7001", "bob@127.0.0.1:7002"

	al := join(t, a.addr, "alice", 7001, false, 1)
	seed := dial(t, b.addr)
	seed.send("REGISTER")
	seed.expect("REGISTER OK", "UPDATE "+alice)
	bl := join(t, b.addr, "bob", 7002, false, 2)
	al.expect("JOINED " + bob)
	seed.expect("UPDATE " + alice + " " + bob)

	other := dial(t, a.addr)
	other.send("REGISTER bob 7009")
	other.expect(`REGISTER FAIL exists name "bob" is taken by 127.0.0.1:7002`)

	bl.send("QUIT")
	al.expect("LEFT bob quit")
	seed.expect("UPDATE " + alice)
	al.nc.Close()
	seed.expect("UPDATE")
	if got := b.tr.Peers(); len(got) != 0 {
		t.Errorf("replica b lists %v after both left", got)
	}
}

// TestReplicasRound: a round across replicas gives turns to the asker
// and to the holders of writes, wherever they are registered, reads to
// the others, and SYNC END with the writers to all.
func TestReplicasRound(t *testing.T) {
	eps := etcdtest.Start(t)
	a := startReplica(t, eps, tracker.Options{})
	b := startReplica(t, eps, tracker.Options{})
	asker := join(t, a.addr, "asker", 7001, false, 1)
	holder := join(t, b.addr, "holder", 7002, true, 2)
	asker.expect("JOINED holder@127.0.0.1:7002")
	idle := join(t, b.addr, "idle", 7003, false, 3)
	asker.expect("JOINED idle@127.0.0.1:7003")
	holder.expect("JOINED idle@127.0.0.1:7003")

	asker.send("SYNC")
	asker.expect("SYNC OK")
	holder.expect("SYNC READ")
	idle.expect("SYNC READ")
	asker.send("SYNC FIN clean")
	holder.expect("SYNC OK")
	holder.send("SYNC FIN wrote")
	for _, l := range []*line{asker, holder, idle} {
		l.expect("SYNC END 1 writers=holder")
	}
	for _, l := range []*line{asker, holder, idle} {
		l.quiet()
	}

	// The holder's turn ended its holding: the next round is the
	// asker's alone.
	asker.send("SYNC")
	asker.expect("SYNC OK")
	asker.send("SYNC FIN wrote")
	asker.expect("SYNC END 2 writers=asker")
	holder.expect("SYNC READ", "SYNC END 2 writers=asker")
}

// TestReplicaLosesItsSession: a replica whose session lapses (its lease
// revoked, as when it was cut off from etcd longer than the TTL) fences
// the holder it granted the token (SYNC FAIL expired) and drops its
// peers; the round goes on with the other replica's peers.
func TestReplicaLosesItsSession(t *testing.T) {
	eps := etcdtest.Start(t)
	a := startReplica(t, eps, tracker.Options{Lease: time.Minute})
	b := startReplica(t, eps, tracker.Options{Lease: time.Minute})
	asker := join(t, a.addr, "asker", 7001, false, 1)
	holder := join(t, b.addr, "holder", 7002, true, 2)
	asker.expect("JOINED holder@127.0.0.1:7002")

	holder.send("SYNC")
	holder.expect("SYNC OK")
	asker.expect("SYNC READ")
	asker.send("SYNC")

	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: replyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), replyTimeout)
	defer cancel()
	// The asker's request in the shared store before the holder goes:
	// else the round may end with nobody waiting (SYNC END 1) and the
	// asker's turn come in the next one.
	testutil.Eventually(t, "the asker's request in the shared store", func() bool {
		r, err := cli.Get(ctx, "/peerfs/round")
		if err != nil || len(r.Kvs) == 0 {
			return false
		}
		var st tracker.RoundState
		return json.Unmarshal(r.Kvs[0].Value, &st) == nil && slices.Contains(st.Todo, "asker")
	})
	// Revoke b's lease behind its back.
	// The token's holder is the oldest key under its prefix.
	resp, err := cli.Get(ctx, "/peerfs/token", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("the token's keys: %v, %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	holder.expectPrefix("SYNC FAIL expired lease of 1m0s expired")
	asker.expect("LEFT holder dropped")
	asker.expect("SYNC OK")
	asker.send("SYNC FIN clean")
	asker.expect("SYNC END 1")
}

// TestClientFailsOverBetweenReplicas: a tracker client with both
// replicas' addresses, registered with one that stops, registers with
// the other before its member lapses, so the others never see it leave;
// a Sync waiting when the replica stopped gets its turn there.
func TestClientFailsOverBetweenReplicas(t *testing.T) {
	eps := etcdtest.Start(t)
	a := startReplica(t, eps, tracker.Options{})
	b := startReplica(t, eps, tracker.Options{})
	watcher := join(t, b.addr, "watcher", 7000, false, 1)

	c := tracker.NewClient(tracker.ClientOptions{
		Addrs: []string{a.addr, b.addr}, Name: "mover", Port: 7001, Logger: zerolog.Nop(),
		PingInterval: time.Second,
	})
	testutil.RunTrackerClient(t, c)
	watcher.expect("JOINED mover@127.0.0.1:7001")

	a.stop()
	testutil.Eventually(t, "the client to register with b", func() bool {
		return c.Registered() && slices.ContainsFunc(b.tr.Peers(), func(p peerproto.PeerAddr) bool { return p.Name == "mover" })
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	watcher.expect("SYNC READ", "SYNC END 1")
	// Nothing else: no LEFT, no JOINED (the member was replaced in place).
	time.Sleep(3 * time.Second) // past the stopped replica's TTL
	watcher.quiet()
}

// TestReplicasManyWriters: writers on two replicas fsync in loops;
// every Sync gets its turn and every round ends.
func TestReplicasManyWriters(t *testing.T) {
	eps := etcdtest.Start(t)
	rs := []*replica{startReplica(t, eps, tracker.Options{}), startReplica(t, eps, tracker.Options{})}
	const writers, each = 6, 4
	var clients []*tracker.Client
	for i := range writers {
		c := tracker.NewClient(tracker.ClientOptions{
			Addrs: []string{rs[i%2].addr}, Name: "w" + strconv.Itoa(i), Port: 7000 + i, Logger: zerolog.Nop(),
			Handler: turnDelay{20 * time.Millisecond},
		})
		testutil.RunTrackerClient(t, c)
		clients = append(clients, c)
	}
	// A bound on liveness, not a speed target: 24 rounds of etcd writes,
	// each an fsync of etcd's log, took over 30 s on a loaded machine.
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	errs := make(chan error, writers)
	for _, c := range clients {
		go func() {
			for range each {
				if err := c.Sync(ctx); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// turnDelay is a Handler whose turns take a while.
type turnDelay struct{ d time.Duration }

func (turnDelay) SetPeers([]peerproto.PeerAddr) {}
func (turnDelay) SyncRead()                     {}
func (h turnDelay) SyncTurn(ctx context.Context) error {
	select {
	case <-time.After(h.d):
	case <-ctx.Done():
	}
	return nil
}
func (turnDelay) SyncEnd(peerproto.SyncEnd) {}
func (turnDelay) HoldsWrites() bool         { return false }

// TestReplicaSeedPeers: peers speaking only the seed's lines, on two
// replicas, get exactly the seed's exchange: UPDATEs, and rounds in
// which every one of them has a turn (SYNC OK, SYNC READ, plain SYNC
// FIN, SYNC END without writers).
func TestReplicaSeedPeers(t *testing.T) {
	eps := etcdtest.Start(t)
	a := startReplica(t, eps, tracker.Options{})
	b := startReplica(t, eps, tracker.Options{})
	const alice, bob = "alice@127.0.0.1:7001", "bob@127.0.0.1:7002"
	al := dial(t, a.addr)
	al.send("REGISTER alice 7001")
	al.expect("REGISTER OK", "UPDATE "+alice)
	bl := dial(t, b.addr)
	bl.send("REGISTER bob 7002")
	bl.expect("REGISTER OK", "UPDATE "+alice+" "+bob)
	al.expect("UPDATE " + alice + " " + bob)

	for round, pair := range [][2]*line{{al, bl}, {bl, al}} {
		asker, other := pair[0], pair[1]
		asker.send("SYNC")
		asker.expect("SYNC OK")
		other.expect("SYNC READ")
		asker.send("SYNC FIN")
		other.expect("SYNC OK")
		other.send("SYNC FIN")
		end := "SYNC END " + strconv.Itoa(round+1)
		asker.expect(end)
		other.expect(end)
	}
	al.quiet()
	bl.quiet()
}

// TestReplicaFullTakesARestart: a replica at MaxPeers still takes the
// REGISTER of a peer already listed at the same address (it restarted,
// or comes over from another replica), as a single tracker does: it
// replaces itself and the count does not grow.
func TestReplicaFullTakesARestart(t *testing.T) {
	eps := etcdtest.Start(t)
	a := startReplica(t, eps, tracker.Options{MaxPeers: 1})
	b := startReplica(t, eps, tracker.Options{MaxPeers: 1})
	first := dial(t, a.addr)
	first.send("REGISTER p 7001")
	first.expect("REGISTER OK", "UPDATE p@127.0.0.1:7001")
	again := dial(t, b.addr)
	again.send("REGISTER p 7001")
	again.expect("REGISTER OK", "UPDATE p@127.0.0.1:7001")
	other := dial(t, b.addr)
	other.send("REGISTER q 7002")
	other.expect("REGISTER FAIL busy tracker is full (1 peers)")
}
