package tracker

import (
	"bufio"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
)

var (
	hostileSecret = []byte("tracker-hostile-test-cluster-secret")
	strangeSecret = []byte("another-cluster-secret-altogether")
)

func mustSecure(t *testing.T, secret []byte) *secure.Config {
	t.Helper()
	c, err := secure.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dialSecure connects with secret and completes the membership proofs.
func dialSecure(t *testing.T, addr string, secret []byte) (*client, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, replyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := mustSecure(t, secret).Client(nc, replyTimeout)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { sc.Close() })
	return &client{t: t, nc: sc, r: bufio.NewReader(sc)}, nil
}

// TestSecureTrackerRefusesOutsiders: with a cluster secret, plaintext
// clients and clients with another secret get "REGISTER FAIL denied" and
// are never listed; members register as usual, over TLS.
func TestSecureTrackerRefusesOutsiders(t *testing.T) {
	_, addr := startTracker(t, Options{Secure: mustSecure(t, hostileSecret), HandshakeTimeout: time.Second})

	plain := dial(t, addr)
	plain.send("REGISTER mallory 7071")
	plain.expect("REGISTER FAIL denied this tracker speaks TLS only: connect with the cluster secret (PEERFS_SECRET)")
	plain.expectClosed()

	// Silent plaintext client (waiting for something): refused too.
	silent := dial(t, addr)
	silent.expect("REGISTER FAIL denied this tracker speaks TLS only: connect with the cluster secret (PEERFS_SECRET)")

	_, err := dialSecure(t, addr, strangeSecret)
	var re *secure.RefusedError
	if !errors.As(err, &re) || re.Line != "REGISTER FAIL denied not a member of this cluster" {
		t.Fatalf("wrong secret: %v", err)
	}

	m, err := dialSecure(t, addr, hostileSecret)
	if err != nil {
		t.Fatalf("member: %v", err)
	}
	m.register("alice", "7071", "UPDATE alice@127.0.0.1:7071")
	m.send("SYNC")
	m.expect("SYNC OK")
	m.send("SYNC FIN")
	m.expect("SYNC END 1")
}

// TestTrackerHostileLines: malformed lines, NUL bytes, oversized names and
// a 64 KiB line; the tracker answers or drops that connection, and serves
// others.
func TestTrackerHostileLines(t *testing.T) {
	_, addr := startTracker(t, Options{})
	c := dial(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"REGISTER a b c d", "REGISTER FAIL invalid"},
		{"REGISTER alice 99999999", "REGISTER FAIL invalid"},
		{"REGISTER alice -1", "REGISTER FAIL invalid"},
		{"REGISTER al%00ice 7071", "REGISTER FAIL invalid"},
		{"REGISTER al\x00ice 7071", "REGISTER FAIL invalid"},
		{"REGISTER ../../x 7071", "REGISTER FAIL invalid"},
		{"REGISTER " + strings.Repeat("n", 5000) + " 7071", "REGISTER FAIL invalid"},
		{"SYNC FIN", "SYNC FAIL state"},
		{"SYNC", "SYNC FAIL state"},
		{"\xff\xfe", "%EF%BF%BD%EF%BF%BD FAIL invalid"}, // invalid UTF-8 echoed as U+FFFD
		{"PUT x 5", "PUT FAIL invalid"},
	} {
		line, err := c.readLineAfter(tc.req)
		if err != nil || !strings.HasPrefix(line, tc.want) {
			t.Errorf("%.40q: got %q (%v), want %q...", tc.req, line, err, tc.want)
		}
	}
	c.send("PING")
	c.expect("PONG")
	c.raw("REGISTER " + strings.Repeat("n", peerproto.MaxLine) + " 7071\n")
	c.expectClosed()
	d := dial(t, addr)
	d.register("bob", "7072", "UPDATE bob@127.0.0.1:7072")
}

// readLineAfter sends req and returns the reply line without "\n".
func (c *client) readLineAfter(req string) (string, error) {
	c.t.Helper()
	c.send(req)
	line, err := c.readLine(replyTimeout)
	return strings.TrimSuffix(line, "\n"), err
}

// TestTrackerIdleFlood: 2000 idle connections, more than the tracker's
// connection limit: it evicts the oldest unregistered ones, so a peer
// still registers meanwhile, and memory stays bounded. Both in plaintext
// and with a secret (where the flood never completes a handshake).
func TestTrackerIdleFlood(t *testing.T) {
	for _, secret := range [][]byte{nil, hostileSecret} {
		name := "plain"
		if secret != nil {
			name = "secure"
		}
		t.Run(name, func(t *testing.T) {
			opts := Options{MaxPeers: 64} // connection limit 3*64+8 = 200
			if secret != nil {
				opts.Secure = mustSecure(t, secret)
			}
			_, addr := startTracker(t, opts)
			before := heapInUse()
			// From other addresses than the member's: a source over its
			// cap of pending handshakes is refused, whoever it is.
			for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
				flood(t, addr, from, 500)
			}
			var c *client
			if secret != nil {
				var err error
				if c, err = dialSecure(t, addr, secret); err != nil {
					t.Fatalf("member during the flood: %v", err)
				}
			} else {
				c = dial(t, addr)
			}
			c.register("alice", "7071", "UPDATE alice@127.0.0.1:7071")
			// The registered peer is never evicted by newer strangers.
			flood(t, addr, "127.0.0.6", 300)
			c.send("PING")
			c.expect("PONG")
			if after := heapInUse(); after > before+128<<20 {
				t.Fatalf("heap grew from %d to %d bytes with 2300 idle connections", before, after)
			}
		})
	}
}

// flood opens n idle connections to addr from local address from,
// closed when the test ends.
func flood(t *testing.T, addr, from string, n int) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(2*n+1000) {
		rl.Cur = min(rl.Max, uint64(2*n+1000))
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		if rl.Cur < uint64(n+500) {
			t.Skipf("RLIMIT_NOFILE is %d: too low for %d connections", rl.Cur, n)
		}
	}
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// dialFrom connects to addr from local address from.
func dialFrom(t *testing.T, addr, from string) *client {
	t.Helper()
	d := net.Dialer{Timeout: replyTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// closedWithin reports whether the tracker closed c within wait: a read
// sees EOF or a reset rather than a timeout.
func (c *client) closedWithin(wait time.Duration) bool {
	_, err := c.readLine(wait)
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// eventually polls cond for a few seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTrackerPendingPerSource: beyond MaxPendingPerSource connections in
// the handshake from one address, more are closed at once; other
// addresses, and members, are not affected.
func TestTrackerPendingPerSource(t *testing.T) {
	tr, addr := startTracker(t, Options{Secure: mustSecure(t, hostileSecret), HandshakeTimeout: time.Minute, MaxPendingPerSource: 3})
	var silent []*client
	for range 3 {
		silent = append(silent, dialFrom(t, addr, "127.0.0.2"))
	}
	eventually(t, "3 pending", func() bool { return tr.gate.Stats().Pending == 3 })
	if !dialFrom(t, addr, "127.0.0.2").closedWithin(2 * time.Second) {
		t.Fatal("a 4th silent connection from 127.0.0.2 was kept")
	}
	other := dialFrom(t, addr, "127.0.0.3")
	eventually(t, "4 pending", func() bool { return tr.gate.Stats().Pending == 4 })
	if other.closedWithin(100*time.Millisecond) || silent[0].closedWithin(100*time.Millisecond) {
		t.Fatal("a connection within the limit was closed")
	}
	m, err := dialSecure(t, addr, hostileSecret)
	if err != nil {
		t.Fatalf("member: %v", err)
	}
	m.register("alice", "7071", "UPDATE alice@127.0.0.1:7071")
	if st := tr.gate.Stats(); st.Pending != 4 || st.Refused[secure.ReasonPerSource] != 1 || st.RefusedTotal() != 1 {
		t.Fatalf("gate: %+v", st)
	}
}

// TestTrackerHandshakeDeadline: a client that starts a TLS handshake and
// stalls is cut after HandshakeTimeout, and counted.
func TestTrackerHandshakeDeadline(t *testing.T) {
	tr, addr := startTracker(t, Options{Secure: mustSecure(t, hostileSecret), HandshakeTimeout: 300 * time.Millisecond})
	c := dial(t, addr)
	c.raw("\x16\x03\x01") // the start of a ClientHello, and nothing more
	start := time.Now()
	if !c.closedWithin(5 * time.Second) {
		t.Fatal("a stalled handshake was kept")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("a stalled handshake was kept %v", el)
	}
	eventually(t, "the refusal counted", func() bool { return tr.gate.Stats().Refused[secure.ReasonHandshake] == 1 })
}

// TestTrackerRefusalsLogBounded: floods of strangers (plaintext clients,
// wrong secrets, connections over the per-source cap) and, without a
// secret, of idle connections over the connection limit are logged at a
// bounded rate, one summary line per interval, and the lines account for
// every refusal.
func TestTrackerRefusalsLogBounded(t *testing.T) {
	const interval = 100 * time.Millisecond
	t.Run("secure", func(t *testing.T) {
		var log testLog
		tr, addr := startTrackerLog(t, Options{Secure: mustSecure(t, hostileSecret), HandshakeTimeout: 5 * time.Second,
			MaxPendingPerSource: 4, RefusalLogInterval: interval}, &log)
		const plain, strangers = 600, 20
		start := time.Now()
		var wg sync.WaitGroup
		for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
			wg.Go(func() {
				d := net.Dialer{Timeout: replyTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
				for range plain / 4 {
					nc, err := d.Dial("tcp", addr)
					if err != nil {
						t.Error(err)
						return
					}
					nc.Write([]byte("REGISTER mallory 7071\n"))
					nc.Close()
				}
				for range strangers / 4 {
					nc, err := net.DialTimeout("tcp", addr, replyTimeout)
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := mustSecure(t, strangeSecret).Client(nc, replyTimeout); !errors.Is(err, secure.ErrNotMember) {
						t.Errorf("stranger: %v", err)
					}
				}
			})
		}
		wg.Wait()
		eventually(t, "every refusal counted", func() bool { return tr.gate.Stats().RefusedTotal() == plain+strangers })
		elapsed := time.Since(start)
		st := tr.gate.Stats()
		if err := tr.Close(); err != nil { // logs the last summary
			t.Fatal(err)
		}
		lines, counted := log.refusals(t)
		if counted != plain+strangers {
			t.Errorf("the log accounts for %d refusals, want %d (%+v)", counted, plain+strangers, st)
		}
		if bound := 3 + int(elapsed/interval); lines > bound {
			t.Errorf("%d refusal lines in %v, want at most %d", lines, elapsed, bound)
		}
		if st.Refused[secure.ReasonNotMember] != strangers {
			t.Errorf("not-member refusals: %+v", st)
		}
	})
	t.Run("plain", func(t *testing.T) {
		var log testLog
		tr, addr := startTrackerLog(t, Options{MaxPeers: 4, RefusalLogInterval: interval}, &log) // 20 connections
		start := time.Now()
		flood(t, addr, "127.0.0.2", 300)
		eventually(t, "every eviction counted", func() bool { return tr.gate.Stats().Refused[secure.ReasonEvicted] == 280 })
		elapsed := time.Since(start)
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		lines, counted := log.refusals(t)
		if counted != 280 {
			t.Errorf("the log accounts for %d evictions, want 280", counted)
		}
		if bound := 3 + int(elapsed/interval); lines > bound {
			t.Errorf("%d refusal lines in %v, want at most %d", lines, elapsed, bound)
		}
	})
}
