package tracker

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, opts, ln), ln.Addr().String()
}

func serve(t *testing.T, opts Options, ln net.Listener) *Tracker {
	t.Helper()
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
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
