package tracker

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// registerAll registers one client per name, in order, with ports 7001,
// 7002, ..., and reads every UPDATE their joins cause, so that each
// client's next line is whatever the test does next.
func registerAll(t *testing.T, addr string, names ...string) []*client {
	t.Helper()
	var cs []*client
	var list []string
	for i, name := range names {
		port := 7001 + i
		list = append(list, name+"@127.0.0.1:"+strconv.Itoa(port))
		update := "UPDATE " + strings.Join(list, " ")
		c := dial(t, addr)
		c.register(name, strconv.Itoa(port), update)
		for _, prev := range cs {
			prev.expect(update)
		}
		cs = append(cs, c)
	}
	return cs
}

// checkRound compares Tracker.Round with the expected state.
func checkRound(t *testing.T, tr *Tracker, round uint64, holder string, queue ...string) {
	t.Helper()
	r, h, q := tr.Round()
	if r != round || h != holder || !slices.Equal(q, queue) {
		t.Fatalf("Round() = %d, %q, %q; want %d, %q, %q", r, h, q, round, holder, queue)
	}
}

// quiet checks with a PING that nothing is pending for each client.
func quiet(cs ...*client) {
	for _, c := range cs {
		c.t.Helper()
		c.send("PING")
		c.expect("PONG")
	}
}

func TestSyncRound(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	cs := registerAll(t, addr, "alice", "bob", "carol")
	alice, bob, carol := cs[0], cs[1], cs[2]
	checkRound(t, tr, 0, "")

	// The requester writes first, then the others in registration order.
	bob.send("SYNC")
	bob.expect("SYNC OK")
	alice.expect("SYNC READ")
	carol.expect("SYNC READ")
	checkRound(t, tr, 1, "bob", "alice", "carol")

	bob.send("SYNC FIN")
	alice.expect("SYNC OK")
	quiet(bob, carol)
	checkRound(t, tr, 1, "alice", "carol")

	alice.send("SYNC FIN")
	carol.expect("SYNC OK")
	quiet(alice, bob)

	carol.send("SYNC FIN")
	for _, c := range cs {
		c.expect("SYNC END 1")
	}
	quiet(cs...)
	checkRound(t, tr, 0, "")

	// Round numbers go on.
	alice.send("SYNC")
	alice.expect("SYNC OK")
	bob.expect("SYNC READ")
	carol.expect("SYNC READ")
	checkRound(t, tr, 2, "alice", "bob", "carol")
}

func TestSyncHolderLeaves(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	cs := registerAll(t, addr, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := cs[0], cs[1], cs[2], cs[3]

	alice.send("SYNC")
	alice.expect("SYNC OK")
	for _, c := range cs[1:] {
		c.expect("SYNC READ")
	}

	// The holder vanishes: the others learn it left, and the token
	// passes on at once.
	alice.nc.Close()
	const bcd = "UPDATE bob@127.0.0.1:7002 carol@127.0.0.1:7003 dave@127.0.0.1:7004"
	bob.expect(bcd, "SYNC OK")
	carol.expect(bcd)
	dave.expect(bcd)
	checkRound(t, tr, 1, "bob", "carol", "dave")

	// A waiting participant leaves: it is taken out of the order.
	dave.send("QUIT")
	dave.expectClosed()
	const bc = "UPDATE bob@127.0.0.1:7002 carol@127.0.0.1:7003"
	bob.expect(bc)
	carol.expect(bc)
	checkRound(t, tr, 1, "bob", "carol")

	bob.send("SYNC FIN")
	carol.expect("SYNC OK")
	carol.send("SYNC FIN")
	bob.expect("SYNC END 1")
	carol.expect("SYNC END 1")
	checkRound(t, tr, 0, "")
	quiet(bob, carol)
}

func TestSyncLeaseExpires(t *testing.T) {
	const lease = time.Second
	tr, addr := startTracker(t, Options{Lease: lease})
	cs := registerAll(t, addr, "alice", "bob", "carol")
	alice, bob, carol := cs[0], cs[1], cs[2]

	start := time.Now()
	alice.send("SYNC")
	alice.expect("SYNC OK")
	bob.expect("SYNC READ")
	carol.expect("SYNC READ")
	// Asking again while holding the token does not renew the lease.
	time.Sleep(lease / 2)
	alice.send("SYNC")
	alice.expect("SYNC OK")

	// alice never sends SYNC FIN.
	alice.expect("SYNC FAIL expired lease of 1s expired")
	if d := time.Since(start); d < lease {
		t.Fatalf("lease revoked after %v, want at least %v", d, lease)
	}
	bob.expect("SYNC OK")
	checkRound(t, tr, 1, "bob", "carol")

	// Too late now.
	alice.send("SYNC FIN")
	alice.expect("SYNC FAIL state not the token holder")

	bob.send("SYNC FIN")
	carol.expect("SYNC OK")
	carol.send("SYNC FIN")
	for _, c := range cs {
		c.expect("SYNC END 1")
	}
	quiet(cs...)
	checkRound(t, tr, 0, "")
}

func TestSyncDuringRound(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	cs := registerAll(t, addr, "alice", "bob", "carol")
	alice, bob, carol := cs[0], cs[1], cs[2]

	alice.send("SYNC")
	alice.expect("SYNC OK")
	bob.expect("SYNC READ")
	carol.expect("SYNC READ")

	// carol is still waiting for her turn: her SYNC just joins the round.
	carol.send("SYNC")
	quiet(carol)
	checkRound(t, tr, 1, "alice", "bob", "carol")

	alice.send("SYNC FIN")
	bob.expect("SYNC OK")
	// alice's turn has passed: her SYNC opens the next round, in which
	// she goes first. Asking twice changes nothing.
	alice.send("SYNC")
	alice.send("SYNC")
	quiet(alice)
	checkRound(t, tr, 1, "bob", "carol")

	// dave registers mid-round: he reads now and writes last.
	dave := dial(t, addr)
	const abcd = "UPDATE alice@127.0.0.1:7001 bob@127.0.0.1:7002 carol@127.0.0.1:7003 dave@127.0.0.1:7004"
	dave.register("dave", "7004", abcd)
	dave.expect("SYNC READ")
	for _, c := range cs {
		c.expect(abcd)
	}
	cs = append(cs, dave)
	checkRound(t, tr, 1, "bob", "carol", "dave")

	bob.send("SYNC FIN")
	carol.expect("SYNC OK")
	carol.send("SYNC FIN")
	dave.expect("SYNC OK")
	quiet(alice, bob)
	dave.send("SYNC FIN")

	// Round 1 ends, and round 2 starts at once with alice, the one who asked.
	for _, c := range cs {
		c.expect("SYNC END 1")
	}
	alice.expect("SYNC OK")
	bob.expect("SYNC READ")
	carol.expect("SYNC READ")
	dave.expect("SYNC READ")
	checkRound(t, tr, 2, "alice", "bob", "carol", "dave")

	alice.send("SYNC FIN")
	bob.expect("SYNC OK")
	bob.send("SYNC FIN")
	carol.expect("SYNC OK")
	carol.send("SYNC FIN")
	dave.expect("SYNC OK")
	dave.send("SYNC FIN")
	for _, c := range cs {
		c.expect("SYNC END 2")
	}
	// Nobody asked during round 2: no round 3.
	quiet(cs...)
	checkRound(t, tr, 0, "")
}

// TestSyncQueuedOrder checks that several requesters whose turn had passed
// open the next round in the order they asked, the rest following in
// registration order.
func TestSyncQueuedOrder(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	cs := registerAll(t, addr, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := cs[0], cs[1], cs[2], cs[3]

	alice.send("SYNC")
	alice.expect("SYNC OK")
	alice.send("SYNC FIN")
	bob.expect("SYNC READ", "SYNC OK")
	bob.send("SYNC FIN")
	carol.expect("SYNC READ", "SYNC OK")
	// bob, then alice, ask again after their turns.
	bob.send("SYNC")
	quiet(bob)
	alice.send("SYNC")
	quiet(alice)
	carol.send("SYNC FIN")
	dave.expect("SYNC READ", "SYNC OK")
	dave.send("SYNC FIN")
	for _, c := range cs {
		c.expect("SYNC END 1")
	}
	bob.expect("SYNC OK")
	alice.expect("SYNC READ")
	carol.expect("SYNC READ")
	dave.expect("SYNC READ")
	checkRound(t, tr, 2, "bob", "alice", "carol", "dave")
}

// TestSyncAnonymous checks that a bare REGISTER takes part in rounds.
func TestSyncAnonymous(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	alice := registerAll(t, addr, "alice")[0]
	anon := dial(t, addr)
	anon.send("REGISTER")
	anon.expect("REGISTER OK", "UPDATE alice@127.0.0.1:7001")

	alice.send("SYNC")
	alice.expect("SYNC OK")
	anon.expect("SYNC READ")
	checkRound(t, tr, 1, "alice", "anon-1")
	alice.send("SYNC FIN")
	anon.expect("SYNC OK")
	anon.send("SYNC FIN")
	alice.expect("SYNC END 1")
	anon.expect("SYNC END 1")
}

// A round whose participants all report (SYNC FIN clean|wrote) ends with
// the list of those that wrote; one plain SYNC FIN (the seed's), a peer
// leaving in the middle of the order, or an expired lease makes the
// tracker unsure, and the round ends with the seed's SYNC END.
func TestSyncEndWriters(t *testing.T) {
	tr, addr := startTracker(t, Options{Lease: 300 * time.Millisecond})
	cs := registerAll(t, addr, "alice", "bob", "carol")
	alice, bob, carol := cs[0], cs[1], cs[2]
	round := func(fins ...string) {
		t.Helper()
		alice.send("SYNC")
		alice.expect("SYNC OK")
		bob.expect("SYNC READ")
		carol.expect("SYNC READ")
		alice.send(fins[0])
		bob.expect("SYNC OK")
		bob.send(fins[1])
		carol.expect("SYNC OK")
		carol.send(fins[2])
	}
	endAll := func(line string) {
		t.Helper()
		for _, c := range cs {
			c.expect(line)
		}
		quiet(cs...)
	}

	round("SYNC FIN wrote", "SYNC FIN clean", "SYNC FIN clean")
	endAll("SYNC END 1 writers=alice")
	round("SYNC FIN clean", "SYNC FIN wrote", "SYNC FIN wrote")
	endAll("SYNC END 2 writers=bob,carol")
	round("SYNC FIN clean", "SYNC FIN clean", "SYNC FIN clean")
	endAll("SYNC END 3 writers=")
	round("SYNC FIN clean", "SYNC FIN", "SYNC FIN clean") // bob speaks the seed
	endAll("SYNC END 4")
	checkRound(t, tr, 0, "")

	// The lease runs out on bob: what it stored is unknown.
	alice.send("SYNC")
	alice.expect("SYNC OK")
	bob.expect("SYNC READ")
	carol.expect("SYNC READ")
	alice.send("SYNC FIN clean")
	bob.expect("SYNC OK")
	bob.expect("SYNC FAIL expired lease of 300ms expired")
	carol.expect("SYNC OK")
	carol.send("SYNC FIN clean")
	endAll("SYNC END 5")

	// The next round starts sure again; carol leaves before its turn.
	alice.send("SYNC")
	alice.expect("SYNC OK")
	bob.expect("SYNC READ")
	carol.expect("SYNC READ")
	alice.send("SYNC FIN wrote")
	bob.expect("SYNC OK")
	carol.send("QUIT")
	alice.expect("UPDATE alice@127.0.0.1:7001 bob@127.0.0.1:7002")
	bob.expect("UPDATE alice@127.0.0.1:7001 bob@127.0.0.1:7002")
	bob.send("SYNC FIN clean")
	alice.expect("SYNC END 6")
	bob.expect("SYNC END 6")
}
