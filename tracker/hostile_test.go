package tracker

import (
	"bufio"
	"errors"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

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
	c.raw("REGISTER " + strings.Repeat("n", 64<<10) + " 7071\n")
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
			flood(t, addr, 2000)
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
			flood(t, addr, 300)
			c.send("PING")
			c.expect("PONG")
			if after := heapInUse(); after > before+128<<20 {
				t.Fatalf("heap grew from %d to %d bytes with 2300 idle connections", before, after)
			}
		})
	}
}

// flood opens n idle connections to addr, closed when the test ends.
func flood(t *testing.T, addr string, n int) {
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
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
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
