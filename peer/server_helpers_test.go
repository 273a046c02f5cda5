package peer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/peerproto"
)

// srvTestTimeout bounds every network read and write of a test client.
const srvTestTimeout = 20 * time.Second

// srvTestServe starts a server on 127.0.0.1:0 for opts (Export defaults to
// a fresh temporary directory) and stops it, checking for leaked
// goroutines, when the test ends.
func srvTestServe(t *testing.T, opts ServerOptions) (*Server, string) {
	t.Helper()
	return srvTestServeLog(t, opts, io.Discard)
}

// srvTestServeLog is srvTestServe with the server's log copied to w.
func srvTestServeLog(t *testing.T, opts ServerOptions, w io.Writer) (*Server, string) {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	if opts.Export == "" {
		opts.Export = t.TempDir()
	}
	opts.Logger = zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), w)).Level(zerolog.DebugLevel)
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
		goleak.VerifyNone(t, leaks)
	})
	return s, ln.Addr().String()
}

// srvTestClient speaks the protocol by hand, as a person with nc would.
type srvTestClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// srvTestDial connects without reading the greeting.
func srvTestDial(t *testing.T, addr string) *srvTestClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, srvTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &srvTestClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// srvTestConnect connects and expects "CONNECT OK".
func srvTestConnect(t *testing.T, addr string) *srvTestClient {
	t.Helper()
	c := srvTestDial(t, addr)
	c.expect("CONNECT OK")
	return c
}

func (c *srvTestClient) send(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(srvTestTimeout))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send %q: %v", srvShort([]byte(s)), err)
	}
}

func (c *srvTestClient) write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(srvTestTimeout))
	_, err := c.nc.Write(b)
	return err
}

// line reads one reply line, without its terminator.
func (c *srvTestClient) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

func (c *srvTestClient) expect(want string) {
	c.t.Helper()
	if got := c.line(); got != want {
		c.t.Fatalf("reply %q, want %q", got, want)
	}
}

// expectPrefix reads a line and checks how it starts.
func (c *srvTestClient) expectPrefix(prefix string) string {
	c.t.Helper()
	got := c.line()
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("reply %q, want it to start with %q", got, prefix)
	}
	return got
}

// roundTrip sends one request line and returns the reply line.
func (c *srvTestClient) roundTrip(req string) string {
	c.t.Helper()
	c.send(req + "\n")
	return c.line()
}

// expectEOF checks that the server closed the connection.
func (c *srvTestClient) expectEOF() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
	b, err := io.ReadAll(c.r)
	if len(b) > 0 || err != nil {
		c.t.Fatalf("want the connection closed, got %q, %v", srvShort(b), err)
	}
}

// put uploads data and returns the final reply.
func (c *srvTestClient) put(name string, data []byte) string {
	c.t.Helper()
	c.send("PUT " + peerproto.EncodeName(name) + " " + strconv.Itoa(len(data)) + "\n")
	if r := c.line(); r != "PUT OK" {
		return r
	}
	if err := c.write(data); err != nil {
		c.t.Fatal(err)
	}
	return c.line()
}

// get downloads a whole file.
func (c *srvTestClient) get(name string) []byte {
	c.t.Helper()
	return c.getRange("GET " + peerproto.EncodeName(name))
}

// getRange sends a GET line and returns the data of its GET OK reply.
func (c *srvTestClient) getRange(req string) []byte {
	c.t.Helper()
	reply, err := peerproto.ParseReply([]byte(c.roundTrip(req)), peerproto.VerbGet)
	if err != nil {
		c.t.Fatalf("%s: %v", req, err)
	}
	n := reply.(peerproto.GetOK).Size
	b := make([]byte, n)
	c.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Fatalf("%s: read %d bytes: %v", req, n, err)
	}
	return b
}

// list returns the entries of a LIST reply.
func (c *srvTestClient) list(dir string) []peerproto.Entry {
	c.t.Helper()
	req := "LIST"
	if dir != "" {
		req += " " + peerproto.EncodeName(dir)
	}
	reply, err := peerproto.ParseReply([]byte(c.roundTrip(req)), peerproto.VerbList)
	if err != nil {
		c.t.Fatalf("%s: %v", req, err)
	}
	var es []peerproto.Entry
	for range reply.(peerproto.ListOK).Count {
		e, err := peerproto.ParseEntry([]byte(c.line()))
		if err != nil {
			c.t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}

func srvNames(es []peerproto.Entry) []string {
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	return names
}

// srvWriteFile creates a file under dir with exact permission bits.
func srvWriteFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// srvTemps lists the temporary upload files anywhere under dir.
func srvTemps(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), jailTempPrefix) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return found
}

// srvEventually polls cond for a few seconds.
func srvEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// srvLog is a log destination safe for concurrent use.
type srvLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *srvLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// refusals returns the refusal lines logged and the refusals they account
// for: one for each "refused connection", the count of each "refused
// connections" summary (see secure.Gate).
func (l *srvLog) refusals(t *testing.T) (lines int, counted int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Message string `json:"message"`
			Refused int    `json:"refused"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		switch {
		case rec.Message == "refused connections":
			lines++
			counted += rec.Refused
		case strings.HasPrefix(rec.Message, "refused"):
			lines++
			counted++
		}
	}
	return lines, counted
}
