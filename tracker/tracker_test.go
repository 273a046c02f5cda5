package tracker

import (
	"bufio"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/peerproto"
)

// TestTranscript replays what a person types into nc, byte for byte, and
// checks the exact replies.
func TestTranscript(t *testing.T) {
	_, addr := startTracker(t, Options{})
	c := dial(t, addr)
	steps := []struct {
		in   string
		want []string
	}{
		{"PING\n", []string{"PONG\n"}},
		{"SYNC\r\n", []string{"SYNC FAIL state register first\n"}},
		{"SYNC FIN\n", []string{"SYNC FAIL state register first\n"}},
		{"hello world\n", []string{"HELLO FAIL invalid unknown verb \"hello\"\n"}},
		{"REGISTER bob\n", []string{"REGISTER FAIL invalid usage: REGISTER [<name> <port>]\n"}},
		{"REGISTER bob 0\n", []string{"REGISTER FAIL invalid port \"0\" is not 1-65535\n"}},
		{"REGISTER\r\n", []string{"REGISTER OK\n", "UPDATE\n"}},
		// A blank line gets no reply: the next reply is the PONG.
		{"\r\n", nil},
		{"ping\n", []string{"PONG\n"}},
		{"sync\n", []string{"SYNC OK\n"}},
		{"SYNC\n", []string{"SYNC OK\n"}},
		{"SYNC FIN\r\n", []string{"SYNC END 1\n"}},
		{"SYNC FIN\n", []string{"SYNC FAIL state not the token holder\n"}},
		{"SYNC FIN now\n", []string{"SYNC FAIL invalid usage: SYNC | SYNC FIN [clean|wrote]\n"}},
		{"REGISTER\n", []string{"REGISTER FAIL state already registered\n"}},
		{"REGISTER bob 7000\n", []string{"REGISTER FAIL state already registered\n"}},
		{"\x01\xff junk\n", []string{"%01%EF%BF%BD FAIL invalid unknown verb \"\\x01\\xff\"\n"}},
		{"SYNC\n", []string{"SYNC OK\n"}},
		{"SYNC FIN\n", []string{"SYNC END 2\n"}},
	}
	for _, s := range steps {
		c.raw(s.in)
		for _, w := range s.want {
			got, err := c.readLine(replyTimeout)
			if err != nil || got != w {
				t.Fatalf("after %q: want %q, got %q (%v)", s.in, w, got, err)
			}
		}
	}
	c.raw("QUIT\n")
	c.expectClosed()
}

func TestRegisterUpdateLeave(t *testing.T) {
	tr, addr := startTracker(t, Options{})
	const (
		a   = "alice@127.0.0.1:7001"
		b   = "bob@127.0.0.1:7002"
		c   = "carol@127.0.0.1:7003"
		abc = "UPDATE " + a + " " + b + " " + c
	)
	alice := dial(t, addr)
	alice.register("alice", "7001", "UPDATE "+a)
	bob := dial(t, addr)
	bob.register("bob", "7002", "UPDATE "+a+" "+b)
	alice.expect("UPDATE " + a + " " + b)
	carol := dial(t, addr)
	carol.register("carol", "7003", abc)
	alice.expect(abc)
	bob.expect(abc)

	want := []peerproto.PeerAddr{{Name: "alice", Addr: "127.0.0.1:7001"}, {Name: "bob", Addr: "127.0.0.1:7002"}, {Name: "carol", Addr: "127.0.0.1:7003"}}
	if got := tr.Peers(); !slices.Equal(got, want) {
		t.Fatalf("Peers() = %v, want %v", got, want)
	}

	// An unadvertised participant gets the list but is not in it, and the
	// list did not change, so nobody else hears of it.
	anon := dial(t, addr)
	anon.send("REGISTER")
	anon.expect("REGISTER OK", abc)
	for _, p := range []*client{alice, bob, carol} {
		p.send("PING")
		p.expect("PONG")
	}

	// A clean leave.
	carol.send("QUIT")
	carol.expectClosed()
	for _, p := range []*client{alice, bob, anon} {
		p.expect("UPDATE " + a + " " + b)
	}
	// A closed connection.
	bob.nc.Close()
	alice.expect("UPDATE " + a)
	anon.expect("UPDATE " + a)
	// An unadvertised one leaving changes no list.
	anon.send("QUIT")
	anon.expectClosed()
	alice.send("PING")
	alice.expect("PONG")
	if got := tr.Peers(); len(got) != 1 || got[0].Name != "alice" {
		t.Fatalf("Peers() = %v, want alice only", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	tr, addr := startTracker(t, Options{IdleTimeout: idle})
	alice := dial(t, addr)
	alice.register("alice", "7001", "UPDATE alice@127.0.0.1:7001")
	silent := dial(t, addr)
	silent.register("silent", "7002", "UPDATE alice@127.0.0.1:7001 silent@127.0.0.1:7002")
	unregistered := dial(t, addr)

	// alice keeps alive with PINGs; silent says nothing after registering.
	start := time.Now()
	for {
		alice.send("PING")
		line, err := alice.readLine(replyTimeout)
		if err != nil {
			t.Fatalf("alice: %v", err)
		}
		if line == "UPDATE alice@127.0.0.1:7001\n" {
			break
		}
		if line != "PONG\n" && line != "UPDATE alice@127.0.0.1:7001 silent@127.0.0.1:7002\n" {
			t.Fatalf("alice: unexpected %q", line)
		}
		if time.Since(start) > 10*idle {
			t.Fatal("silent peer was not dropped")
		}
		time.Sleep(idle / 5)
	}
	if d := time.Since(start); d < idle-50*time.Millisecond {
		t.Fatalf("silent peer dropped after %v, before the idle timeout %v", d, idle)
	}
	silent.expectClosed()
	unregistered.expectClosed()
	if got := tr.Peers(); len(got) != 1 || got[0].Name != "alice" {
		t.Fatalf("Peers() = %v, want alice only", got)
	}
}

func TestNameClash(t *testing.T) {
	_, addr := startTracker(t, Options{})
	const (
		a  = "alice@127.0.0.1:7001"
		a2 = "alice2@127.0.0.1:7009"
	)
	first := dial(t, addr)
	first.register("alice", "7001", "UPDATE "+a)

	// Same name, different port: refused, and the connection may retry.
	other := dial(t, addr)
	other.send("REGISTER alice 7009")
	other.expect(`REGISTER FAIL exists name "alice" is taken by 127.0.0.1:7001`)
	other.register("alice2", "7009", "UPDATE "+a+" "+a2)
	first.expect("UPDATE " + a + " " + a2)

	// Same name and port from another IP address: refused too.
	d := net.Dialer{Timeout: replyTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	if nc, err := d.Dial("tcp", addr); err != nil {
		t.Logf("cannot dial from 127.0.0.2, skipping that case: %v", err)
	} else {
		t.Cleanup(func() { nc.Close() })
		far := &client{t: t, nc: nc, r: bufio.NewReader(nc)}
		far.send("REGISTER alice 7001")
		far.expect(`REGISTER FAIL exists name "alice" is taken by 127.0.0.1:7001`)
	}

	// Same name and address: the peer restarted; the new connection
	// replaces the old one, which is closed, in its place in the list:
	// the others hear nothing, the list is the same.
	again := dial(t, addr)
	again.register("alice", "7001", "UPDATE "+a+" "+a2)
	first.expectClosed()
	other.send("PING")
	other.expect("PONG")
}

func TestBusy(t *testing.T) {
	tr, addr := startTracker(t, Options{MaxPeers: 2})
	a := dial(t, addr)
	a.send("REGISTER")
	a.expect("REGISTER OK", "UPDATE")
	b := dial(t, addr)
	b.register("bob", "7002", "UPDATE bob@127.0.0.1:7002")
	a.expect("UPDATE bob@127.0.0.1:7002")
	c := dial(t, addr)
	c.send("REGISTER carol 7003")
	c.expect("REGISTER FAIL busy tracker is full (2 peers)")
	a.send("QUIT")
	a.expectClosed()
	c.register("carol", "7003", "UPDATE bob@127.0.0.1:7002 carol@127.0.0.1:7003")
	b.expect("UPDATE bob@127.0.0.1:7002 carol@127.0.0.1:7003")
	if got := len(tr.Peers()); got != 2 {
		t.Fatalf("%d peers, want 2", got)
	}
}

func TestLineTooLong(t *testing.T) {
	_, addr := startTracker(t, Options{})
	alice := dial(t, addr)
	alice.register("alice", "7001", "UPDATE alice@127.0.0.1:7001")
	bob := dial(t, addr)
	bob.register("bob", "7002", "UPDATE alice@127.0.0.1:7001 bob@127.0.0.1:7002")
	alice.expect("UPDATE alice@127.0.0.1:7001 bob@127.0.0.1:7002")

	// The tracker may close before taking every byte: ignore write errors.
	bob.nc.SetWriteDeadline(time.Now().Add(replyTimeout))
	bob.nc.Write([]byte(strings.Repeat("A", peerproto.MaxLine+100) + "\n"))
	bob.expectClosed()
	alice.expect("UPDATE alice@127.0.0.1:7001")
}

func TestClose(t *testing.T) {
	tr, addr := startTracker(t, Options{Lease: time.Hour})
	alice := dial(t, addr)
	alice.register("alice", "7001", "UPDATE alice@127.0.0.1:7001")
	alice.send("SYNC")
	alice.expect("SYNC OK") // arms a lease timer that Close must stop
	idle := dial(t, addr)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	alice.expectClosed()
	idle.expectClosed()
	if _, err := net.DialTimeout("tcp", addr, replyTimeout); err == nil {
		t.Fatal("still accepting after Close")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Serve(ln); err != nil {
		t.Fatalf("Serve after Close = %v, want nil", err)
	}
}

func TestServeListenerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := New(Options{})
	served := make(chan error, 1)
	go func() { served <- tr.Serve(ln) }()
	// Close the listener behind the tracker's back: Serve reports it.
	ln.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve = %v, want net.ErrClosed", err)
		}
	case <-time.After(replyTimeout):
		t.Fatal("Serve did not return")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t)
}

// smallSendBuffers shrinks the tracker's socket send buffers, so that a peer
// that does not read blocks the tracker's writes after a few kilobytes.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return nc, err
}

// TestSlowPeer checks that a peer that never reads is dropped and never
// delays anybody else's UPDATEs.
func TestSlowPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := serve(t, Options{WriteTimeout: 2 * time.Second}, smallSendBuffers{ln})
	addr := ln.Addr().String()

	slow := dialSmallBuffer(t, addr)
	slow.register("slow", "7000", "UPDATE slow@127.0.0.1:7000")
	alice := dial(t, addr)
	alice.register("alice", "7001", "UPDATE slow@127.0.0.1:7000 alice@127.0.0.1:7001")
	// From now on slow reads nothing more.

	// nextUpdate reads alice's next UPDATE, which must come promptly.
	const prompt = time.Second
	slowGone := false
	nextUpdate := func() string {
		line, err := alice.readLine(prompt)
		if err != nil {
			t.Fatalf("alice waited for an UPDATE: %v", err)
		}
		if !strings.Contains(line, "slow@") {
			slowGone = true
		}
		return line
	}

	// Churn a peer with a long name, so that every join and leave sends
	// slow an UPDATE of some size, until slow's socket and queue are full.
	long := "churn-" + strings.Repeat("x", peerproto.MaxPeerName-6)
	start := time.Now()
	for i := 0; !slowGone; i++ {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("slow peer still registered after %d joins and leaves", i)
		}
		c := dial(t, addr)
		c.send("REGISTER " + long + " 7002")
		c.expect("REGISTER OK")
		if _, err := c.readLine(replyTimeout); err != nil {
			t.Fatalf("churn peer's UPDATE: %v", err)
		}
		for !strings.Contains(nextUpdate(), long) {
		}
		c.send("QUIT")
		// c may still get an UPDATE (slow's departure) before the end.
		for {
			if _, err := c.readLine(replyTimeout); err != nil {
				break
			}
		}
		c.nc.Close()
		for strings.Contains(nextUpdate(), long) {
		}
	}
	if got := tr.Peers(); len(got) != 1 || got[0].Name != "alice" {
		t.Fatalf("Peers() = %v, want alice only", got)
	}
}

// TestIPv6Address checks that an advertised IPv6 address is bracketed.
func TestIPv6Address(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	serve(t, Options{}, ln)
	c := dial(t, ln.Addr().String())
	c.register("alice", "7001", "UPDATE alice@[::1]:7001")
}

// TestLeftExtension: a peer that asks (FEATURES left) is told how each
// advertised peer left: quit (QUIT) or dropped (closed, silent); a peer
// restarting at its address is no leave. A seed client, which never
// asks, sees exactly the seed's lines.
func TestLeftExtension(t *testing.T) {
	const idle = 400 * time.Millisecond
	_, addr := startTracker(t, Options{IdleTimeout: idle})
	const (
		a = "alice@127.0.0.1:7001"
		b = "bob@127.0.0.1:7002"
		c = "carol@127.0.0.1:7003"
		d = "dave@127.0.0.1:7004"
	)
	alice := dial(t, addr) // opts in before registering
	alice.send("FEATURES left frob")
	alice.expect("FEATURES OK left")
	alice.register("alice", "7001", "UPDATE "+a)
	seed := dial(t, addr) // the seed's observer
	seed.send("REGISTER")
	seed.expect("REGISTER OK", "UPDATE "+a)
	bob := dial(t, addr)
	bob.register("bob", "7002", "UPDATE "+a+" "+b)
	late := dial(t, addr) // opts in after registering
	late.register("carol", "7003", "UPDATE "+a+" "+b+" "+c)
	late.send("FEATURES left")
	late.expect("FEATURES OK left")
	late.send("FEATURES left") // asked twice: nothing more to turn on
	late.expect("FEATURES OK")
	alice.expect("UPDATE "+a+" "+b, "UPDATE "+a+" "+b+" "+c)
	seed.expect("UPDATE "+a+" "+b, "UPDATE "+a+" "+b+" "+c)
	bob.expect("UPDATE " + a + " " + b + " " + c)

	// bob restarts at his address: a new registration replaces the old
	// in its place; the list is the same: no LEFT, no UPDATE.
	bob2 := dial(t, addr)
	bob2.register("bob", "7002", "UPDATE "+a+" "+b+" "+c)
	bob.expectClosed()

	// bob's connection closes without QUIT: dropped.
	bob2.nc.Close()
	alice.expect("LEFT bob dropped", "UPDATE "+a+" "+c)
	late.expect("LEFT bob dropped", "UPDATE "+a+" "+c)
	seed.expect("UPDATE " + a + " " + c)

	// dave registers and falls silent: dropped at the idle timeout.
	dave := dial(t, addr)
	dave.register("dave", "7004", "UPDATE "+a+" "+c+" "+d)
	for _, p := range []*client{alice, seed, late} {
		p.expect("UPDATE " + a + " " + c + " " + d)
	}
	// The others keep alive meanwhile, and their readers skip the PONGs.
	stop, pinged := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stop:
				return
			case <-time.After(idle / 4):
			}
			for _, p := range []*client{alice, seed, late} {
				_ = p.nc.SetWriteDeadline(time.Now().Add(replyTimeout))
				_, _ = io.WriteString(p.nc, "PING\n")
			}
		}
	}()
	defer func() { close(stop); <-pinged }()
	expect := func(p *client, want ...string) {
		t.Helper()
		for len(want) > 0 {
			line, err := p.readLine(10 * idle)
			if err != nil {
				t.Fatalf("waiting for %q: %v", want, err)
			}
			if line = strings.TrimSuffix(line, "\n"); line == "PONG" {
				continue
			}
			if line != want[0] {
				t.Fatalf("got %q, want %q", line, want[0])
			}
			want = want[1:]
		}
	}
	expect(alice, "LEFT dave dropped", "UPDATE "+a+" "+c)
	expect(late, "LEFT dave dropped", "UPDATE "+a+" "+c)
	dave.expectClosed()

	// carol (late) quits on purpose.
	late.send("QUIT")
	expect(alice, "LEFT carol quit", "UPDATE "+a)
	// The seed observer saw the same UPDATEs, and no LEFT.
	expect(seed, "UPDATE "+a+" "+c, "UPDATE "+a)
}
