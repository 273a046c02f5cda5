package secure

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// gateConns accepts connections on a 127.0.0.1 listener, dialled from
// chosen loopback addresses, and hands out both ends. Everything closes
// when the test ends.
type gateConns struct {
	t  *testing.T
	ln net.Listener
}

func newGateConns(t *testing.T) *gateConns {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &gateConns{t: t, ln: ln}
}

// dial connects from local IP from (127.0.0.2, ...) and returns the
// client end and the server end.
func (g *gateConns) dial(from string) (client, server net.Conn) {
	g.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", g.ln.Addr().String())
	if err != nil {
		g.t.Fatal(err)
	}
	s, err := g.ln.Accept()
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// gateClosed reports whether the server closed the client's connection:
// a read sees EOF (or a reset) within wait.
func gateClosed(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// gateLog is a zerolog logger into a buffer, and the JSON lines it got.
type gateLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *gateLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *gateLog) logger() zerolog.Logger { return zerolog.New(l) }

// refusals returns the refusal lines logged and the refusals they
// account for: one for each "refused connection", the count of each
// "refused connections" summary.
func (l *gateLog) refusals(t *testing.T) (lines int, counted int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var rec struct {
			Message string `json:"message"`
			Refused int    `json:"refused"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		switch rec.Message {
		case "refused connection":
			lines++
			counted++
		case "refused connections":
			lines++
			counted += rec.Refused
		}
	}
	return lines, counted
}

// TestGatePerSource: beyond MaxPendingPerSource pending connections from
// one address, more are refused at once; other addresses are not
// affected; a finished handshake frees its slot.
func TestGatePerSource(t *testing.T) {
	defer goleak.VerifyNone(t)
	conns := newGateConns(t)
	g := NewGate(GateOptions{MaxPendingPerSource: 3, MaxPending: 100})
	defer g.Close()
	var ps []*Pending
	for i := range 3 {
		_, s := conns.dial("127.0.0.2")
		p, ok := g.Enter(s)
		if !ok {
			t.Fatalf("connection %d from 127.0.0.2 refused under the limit", i)
		}
		ps = append(ps, p)
	}
	_, s := conns.dial("127.0.0.2")
	if _, ok := g.Enter(s); ok {
		t.Fatal("a 4th pending connection from 127.0.0.2 was let in")
	}
	_, s = conns.dial("127.0.0.3")
	if _, ok := g.Enter(s); !ok {
		t.Fatal("127.0.0.3 refused for 127.0.0.2's connections")
	}
	if !ps[0].Done() {
		t.Fatal("Done: evicted?")
	}
	ps[1].Refuse(fmt.Errorf("secure: %w", ErrPlaintext))
	for range 2 {
		_, s = conns.dial("127.0.0.2")
		if _, ok := g.Enter(s); !ok {
			t.Fatal("127.0.0.2 refused after two of its handshakes ended")
		}
	}
	st := g.Stats()
	if st.Pending != 4 || st.Refused[ReasonPerSource] != 1 || st.Refused[ReasonPlaintext] != 1 || st.RefusedTotal() != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGateEvictsOldest: at MaxPending, a new connection closes the oldest
// pending one, whose Done then says so; the newer ones stay open.
func TestGateEvictsOldest(t *testing.T) {
	defer goleak.VerifyNone(t)
	conns := newGateConns(t)
	g := NewGate(GateOptions{MaxPendingPerSource: 10, MaxPending: 3})
	defer g.Close()
	var clients []net.Conn
	var ps []*Pending
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		c, s := conns.dial(from)
		p, ok := g.Enter(s)
		if !ok {
			t.Fatalf("connection %d refused", i)
		}
		clients, ps = append(clients, c), append(ps, p)
	}
	if !gateClosed(clients[0], 5*time.Second) {
		t.Fatal("the oldest pending connection was not closed")
	}
	if ps[0].Done() {
		t.Fatal("Done of the evicted connection reported true")
	}
	ps[0].Refuse(io.EOF) // its handshake fails too: not counted twice
	for i, c := range clients[1:] {
		if gateClosed(c, 100*time.Millisecond) {
			t.Fatalf("connection %d closed", i+1)
		}
	}
	if st := g.Stats(); st.Pending != 3 || st.Refused[ReasonEvicted] != 1 || st.RefusedTotal() != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGateLogBounded: a flood of refusals from many goroutines is logged
// as a first line and then at most one summary per interval, and the
// lines account for every refusal.
func TestGateLogBounded(t *testing.T) {
	defer goleak.VerifyNone(t)
	var log gateLog
	const interval = 50 * time.Millisecond
	g := NewGate(GateOptions{RefusalLogInterval: interval, Logger: log.logger()})
	addr := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4242}
	const workers, each = 8, 2500
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				switch i % 3 {
				case 0:
					g.Refused(addr, ReasonNotMember, ErrNotMember)
				case 1:
					g.Refused(addr, ReasonPlaintext, ErrPlaintext)
				default:
					g.Refused(addr, ReasonBusy, nil)
				}
				if i%500 == w {
					time.Sleep(10 * time.Millisecond) // spread over several intervals
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	g.Close()
	lines, counted := log.refusals(t)
	if counted != workers*each {
		t.Errorf("the log accounts for %d refusals, want %d", counted, workers*each)
	}
	if bound := 2 + int(elapsed/interval) + 1; lines > bound {
		t.Errorf("%d log lines in %v, want at most %d (one per %v, plus the first and the last)", lines, elapsed, bound, interval)
	}
	if st := g.Stats(); st.RefusedTotal() != workers*each {
		t.Errorf("stats count %d", st.RefusedTotal())
	}

	// After a quiet interval, the next refusal is logged in full again.
	var log2 gateLog
	g = NewGate(GateOptions{RefusalLogInterval: interval, Logger: log2.logger()})
	g.Refused(addr, ReasonBusy, nil)
	g.Refused(addr, ReasonBusy, nil)
	time.Sleep(4 * interval)
	g.Refused(addr, ReasonBusy, nil)
	g.Close()
	if lines, counted := log2.refusals(t); lines != 3 || counted != 3 {
		t.Errorf("first, summary, first again: %d lines for %d refusals; log:\n%s", lines, counted, log2.buf.String())
	}
	if !strings.Contains(log2.buf.String(), `"remote":"192.0.2.7:4242"`) {
		t.Errorf("the first refusal does not name its source:\n%s", log2.buf.String())
	}
}

// TestSourceKey: the per-source limit counts an IPv4 address, or an IPv6
// /64 (what one host easily holds).
func TestSourceKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
	} {
		ka := sourceKey(&net.TCPAddr{IP: net.ParseIP(tc.a), Port: 1})
		kb := sourceKey(&net.TCPAddr{IP: net.ParseIP(tc.b), Port: 2})
		if ka != kb {
			t.Errorf("%s and %s: keys %q and %q differ", tc.a, tc.b, ka, kb)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.2"},
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
	} {
		if sourceKey(&net.TCPAddr{IP: net.ParseIP(tc.a)}) == sourceKey(&net.TCPAddr{IP: net.ParseIP(tc.b)}) {
			t.Errorf("%s and %s share a key", tc.a, tc.b)
		}
	}
}
