package secure

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	secretA = []byte("0123456789abcdef-cluster-a")
	secretB = []byte("0123456789abcdef-cluster-b")
)

func mustNew(t *testing.T, secret []byte) *Config {
	t.Helper()
	c, err := New(secret)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

type result struct {
	conn net.Conn
	err  error
}

// serve runs Server on sc in a goroutine; on a refusal it writes the
// protocol's refusal line like the peer server does.
func serve(cfg *Config, sc net.Conn) chan result {
	ch := make(chan result, 1)
	go func() {
		c, err := cfg.Server(sc, 5*time.Second)
		if err == nil {
			io.WriteString(c, "CONNECT OK\n")
		} else if c != nil {
			io.WriteString(c, "CONNECT FAIL denied not a member of this cluster\n")
			c.Close()
		}
		ch <- result{c, err}
	}()
	return ch
}

func TestMembersConnect(t *testing.T) {
	srv, cli := mustNew(t, secretA), mustNew(t, secretA)
	cc, sc := pair(t)
	done := serve(srv, sc)
	c, err := cli.Client(cc, 5*time.Second)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "CONNECT OK\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	if tc, ok := c.(*tls.Conn); !ok || tc.ConnectionState().Version != tls.VersionTLS13 {
		t.Fatalf("not a TLS 1.3 connection: %T", c)
	}
	// Data flows both ways, in large amounts (io.Copy through records).
	payload := strings.Repeat("x", 1<<20)
	go io.WriteString(c, payload)
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(r.conn, got); err != nil || string(got) != payload {
		t.Fatalf("payload: %v", err)
	}
}

func TestWrongSecretRefused(t *testing.T) {
	srv, cli := mustNew(t, secretA), mustNew(t, secretB)
	cc, sc := pair(t)
	done := serve(srv, sc)
	_, err := cli.Client(cc, 5*time.Second)
	var re *RefusedError
	if !errors.As(err, &re) || re.Line != "CONNECT FAIL denied not a member of this cluster" {
		t.Fatalf("client error %v, want the refusal line", err)
	}
	if !errors.Is(err, ErrNotMember) {
		t.Fatalf("refusal does not match ErrNotMember: %v", err)
	}
	if r := <-done; !errors.Is(r.err, ErrNotMember) {
		t.Fatalf("server error %v, want ErrNotMember", r.err)
	}
}

// A server without the secret cannot fool a member client either.
func TestImpostorServerRejected(t *testing.T) {
	cli := mustNew(t, secretA)
	impostor := mustNew(t, secretB)
	cc, sc := pair(t)
	go func() {
		// Accept any client proof and send one of its own.
		tc := tls.Server(sc, impostor.server)
		if tc.Handshake() != nil {
			return
		}
		readProof(tc)
		mac, _ := impostor.proof(tc, roleServer)
		writeProof(tc, mac)
	}()
	if _, err := cli.Client(cc, 5*time.Second); !errors.Is(err, ErrNotMember) {
		t.Fatalf("client error %v, want ErrNotMember", err)
	}
}

// A client that completes TLS but sends no proof (a stranger speaking the
// protocol at once) is refused.
func TestNoProofRefused(t *testing.T) {
	srv := mustNew(t, secretA)
	cc, sc := pair(t)
	done := serve(srv, sc)
	tc := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, Certificates: srv.client.Certificates})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tc, "GET secret.txt\n")
	line, _ := bufio.NewReader(tc).ReadString('\n')
	if line != "CONNECT FAIL denied not a member of this cluster\n" {
		t.Fatalf("got %q", line)
	}
	if r := <-done; !errors.Is(r.err, ErrNotMember) {
		t.Fatalf("server error %v", r.err)
	}
}

// Without a client certificate there is no TLS session at all.
func TestNoClientCertRefused(t *testing.T) {
	srv := mustNew(t, secretA)
	cc, sc := pair(t)
	done := serve(srv, sc)
	tc := tls.Client(cc, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	tc.Handshake()
	io.WriteString(tc, "GET x\n")
	if _, err := bufio.NewReader(tc).ReadString('\n'); err == nil {
		t.Fatal("read a line without a client certificate")
	}
	if r := <-done; r.err == nil {
		t.Fatal("server accepted a client without a certificate")
	}
}

func TestPlaintextClient(t *testing.T) {
	srv := mustNew(t, secretA)
	cc, sc := pair(t)
	done := serve(srv, sc)
	io.WriteString(cc, "REGISTER alice 7071\n")
	r := <-done
	if !errors.Is(r.err, ErrPlaintext) || r.conn != sc {
		t.Fatalf("server: %v, conn %v", r.err, r.conn)
	}
}

// A man in the middle without the secret terminates TLS on both sides and
// relays the member's proof: the server refuses it, since it was made for
// the other session.
func TestRelayedProofRefused(t *testing.T) {
	srv, cli := mustNew(t, secretA), mustNew(t, secretA)
	mitm := mustNew(t, secretB) // only for its certificates
	cToM, mFromC := pair(t)
	mToS, sFromM := pair(t)
	done := serve(srv, sFromM)
	relayed := make(chan string, 1)
	go func() {
		up := tls.Server(mFromC, mitm.server)
		down := tls.Client(mToS, mitm.client)
		if up.Handshake() != nil || down.Handshake() != nil {
			relayed <- "handshake failed"
			return
		}
		// Forward the member's proof, then whatever the server answers.
		line, _ := bufio.NewReader(io.LimitReader(up, 200)).ReadString('\n')
		io.WriteString(down, line)
		answer, _ := bufio.NewReader(down).ReadString('\n')
		io.WriteString(up, answer)
		relayed <- answer
	}()
	_, err := cli.Client(cToM, 5*time.Second)
	if !errors.Is(err, ErrNotMember) {
		t.Fatalf("client through the relay: %v, want a refusal", err)
	}
	if r := <-done; !errors.Is(r.err, ErrNotMember) {
		t.Fatalf("server: %v, want ErrNotMember", r.err)
	}
	if a := <-relayed; !strings.HasPrefix(a, "CONNECT FAIL denied") {
		t.Fatalf("relay got %q", a)
	}
}

// A client that connects and says nothing gets the plaintext verdict after
// the wait, and one that stalls mid-handshake is dropped at the timeout.
func TestHandshakeDeadlines(t *testing.T) {
	srv := mustNew(t, secretA)
	cc, sc := pair(t)
	start := time.Now()
	_, err := srv.Server(sc, 300*time.Millisecond)
	if !errors.Is(err, ErrPlaintext) || time.Since(start) > 2*time.Second {
		t.Fatalf("silent client: %v after %v", err, time.Since(start))
	}
	cc2, sc2 := pair(t)
	cc2.Write([]byte{tlsHandshakeRecord, 3}) // a ClientHello that never completes
	start = time.Now()
	if _, err := srv.Server(sc2, 300*time.Millisecond); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("stalled handshake: %v after %v", err, time.Since(start))
	}
	_ = cc
}

func TestNewRejectsShortSecret(t *testing.T) {
	if _, err := New([]byte("short")); err == nil {
		t.Fatal("accepted a 5-byte secret")
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	if err := os.WriteFile(p, []byte("  s3cret-s3cret-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := ReadSecretFile(p)
	if err != nil || string(b) != "s3cret-s3cret-s3cret" {
		t.Fatalf("got %q, %v", b, err)
	}
	// Owner-only modes, as ssh wants for private keys: anything a group or
	// everyone may read or write is refused, saying how to fix it.
	for _, mode := range []os.FileMode{0o600, 0o400, 0o700} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadSecretFile(p); err != nil {
			t.Errorf("mode %04o refused: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o640, 0o660, 0o644, 0o604, 0o620, 0o610, 0o602} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadSecretFile(p)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("mode %04o lets other users", mode)) ||
			!strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Errorf("mode %04o: %v, want a refusal naming the mode and the fix", mode, err)
		}
	}
}

// TestClusterID: a cluster's ID depends on its secret only, and says
// nothing of it.
func TestClusterID(t *testing.T) {
	a1, err := New(secretA)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := New(bytes.Clone(secretA))
	b, _ := New(secretB)
	if a1.ClusterID() != a2.ClusterID() || a1.ClusterID() == b.ClusterID() || len(a1.ClusterID()) != 24 {
		t.Errorf("IDs %q %q %q", a1.ClusterID(), a2.ClusterID(), b.ClusterID())
	}
}
