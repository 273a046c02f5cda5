package peer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
)

var (
	hostileSecret = []byte("peer-hostile-test-cluster-secret")
	strangeSecret = []byte("some-other-cluster-secret-entirely")
)

func hostileSecure(t *testing.T, secret []byte) *secure.Config {
	t.Helper()
	c, err := secure.New(secret)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSecureServerRefusesOutsiders: with a cluster secret, a client with
// another secret, a plaintext client and a client that sends requests
// without a proof are all refused before reading or writing a byte of the
// export; a member reads and writes through TLS (GET and PUT bypass the
// buffered writer, so this covers their non-sendfile path).
func TestSecureServerRefusesOutsiders(t *testing.T) {
	export := t.TempDir()
	srvWriteFile(t, export, "secret.txt", "top secret")
	_, addr := srvTestServe(t, ServerOptions{Export: export, Secure: hostileSecure(t, hostileSecret), HandshakeTimeout: time.Second})
	ctx := context.Background()

	// Wrong secret: the peer's refusal, as a FailError.
	_, err := Dial(ctx, addr, ClientOptions{Secure: hostileSecure(t, strangeSecret)})
	var fe *peerproto.FailError
	if !errors.As(err, &fe) || fe.Verb != peerproto.VerbConnect || fe.Code != peerproto.CodeDenied ||
		fe.Text != "not a member of this cluster" {
		t.Fatalf("wrong secret: %v, want CONNECT FAIL denied not a member of this cluster", err)
	}

	// A plaintext peerfs client waits for a greeting: it gets a refusal
	// in plaintext once the server gives up waiting for a TLS handshake.
	_, err = Dial(ctx, addr, ClientOptions{})
	if !errors.As(err, &fe) || fe.Code != peerproto.CodeDenied {
		t.Fatalf("plaintext client: %v, want CONNECT FAIL denied", err)
	}

	// A person with nc typing requests at once.
	c := srvTestDial(t, addr)
	c.send("GET secret.txt\nPUT secret.txt 3\nxyz")
	c.expectPrefix("CONNECT FAIL denied this peer speaks TLS only")
	// Closed, with the unread requests: EOF, or a reset for the bytes the
	// server never read.
	c.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
	if b, err := io.ReadAll(c.r); len(b) > 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("after the refusal: %q, %v", b, err)
	}

	// A TLS client with no secret at all sends requests after the
	// handshake instead of a proof.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, err = hostileSecure(t, strangeSecret).Client(nc, 5*time.Second)
	if !errors.Is(err, secure.ErrNotMember) {
		t.Fatalf("stranger's handshake: %v", err)
	}

	if b, _ := os.ReadFile(filepath.Join(export, "secret.txt")); string(b) != "top secret" {
		t.Fatalf("secret.txt changed: %q", b)
	}

	// A member.
	m, err := Dial(ctx, addr, ClientOptions{Secure: hostileSecure(t, hostileSecret)})
	if err != nil {
		t.Fatalf("member: %v", err)
	}
	defer m.Close()
	var buf bytes.Buffer
	if _, err := m.Get(ctx, "secret.txt", 0, -1, &buf, nil); err != nil || buf.String() != "top secret" {
		t.Fatalf("member GET: %q, %v", buf.String(), err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB: several chunks
	if _, err := m.Put(ctx, "big.bin", bytes.NewReader(big), int64(len(big)), nil); err != nil {
		t.Fatalf("member PUT: %v", err)
	}
	buf.Reset()
	if _, err := m.Get(ctx, "big.bin", 0, -1, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), big) {
		t.Fatalf("member GET big.bin: %d bytes, %v", buf.Len(), err)
	}
}

// TestMaxTransfers: beyond MaxTransfers PUTs and GETs in progress, more
// are refused with busy; the slot frees when the transfer ends.
func TestMaxTransfers(t *testing.T) {
	export := t.TempDir()
	srvWriteFile(t, export, "a.txt", "aaa")
	_, addr := srvTestServe(t, ServerOptions{Export: export, MaxTransfers: 1})
	c1 := srvTestConnect(t, addr)
	c1.send("PUT slow.txt 5\n")
	c1.expect("PUT OK")
	c1.send("he") // the transfer stays in progress

	c2 := srvTestConnect(t, addr)
	if got := c2.roundTrip("PUT other.txt 3"); got != "PUT FAIL busy too many transfers (1)" {
		t.Fatalf("second PUT: %q", got)
	}
	if got := c2.roundTrip("GET a.txt"); got != "GET FAIL busy too many transfers (1)" {
		t.Fatalf("GET: %q", got)
	}
	if got := c2.roundTrip("STAT a.txt"); !strings.HasPrefix(got, "STAT OK f") {
		t.Fatalf("STAT is not a transfer: %q", got)
	}
	c1.send("llo")
	c1.expectPrefix("PUT DONE 5 ")
	if got := c2.get("a.txt"); string(got) != "aaa" {
		t.Fatalf("GET after the slot freed: %q", got)
	}
}

// TestHeaderTimeout: a client trickling a request line is cut once the
// line has taken HeaderTimeout since its first byte, while an idle
// connection (no line begun) is kept.
func TestHeaderTimeout(t *testing.T) {
	_, addr := srvTestServe(t, ServerOptions{HeaderTimeout: 300 * time.Millisecond})
	idle := srvTestConnect(t, addr)

	c := srvTestConnect(t, addr)
	start := time.Now()
	closed := false
	for _, b := range []byte("GET aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
		if err := c.write([]byte{b}); err != nil {
			closed = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !closed {
		c.expectEOF()
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("trickling client kept for %v", el)
	}
	if got := idle.roundTrip("PING"); got != "PONG" {
		t.Fatalf("idle connection: %q", got)
	}
}

// TestLyingSizes: bytes sent beyond a PUT's size are not part of the file:
// they are read as the next request line (and refused).
func TestLyingSizes(t *testing.T) {
	export := t.TempDir()
	_, addr := srvTestServe(t, ServerOptions{Export: export})
	c := srvTestConnect(t, addr)
	c.send("PUT x 5\n")
	c.expect("PUT OK")
	c.send("helloDELETE%20x EXTRA\n")
	c.expectPrefix("PUT DONE 5 ")
	c.expectPrefix("DELETE%20X FAIL unsupported unknown verb")
	if b, _ := os.ReadFile(filepath.Join(export, "x")); string(b) != "hello" {
		t.Fatalf("stored %q, want hello", b)
	}
	if got := c.roundTrip("PING"); got != "PONG" {
		t.Fatalf("after the extra bytes: %q", got)
	}
	// Fewer bytes than declared, then the client hangs up: nothing stored.
	c.send("PUT y 100\n")
	c.expect("PUT OK")
	c.send("short")
	c.nc.Close()
	srvEventually(t, "temp file removed", func() bool { return len(srvTemps(t, export)) == 0 })
	if _, err := os.Stat(filepath.Join(export, "y")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cut upload stored: %v", err)
	}
}

// TestHostileLines: malformed requests, NUL and ".." names and oversized
// names are refused and the connection (or at least the server) stays up.
func TestHostileLines(t *testing.T) {
	export := t.TempDir()
	srvWriteFile(t, export, "a.txt", "aaa")
	_, addr := srvTestServe(t, ServerOptions{Export: export})
	c := srvTestConnect(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"PUT", "PUT FAIL invalid"},
		{"PUT x", "PUT FAIL invalid"},
		{"PUT x -1", "PUT FAIL invalid"},
		{"PUT x 99999999999999999999999", "PUT FAIL invalid"},
		{"GET a.txt 1 2 3", "GET FAIL invalid"},
		{"GET a%00b", "GET FAIL invalid"},
		{"GET a%zz", "GET FAIL invalid"},
		{"PUT a%00b 1", "PUT FAIL invalid"},
		{"GET ../../etc/passwd", "GET FAIL denied"},
		{"PUT ../x 1", "PUT FAIL denied"},
		{"RENAME a.txt ../a.txt", "RENAME FAIL denied"},
		{"GET /etc/passwd", "GET FAIL denied"},
		{"LIST ..", "LIST FAIL denied"},
		{"GET .peerfs-tmp-x", "GET FAIL invalid"},
		{"GET " + strings.Repeat("a", 300), "GET FAIL nametoolong"},
		{"GET " + strings.Repeat("a/", 3000), "GET FAIL invalid"},
		{"SETATTR a.txt size=1 size=2", "SETATTR FAIL invalid"},
		{"\x00\xff\x01 junk", "??? FAIL unsupported"},
		{"FROB", "FROB FAIL unsupported"},
	} {
		if got := c.roundTrip(tc.req); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: got %q, want %q...", srvShort([]byte(tc.req)), got, tc.want)
		}
	}
	if got := c.roundTrip("PING"); got != "PONG" {
		t.Fatalf("after malformed lines: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(export, "a.txt")); string(b) != "aaa" {
		t.Fatalf("a.txt changed: %q", b)
	}
	// A 64 KiB name makes a line over MaxLine: the server cannot answer in
	// step and closes this connection only.
	c.send("GET " + strings.Repeat("n", 64<<10) + "\n")
	c.expectEOF()
	if got := srvTestConnect(t, addr).get("a.txt"); string(got) != "aaa" {
		t.Fatalf("after a 64 KiB line: %q", got)
	}
}

// hostileFlood opens n idle connections to addr and closes them at the end
// of the test.
func hostileFlood(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(2*n+1000) {
		rl.Cur = min(rl.Max, uint64(2*n+1000))
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		if rl.Cur < uint64(2*n+200) {
			t.Skipf("RLIMIT_NOFILE is %d: too low for %d connections on both ends", rl.Cur, n)
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
	return conns
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestIdleFloodSecure: 2000 idle connections that never start TLS take no
// connection slot; a member is served meanwhile; memory stays bounded.
func TestIdleFloodSecure(t *testing.T) {
	export := t.TempDir()
	srvWriteFile(t, export, "a.txt", "aaa")
	_, addr := srvTestServe(t, ServerOptions{Export: export, MaxConns: 16,
		Secure: hostileSecure(t, hostileSecret), HandshakeTimeout: 5 * time.Second})
	before := heapInUse()
	hostileFlood(t, addr, 2000)
	ctx := context.Background()
	m, err := Dial(ctx, addr, ClientOptions{Secure: hostileSecure(t, hostileSecret)})
	if err != nil {
		t.Fatalf("member during the flood: %v", err)
	}
	defer m.Close()
	var buf bytes.Buffer
	if _, err := m.Get(ctx, "a.txt", 0, -1, &buf, nil); err != nil || buf.String() != "aaa" {
		t.Fatalf("member GET during the flood: %q, %v", buf.String(), err)
	}
	// Generous: a goroutine and a few small buffers per connection, on
	// both ends (the flooding clients live in this process too).
	if after := heapInUse(); after > before+128<<20 {
		t.Fatalf("heap grew from %d to %d bytes with 2000 idle connections", before, after)
	}
}

// TestIdleFloodPlain: against a plaintext server, MaxConns applies: the
// flood beyond it is refused with busy at once, memory stays bounded, and
// the server serves again as soon as the flood goes.
func TestIdleFloodPlain(t *testing.T) {
	export := t.TempDir()
	srvWriteFile(t, export, "a.txt", "aaa")
	_, addr := srvTestServe(t, ServerOptions{Export: export, MaxConns: 64})
	before := heapInUse()
	conns := hostileFlood(t, addr, 2000)
	refused := 0
	for _, c := range conns[1000:] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(c, 200))
		if strings.HasPrefix(string(b), "CONNECT FAIL busy too many connections (64)") {
			refused++
		}
	}
	if refused != 1000 {
		t.Fatalf("%d of the last 1000 flood connections refused busy, want all", refused)
	}
	if after := heapInUse(); after > before+128<<20 {
		t.Fatalf("heap grew from %d to %d bytes with 2000 idle connections", before, after)
	}
	for _, c := range conns {
		c.Close()
	}
	srvEventually(t, "served after the flood", func() bool {
		c, err := Dial(context.Background(), addr, ClientOptions{})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}
