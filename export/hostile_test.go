package export

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
	"golang.org/x/sys/unix"
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
	writeFile(t, export, "secret.txt", "top secret")
	_, addr := testServe(t, Options{Export: export, Secure: hostileSecure(t, hostileSecret), HandshakeTimeout: time.Second})
	ctx := context.Background()

	// Wrong secret: the peer's refusal, as a FailError.
	_, err := peer.Dial(ctx, addr, peer.ClientOptions{Secure: hostileSecure(t, strangeSecret)})
	var fe *peerproto.FailError
	if !errors.As(err, &fe) || fe.Verb != peerproto.VerbConnect || fe.Code != peerproto.CodeDenied ||
		fe.Text != "not a member of this cluster" {
		t.Fatalf("wrong secret: %v, want CONNECT FAIL denied not a member of this cluster", err)
	}

	// A plaintext peerfs client waits for a greeting: it gets a refusal
	// in plaintext once the server gives up waiting for a TLS handshake.
	_, err = peer.Dial(ctx, addr, peer.ClientOptions{})
	if !errors.As(err, &fe) || fe.Code != peerproto.CodeDenied {
		t.Fatalf("plaintext client: %v, want CONNECT FAIL denied", err)
	}

	// A person with nc typing requests at once.
	c := testDial(t, addr)
	c.send("GET secret.txt\nPUT secret.txt 3\nxyz")
	c.expectPrefix("CONNECT FAIL denied this peer speaks TLS only")
	// Closed, with the unread requests: EOF, or a reset for the bytes the
	// server never read.
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
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
	m, err := peer.Dial(ctx, addr, peer.ClientOptions{Secure: hostileSecure(t, hostileSecret)})
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
	writeFile(t, export, "a.txt", "aaa")
	_, addr := testServe(t, Options{Export: export, MaxTransfers: 1})
	c1 := testConnect(t, addr)
	c1.send("PUT slow.txt 5\n")
	c1.expect("PUT OK")
	c1.send("he") // the transfer stays in progress

	c2 := testConnect(t, addr)
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
	_, addr := testServe(t, Options{HeaderTimeout: 300 * time.Millisecond})
	idle := testConnect(t, addr)

	c := testConnect(t, addr)
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
	_, addr := testServe(t, Options{Export: export})
	c := testConnect(t, addr)
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
	eventually(t, "temp file removed", func() bool { return len(tempFiles(t, export)) == 0 })
	if _, err := os.Stat(filepath.Join(export, "y")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cut upload stored: %v", err)
	}
}

// TestHostileLines: malformed requests, NUL and ".." names and oversized
// names are refused and the connection (or at least the server) stays up.
func TestHostileLines(t *testing.T) {
	export := t.TempDir()
	writeFile(t, export, "a.txt", "aaa")
	_, addr := testServe(t, Options{Export: export})
	c := testConnect(t, addr)
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
		{"GET " + strings.Repeat("a/", 3000), "GET FAIL notfound"}, // deeper than PATH_MAX is fine
		{"GET " + strings.Repeat("a/", peerproto.MaxName/2+1), "GET FAIL nametoolong name longer than 16384 bytes"},
		{"SETATTR a.txt size=1 size=2", "SETATTR FAIL invalid"},
		{"\x00\xff\x01 junk", "??? FAIL unsupported"},
		{"FROB", "FROB FAIL unsupported"},
	} {
		if got := c.roundTrip(tc.req); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: got %q, want %q...", shortLine([]byte(tc.req)), got, tc.want)
		}
	}
	if got := c.roundTrip("PING"); got != "PONG" {
		t.Fatalf("after malformed lines: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(export, "a.txt")); string(b) != "aaa" {
		t.Fatalf("a.txt changed: %q", b)
	}
	// A name as long as MaxLine makes a line over it: the server cannot
	// answer in step and closes this connection only.
	c.send("GET " + strings.Repeat("n", peerproto.MaxLine) + "\n")
	c.expectEOF()
	if got := testConnect(t, addr).get("a.txt"); string(got) != "aaa" {
		t.Fatalf("after a line over MaxLine: %q", got)
	}
}

// hostileFlood opens n idle connections to addr from local address from
// ("" for any) and closes them at the end of the test.
func hostileFlood(t *testing.T, addr, from string, n int) []net.Conn {
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
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	for range n {
		c, err := d.Dial("tcp", addr)
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

// TestIdleFloodSecure: 2000 idle connections from four addresses that
// never start TLS take no connection slot, and no more than
// MaxPendingPerSource each are kept open; a member is served meanwhile;
// memory stays bounded.
func TestIdleFloodSecure(t *testing.T) {
	export := t.TempDir()
	writeFile(t, export, "a.txt", "aaa")
	s, addr := testServe(t, Options{Export: export, MaxConns: 16,
		Secure: hostileSecure(t, hostileSecret), HandshakeTimeout: 5 * time.Second})
	before := heapInUse()
	for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		hostileFlood(t, addr, from, 500)
	}
	eventually(t, "the flood accepted", func() bool {
		st := s.gate.Stats()
		return uint64(st.Pending)+st.RefusedTotal() >= 2000
	})
	if st := s.gate.Stats(); st.Pending > 4*secure.DefaultMaxPendingPerSource || st.Refused[secure.ReasonPerSource] == 0 {
		t.Errorf("gate after the flood: %+v, want at most %d pending", st, 4*secure.DefaultMaxPendingPerSource)
	}
	ctx := context.Background()
	m, err := peer.Dial(ctx, addr, peer.ClientOptions{Secure: hostileSecure(t, hostileSecret)})
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
	writeFile(t, export, "a.txt", "aaa")
	_, addr := testServe(t, Options{Export: export, MaxConns: 64})
	before := heapInUse()
	conns := hostileFlood(t, addr, "", 2000)
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
	eventually(t, "served after the flood", func() bool {
		c, err := peer.Dial(context.Background(), addr, peer.ClientOptions{})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// TestSetuidFromClients: a client cannot plant a setuid or setgid program
// or directory: SETATTR mode=, MKDIR <mode>, a PUT replacing a setuid
// file and a SETATTR size= of one all end without the bits, as on a nosuid
// export; sticky bits stay. With AllowSetuid they are kept, but for a
// PUT's new content (TestPutDropsSetuid).
func TestSetuidFromClients(t *testing.T) {
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	for _, allow := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "AllowSetuid"}[allow], func(t *testing.T) {
			export := t.TempDir()
			for _, name := range []string{"chmod", "put", "inline", "truncate", "touch"} {
				p := writeFile(t, export, name, "#!/bin/sh\nid\n")
				if name != "chmod" {
					if err := os.Chmod(p, 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := os.Mkdir(filepath.Join(export, "dir"), 0o755); err != nil {
				t.Fatal(err)
			}
			_, addr := testServe(t, Options{Export: export, AllowSetuid: allow})
			c := testConnect(t, addr)
			// kept returns want as is with AllowSetuid, and without its
			// setuid and setgid bits otherwise.
			kept := func(want os.FileMode) os.FileMode {
				if allow {
					return want
				}
				return want &^ (os.ModeSetuid | os.ModeSetgid)
			}
			wantReply := func(req, prefix string) {
				t.Helper()
				if got := c.roundTrip(req); !strings.HasPrefix(got, prefix) {
					t.Errorf("%s: %q, want %q...", req, got, prefix)
				}
			}
			if allow {
				wantReply("SETATTR chmod mode=06755", "SETATTR OK f 06755 ")
			} else {
				wantReply("SETATTR chmod mode=06755", "SETATTR OK f 0755 ")
			}
			wantReply("SETATTR dir mode=03775", map[bool]string{false: "SETATTR OK d 01775 ", true: "SETATTR OK d 03775 "}[allow])
			wantReply("MKDIR new 02777", "MKDIR OK")
			wantReply("MKDIR newsuid 04755", "MKDIR OK")
			wantReply("MKDIR tmp 01777", "MKDIR OK")
			if r := c.put("put", []byte("#!/bin/sh\nrm -rf /\n")); !strings.HasPrefix(r, "PUT DONE ") {
				t.Fatal(r)
			}
			c.send("PUT inline 5 async inline\nhello")
			c.expectPrefix("PUT DONE 5 ")
			wantReply("SETATTR truncate size=3", "SETATTR OK f ")
			wantReply("SETATTR touch mtime=1000000000", "SETATTR OK f 06755 ")

			for name, want := range map[string]os.FileMode{
				"chmod": kept(0o755 | os.ModeSetuid | os.ModeSetgid),
				"dir":   kept(0o775 | os.ModeDir | os.ModeSetgid | os.ModeSticky),
				// The mode arrives exactly, the umask (022) does not trim
				// it; setgid only where allowed.
				"new":      map[bool]os.FileMode{false: 0o777 | os.ModeDir, true: 0o777 | os.ModeDir | os.ModeSetgid}[allow],
				"newsuid":  kept(0o755 | os.ModeDir | os.ModeSetuid),
				"tmp":      0o777 | os.ModeDir | os.ModeSticky,
				"put":      0o755,
				"inline":   0o755,
				"truncate": kept(0o755 | os.ModeSetuid | os.ModeSetgid),
				// No new content, no mode asked: the owner's bits stay.
				"touch": 0o755 | os.ModeSetuid | os.ModeSetgid,
			} {
				fi, err := os.Stat(filepath.Join(export, name))
				if err != nil || fi.Mode() != want {
					t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, want)
				}
			}
		})
	}
}

// hostileDialFrom connects to addr from local address from.
func hostileDialFrom(t *testing.T, addr, from string) *testClient {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &testClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// hostileClosed reports whether the server closed c's connection within
// wait: a read sees EOF (or a reset) rather than a timeout.
func hostileClosed(c *testClient, wait time.Duration) bool {
	c.nc.SetReadDeadline(time.Now().Add(wait))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestPendingLimits: connections still in the handshake are capped per
// source address (the excess closed at once) and in all (a new one evicts
// the oldest), so a few addresses cannot pile up sockets; a member from
// elsewhere is served meanwhile, and the refusals are counted.
func TestPendingLimits(t *testing.T) {
	export := t.TempDir()
	writeFile(t, export, "a.txt", "aaa")
	s, addr := testServe(t, Options{Export: export, Secure: hostileSecure(t, hostileSecret),
		HandshakeTimeout: time.Minute, MaxPendingPerSource: 3, MaxPending: 5})
	var first []*testClient
	for range 3 {
		first = append(first, hostileDialFrom(t, addr, "127.0.0.2"))
	}
	eventually(t, "3 pending", func() bool { return s.gate.Stats().Pending == 3 })
	if excess := hostileDialFrom(t, addr, "127.0.0.2"); !hostileClosed(excess, 5*time.Second) {
		t.Fatal("a 4th silent connection from 127.0.0.2 was kept")
	}
	other := []*testClient{hostileDialFrom(t, addr, "127.0.0.3"), hostileDialFrom(t, addr, "127.0.0.3")}
	eventually(t, "5 pending", func() bool { return s.gate.Stats().Pending == 5 })
	if hostileClosed(other[0], 100*time.Millisecond) || hostileClosed(first[2], 100*time.Millisecond) {
		t.Fatal("a connection within the limits was closed")
	}
	// At MaxPending, the next one (from a third address) evicts the
	// oldest.
	third := hostileDialFrom(t, addr, "127.0.0.4")
	if !hostileClosed(first[0], 5*time.Second) {
		t.Fatal("the oldest pending connection was not evicted")
	}
	if hostileClosed(third, 100*time.Millisecond) {
		t.Fatal("the newest connection was closed")
	}
	st := s.gate.Stats()
	if st.Pending != 5 || st.Refused[secure.ReasonPerSource] != 1 || st.Refused[secure.ReasonEvicted] != 1 {
		t.Fatalf("gate: %+v", st)
	}
	// A member from 127.0.0.1 evicts another stranger and is served.
	ctx := context.Background()
	m, err := peer.Dial(ctx, addr, peer.ClientOptions{Secure: hostileSecure(t, hostileSecret)})
	if err != nil {
		t.Fatalf("member: %v", err)
	}
	defer m.Close()
	var buf bytes.Buffer
	if _, err := m.Get(ctx, "a.txt", 0, -1, &buf, nil); err != nil || buf.String() != "aaa" {
		t.Fatalf("member GET: %q, %v", buf.String(), err)
	}
}

// TestRefusalsLogBounded: a flood of strangers (plaintext clients, wrong
// secrets, connections over the per-source cap) is logged at a bounded
// rate, one summary line per interval, and the lines account for every
// refusal.
func TestRefusalsLogBounded(t *testing.T) {
	var log logBuffer
	const interval = 100 * time.Millisecond
	s, addr := testServeLog(t, Options{Secure: hostileSecure(t, hostileSecret),
		HandshakeTimeout: 5 * time.Second, MaxPendingPerSource: 4, RefusalLogInterval: interval}, &log)
	const plain, strangers = 600, 20
	start := time.Now()
	var wg sync.WaitGroup
	for w, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		wg.Go(func() {
			for range plain / 4 {
				// Sent and closed at once: refused as plaintext, or
				// closed over the per-source cap.
				d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
				nc, err := d.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				nc.Write([]byte("GET a.txt\n"))
				nc.Close()
			}
			for range strangers / 4 {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = hostileSecure(t, strangeSecret).Client(nc, testTimeout)
				if !errors.Is(err, secure.ErrNotMember) {
					t.Errorf("stranger %d: %v", w, err)
				}
			}
		})
	}
	wg.Wait()
	eventually(t, "every refusal counted", func() bool {
		return s.gate.Stats().RefusedTotal() == plain+strangers
	})
	elapsed := time.Since(start)
	st := s.gate.Stats()
	if err := s.Close(); err != nil { // logs the last summary
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
}
