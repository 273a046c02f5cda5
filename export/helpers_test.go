package export

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

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// testTimeout bounds every network read and write of a test client.
const testTimeout = 20 * time.Second

// testNoOpenat2 makes testServe's servers resolve paths through os.Root
// (Options.noOpenat2). Only TestServerWithoutOpenat2 sets it, around
// subtests that run one at a time.
var testNoOpenat2 bool

// testServe starts a server on 127.0.0.1:0 for opts (Export defaults to
// a fresh temporary directory) and stops it, checking for leaked
// goroutines, when the test ends.
func testServe(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	return testServeLog(t, opts, io.Discard)
}

// testServeLog is testServe with the server's log copied to w.
func testServeLog(t *testing.T, opts Options, w io.Writer) (*Server, string) {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	if opts.Export == "" {
		opts.Export = t.TempDir()
	}
	opts.Logger = zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), w)).Level(zerolog.DebugLevel)
	opts.noOpenat2 = opts.noOpenat2 || testNoOpenat2
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

// testClient speaks the protocol by hand, as a person with nc would.
type testClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// testDial connects without reading the greeting.
func testDial(t *testing.T, addr string) *testClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &testClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// testConnect connects and expects "CONNECT OK".
func testConnect(t *testing.T, addr string) *testClient {
	t.Helper()
	c := testDial(t, addr)
	c.expect("CONNECT OK")
	return c
}

func (c *testClient) send(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send %q: %v", shortLine([]byte(s)), err)
	}
}

func (c *testClient) write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(testTimeout))
	_, err := c.nc.Write(b)
	return err
}

// line reads one reply line, without its terminator.
func (c *testClient) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

func (c *testClient) expect(want string) {
	c.t.Helper()
	if got := c.line(); got != want {
		c.t.Fatalf("reply %q, want %q", got, want)
	}
}

// expectPrefix reads a line and checks how it starts.
func (c *testClient) expectPrefix(prefix string) string {
	c.t.Helper()
	got := c.line()
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("reply %q, want it to start with %q", got, prefix)
	}
	return got
}

// roundTrip sends one request line and returns the reply line.
func (c *testClient) roundTrip(req string) string {
	c.t.Helper()
	c.send(req + "\n")
	return c.line()
}

// expectEOF checks that the server closed the connection.
func (c *testClient) expectEOF() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	b, err := io.ReadAll(c.r)
	if len(b) > 0 || err != nil {
		c.t.Fatalf("want the connection closed, got %q, %v", shortLine(b), err)
	}
}

// put uploads data and returns the final reply.
func (c *testClient) put(name string, data []byte) string {
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
func (c *testClient) get(name string) []byte {
	c.t.Helper()
	return c.getRange("GET " + peerproto.EncodeName(name))
}

// getRange sends a GET line and returns the data of its GET OK reply.
func (c *testClient) getRange(req string) []byte {
	c.t.Helper()
	reply, err := peerproto.ParseReply([]byte(c.roundTrip(req)), peerproto.VerbGet)
	if err != nil {
		c.t.Fatalf("%s: %v", req, err)
	}
	n := reply.(peerproto.GetOK).Size
	b := make([]byte, n)
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Fatalf("%s: read %d bytes: %v", req, n, err)
	}
	return b
}

// list returns the entries of a LIST reply.
func (c *testClient) list(dir string) []peerproto.Entry {
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

func entryNames(es []peerproto.Entry) []string {
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	return names
}

// writeFile creates a file under dir with exact permission bits.
func writeFile(t *testing.T, dir, name, data string) string {
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

// tempFiles lists the temporary upload files anywhere under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), jail.TempPrefix) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return found
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

// logBuffer is a log destination safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// refusals returns the refusal lines logged and the refusals they account
// for: one for each "refused connection", the count of each "refused
// connections" summary (see secure.Gate).
func (l *logBuffer) refusals(t *testing.T) (lines int, counted int) {
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

// testConnectPosix connects and turns on whole-filesystem mode.
func testConnectPosix(t *testing.T, addr string) *testClient {
	t.Helper()
	c := testConnect(t, addr)
	c.send("FEATURES posix\n")
	c.expectPrefix("FEATURES OK inline fsync-files attrs posix")
	return c
}

// stat returns the entry of a STAT reply, failing the test on a refusal.
func (c *testClient) stat(name string) peerproto.Entry {
	c.t.Helper()
	req := "STAT " + peerproto.EncodeName(name)
	reply, err := peerproto.ParseReply([]byte(c.roundTrip(req)), peerproto.VerbStat)
	if err != nil {
		c.t.Fatalf("%s: %v", req, err)
	}
	return reply.(peerproto.StatOK).Entry
}

// entryNamed returns the entry called name in es.
func entryNamed(t *testing.T, es []peerproto.Entry, name string) peerproto.Entry {
	t.Helper()
	for _, e := range es {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %q in %q", name, entryNames(es))
	return peerproto.Entry{}
}
