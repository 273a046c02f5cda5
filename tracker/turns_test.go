package tracker

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// turnsClient registers name with turns on, saying whether it holds
// writes, and reads what its registration causes at the others.
func turnsClient(t *testing.T, addr, name, port string, held bool, update string) *client {
	t.Helper()
	c := dial(t, addr)
	c.send("FEATURES turns")
	c.expect("FEATURES OK turns")
	if held {
		c.send("WRITES held")
	} else {
		c.send("WRITES none")
	}
	c.expect("WRITES OK")
	c.register(name, port, update)
	return c
}

// TestTurnsOnlyForAskersAndHolders: with turns on, a round gives a turn
// to the peer that asked and to those that hold writes (or never say:
// the seed's peers); the others read, without a turn. A turn ends the
// holding; a reader that asks joins the round at its end.
func TestTurnsOnlyForAskersAndHolders(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	const (
		a = "alice@127.0.0.1:7001"
		b = "bob@127.0.0.1:7002"
		c = "carol@127.0.0.1:7003"
		d = "dave@127.0.0.1:7004"
	)
	alice := turnsClient(t, addr, "alice", "7001", false, "UPDATE "+a)
	bob := turnsClient(t, addr, "bob", "7002", true, "UPDATE "+a+" "+b)
	alice.expect("UPDATE " + a + " " + b)
	carol := dial(t, addr) // the seed's: never says, so may always hold writes
	carol.register("carol", "7003", "UPDATE "+a+" "+b+" "+c)
	alice.expect("UPDATE " + a + " " + b + " " + c)
	bob.expect("UPDATE " + a + " " + b + " " + c)
	dave := turnsClient(t, addr, "dave", "7004", false, "UPDATE "+a+" "+b+" "+c+" "+d)
	for _, p := range []*client{alice, bob, carol} {
		p.expect("UPDATE " + a + " " + b + " " + c + " " + d)
	}

	alice.send("SYNC")
	alice.expect("SYNC OK")
	for _, p := range []*client{bob, carol, dave} {
		p.expect("SYNC READ")
	}
	checkRound(t, tr, 1, "alice", "bob", "carol")
	alice.send("SYNC FIN clean")
	bob.expect("SYNC OK")
	// bob says held again during its turn: it still holds nothing once
	// its turn ends (the turn stored it), unless it says so after.
	bob.send("WRITES held")
	bob.expect("WRITES OK")
	bob.send("SYNC FIN wrote")
	carol.expect("SYNC OK")
	// dave, a reader without a turn, asks now: it joins at the end.
	dave.send("SYNC")
	quiet(dave)
	checkRound(t, tr, 1, "carol", "dave")
	carol.send("SYNC FIN")
	dave.expect("SYNC OK")
	dave.send("SYNC FIN clean")
	for _, p := range []*client{alice, bob, carol, dave} {
		p.expect("SYNC END 1")
	}
	quiet(alice, bob, carol, dave)

	// Round 2: bob's turn ended its holding; only the seed's carol is
	// owed a turn besides the asker.
	dave.send("SYNC")
	dave.expect("SYNC OK")
	for _, p := range []*client{alice, bob, carol} {
		p.expect("SYNC READ")
	}
	checkRound(t, tr, 2, "dave", "carol")
	dave.send("SYNC FIN clean")
	carol.expect("SYNC OK")
	// A peer that starts to hold writes mid-round waits for the next.
	alice.send("WRITES held")
	alice.expect("WRITES OK")
	checkRound(t, tr, 2, "carol")
	carol.send("SYNC FIN")
	for _, p := range []*client{alice, bob, carol, dave} {
		p.expect("SYNC END 2")
	}

	// Round 3: alice holds writes now.
	carol.send("SYNC")
	carol.expect("SYNC OK")
	checkRound(t, tr, 3, "carol", "alice")
}

// TestWritesNeedsTurns: WRITES without FEATURES turns is refused, and
// answered once turned on, before REGISTER too.
func TestWritesNeedsTurns(t *testing.T) {
	_, addr := startTracker(t, Options{})
	c := dial(t, addr)
	c.send("WRITES held")
	c.expect("WRITES FAIL state ask for FEATURES turns first")
	c.send("FEATURES turns left turns")
	c.expect("FEATURES OK turns left")
	c.send("writes none")
	c.expect("WRITES OK")
	c.send("WRITES maybe")
	c.expect("WRITES FAIL invalid usage: WRITES held|none")
}

// TestMidRoundRegistration: a peer that registers during a round reads
// and, if it may hold writes, has a turn at the end.
func TestMidRoundRegistration(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	const a, b, c = "alice@127.0.0.1:7001", "bob@127.0.0.1:7002", "carol@127.0.0.1:7003"
	alice := turnsClient(t, addr, "alice", "7001", false, "UPDATE "+a)
	alice.send("SYNC")
	alice.expect("SYNC OK")
	bob := turnsClient(t, addr, "bob", "7002", false, "UPDATE "+a+" "+b)
	bob.expect("SYNC READ")
	carol := turnsClient(t, addr, "carol", "7003", true, "UPDATE "+a+" "+b+" "+c)
	carol.expect("SYNC READ")
	checkRound(t, tr, 1, "alice", "carol")
}

// TestDeltas: a peer that asks for deltas gets the list once (PEERS and
// JOINED lines) and then one line per change, a LEFT for every leave;
// the seed's peers keep getting UPDATEs. Asked after REGISTER, the list
// follows the answer.
func TestDeltas(t *testing.T) {
	_, addr := startTracker(t, Options{})
	const a, b, c = "alice@127.0.0.1:7001", "bob@127.0.0.1:7002", "carol@127.0.0.1:7003"
	seed := dial(t, addr)
	seed.register("alice", "7001", "UPDATE "+a)
	bob := dial(t, addr)
	bob.send("FEATURES deltas")
	bob.expect("FEATURES OK deltas")
	bob.send("REGISTER bob 7002")
	bob.expect("REGISTER OK", "PEERS 2", "JOINED "+a, "JOINED "+b)
	seed.expect("UPDATE " + a + " " + b)
	carol := dial(t, addr)
	carol.register("carol", "7003", "UPDATE "+a+" "+b+" "+c)
	carol.send("FEATURES deltas")
	carol.expect("FEATURES OK deltas", "PEERS 3", "JOINED "+a, "JOINED "+b, "JOINED "+c)
	bob.expect("JOINED " + c)
	seed.expect("UPDATE " + a + " " + b + " " + c)

	seed.send("QUIT")
	bob.expect("LEFT alice quit")
	carol.expect("LEFT alice quit")
	carol.nc.Close()
	bob.expect("LEFT carol dropped")
	quiet(bob)
}

// TestManyPeers: some two thousand peers with the longest names, more
// than one line (MaxLine) can list or name. A seed client's UPDATE
// lists those that fit, oldest first, and changes past them send it
// nothing; a peer with deltas sees every one. A SYNC END that would
// name more writers than fit in a line names none.
func TestManyPeers(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a thousand connections (not in -short, nor under the race detector)")
	}
	// The peers send nothing while the others join: no idle timeout.
	_, addr := startTracker(t, Options{IdleTimeout: time.Hour})
	seed := dial(t, addr)
	seed.send("REGISTER")
	seed.expect("REGISTER OK", "UPDATE")
	watcher := dial(t, addr)
	watcher.send("FEATURES deltas")
	watcher.expect("FEATURES OK deltas")
	watcher.send("REGISTER")
	watcher.expect("REGISTER OK", "PEERS 0")

	name := func(i int) string { return fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 59)) }
	// More than fit in a line, as UPDATE entries (name@127.0.0.1:port)
	// and as SYNC END writers (name,).
	n := peerproto.MaxLine/len(name(0)+",") + 10
	var fitted, updates int // entries in the seed's last UPDATE; UPDATEs it got
	// drainSeed reads the seed's lines up to the answer to a PING.
	drainSeed := func() {
		t.Helper()
		seed.send("PING")
		for {
			line, err := seed.readLine(replyTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if line == "PONG\n" {
				return
			}
			if len(line) > peerproto.MaxLine {
				t.Fatalf("UPDATE of %d bytes", len(line))
			}
			fitted = len(strings.Fields(line)) - 1
			updates++
		}
	}
	peers := make([]*client, n)
	for i := range n {
		p := dial(t, addr)
		p.send("FEATURES turns deltas")
		p.expect("FEATURES OK turns deltas")
		p.send(fmt.Sprintf("REGISTER %s %d", name(i), 7000+i))
		p.expect("REGISTER OK", fmt.Sprintf("PEERS %d", i+1))
		for range i + 1 {
			if _, err := p.readLine(replyTimeout); err != nil {
				t.Fatal(err)
			}
		}
		peers[i] = p
		watcher.expect(fmt.Sprintf("JOINED %s@127.0.0.1:%d", name(i), 7000+i))
		drainSeed()
	}
	// The seed's UPDATEs grew until the line was full, then stopped.
	if updates != fitted {
		t.Errorf("the seed got %d UPDATEs for %d peers that fit", updates, fitted)
	}
	// An entry is about 80 bytes.
	if fitted < peerproto.MaxLine/100 || fitted >= n {
		t.Fatalf("the seed's last UPDATE lists %d of %d peers, want those that fit in %d bytes", fitted, n, peerproto.MaxLine)
	}

	// Every peer holds writes, and says it wrote: too many to name.
	watcher.send("SYNC")
	watcher.expect("SYNC OK")
	watcher.send("SYNC FIN clean")
	// The seed's bare REGISTER never says: it may hold writes.
	seed.expect("SYNC READ", "SYNC OK")
	seed.send("SYNC FIN clean")
	for i, p := range peers {
		for _, w := range []string{"JOINED", "SYNC READ", "SYNC OK"} {
			if w == "JOINED" {
				// The JOINED lines of the peers after it.
				for range n - 1 - i {
					if _, err := p.readLine(replyTimeout); err != nil {
						t.Fatal(err)
					}
				}
				continue
			}
			p.expect(w)
		}
		p.send("SYNC FIN wrote")
	}
	watcher.expect("SYNC END 1")
	seed.expect("SYNC END 1")
}
