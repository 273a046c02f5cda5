package tracker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// replyTimeout bounds every read a test client makes while expecting a line.
const replyTimeout = 3 * time.Second

// startTracker serves a Tracker on 127.0.0.1:0 until the test ends, then
// closes it and checks that Serve returned and no goroutine leaked.
func startTracker(t *testing.T, opts Options) (*Tracker, string) {
	t.Helper()
	return startTrackerLog(t, opts, io.Discard)
}

// startTrackerLog is startTracker with the tracker's log copied to w.
func startTrackerLog(t *testing.T, opts Options, w io.Writer) (*Tracker, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveLog(t, opts, ln, w), ln.Addr().String()
}

func serve(t *testing.T, opts Options, ln net.Listener) *Tracker {
	t.Helper()
	return serveLog(t, opts, ln, io.Discard)
}

// serveLog serves opts on ln, logging to the test's log and to w.
func serveLog(t *testing.T, opts Options, ln net.Listener, w io.Writer) *Tracker {
	t.Helper()
	opts.Logger = zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), w)).Level(zerolog.DebugLevel)
	tr := New(opts)
	served := make(chan error, 1)
	go func() { served <- tr.Serve(ln) }()
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve after Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
		goleak.VerifyNone(t)
	})
	return tr
}

// client is a test peer speaking the protocol over a raw connection.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, replyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// dialSmallBuffer dials with a tiny receive buffer, so that a client that
// does not read fills up after a few kilobytes.
func dialSmallBuffer(t *testing.T, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: replyTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		})
		return errors.Join(err, serr)
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// raw writes s as is.
func (c *client) raw(s string) {
	c.t.Helper()
	if err := c.nc.SetWriteDeadline(time.Now().Add(replyTimeout)); err != nil {
		c.t.Fatal(err)
	}
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// send writes line and its "\n".
func (c *client) send(line string) {
	c.t.Helper()
	c.raw(line + "\n")
}

// readLine returns the next line, terminator included, within d.
func (c *client) readLine(d time.Duration) (string, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return "", err
	}
	return c.r.ReadString('\n')
}

// expect reads one line per want and compares it, without its "\n".
func (c *client) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		line, err := c.readLine(replyTimeout)
		if err != nil {
			c.t.Fatalf("want %q, got %q and error %v", w, line, err)
		}
		if got := strings.TrimSuffix(line, "\n"); got != w {
			c.t.Fatalf("want %q, got %q", w, got)
		}
	}
}

// expectClosed checks that the tracker closes the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	line, err := c.readLine(replyTimeout)
	if err == nil {
		c.t.Fatalf("want the connection closed, got %q", line)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("want the connection closed, got %q and error %v", line, err)
	}
}

// register sends REGISTER name port and expects REGISTER OK and the UPDATE.
func (c *client) register(name, port, update string) {
	c.t.Helper()
	c.send("REGISTER " + name + " " + port)
	c.expect("REGISTER OK", update)
}

// testLog is a log destination safe for concurrent use.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// refusals returns the refusal lines logged and the refusals they account
// for: one for each other line whose message starts with "refused" or
// mentions "too many connections", the count of each "refused
// connections" summary (see secure.Gate).
func (l *testLog) refusals(t *testing.T) (lines int, counted int) {
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
		case strings.HasPrefix(rec.Message, "refused"), strings.Contains(rec.Message, "too many connections"):
			lines++
			counted++
		}
	}
	return lines, counted
}
