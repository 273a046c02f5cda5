package tracker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
)

const (
	// maxEchoVerb bounds the verb echoed in "<VERB> FAIL invalid ...".
	maxEchoVerb = 32
	// maxEchoDetail bounds the detail of "<VERB> FAIL invalid <detail>".
	maxEchoDetail = 200
)

// conn is one client connection. The reader goroutine (readLoop) owns br;
// the writer goroutine (writeLoop) owns the writes to nc.
type conn struct {
	nc       net.Conn        // the socket; closing it ends everything
	remote   string          // remote address, for logs
	host     string          // remote IP (with zone, if any), the host of the advertised address
	accepted time.Time       // for evicting the oldest unregistered connection
	pending  *secure.Pending // its place in the handshake gate; nil without a secret

	// rw carries the lines: nc itself, or TLS over nc. readLoop sets it
	// before it starts writeLoop, and neither changes it after.
	rw net.Conn

	out      *outbox       // lines waiting for the writer; bounded
	done     chan struct{} // closed by shutdown: the writer stops
	stopOnce sync.Once
	// linger, set before shutdown, has the writer send what is queued
	// (within lingerTimeout) before the socket closes.
	linger atomic.Bool

	// Guarded by Tracker.mu.
	gone       bool   // removed: nothing more is sent or done for it
	dropping   bool   // to be removed at the end of the current step
	registered bool   // REGISTER OK was sent
	name       string // advertised name, or anon-<n> for a bare REGISTER
	addr       string // advertised host:port; "" if not advertised
	wantsLeft  bool   // asked for LEFT events (FEATURES left)
	deltas     bool   // asked for the list as deltas (FEATURES deltas): PEERS, JOINED, LEFT
	turns      bool   // says when it holds writes (FEATURES turns)
	holds      bool   // with turns: it said WRITES held, or has not said none yet
	turnRound  uint64 // the last round in which it had (or has) a turn
	member     Member // a replica's: its member as last written to the shared store
}

// mayHoldWrites reports whether c may hold writes the others must see,
// so that a round must give it a turn: it said so, or it never says.
func (c *conn) mayHoldWrites() bool { return !c.turns || c.holds }

func newConn(nc net.Conn) *conn {
	c := &conn{
		nc:       nc,
		rw:       nc,
		accepted: time.Now(),
		remote:   nc.RemoteAddr().String(),
		out:      newOutbox(),
		done:     make(chan struct{}),
	}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.host = ta.IP.String()
		if ta.Zone != "" {
			c.host += "%" + ta.Zone
		}
	} else if h, _, err := net.SplitHostPort(c.remote); err == nil {
		c.host = h
	} else {
		c.host = c.remote
	}
	return c
}

// shutdown stops the writer and closes the socket, which also ends the
// reader's blocking read. It is called without Tracker.mu held.
func (c *conn) shutdown() {
	c.stopOnce.Do(func() {
		close(c.done)
		if !c.linger.Load() {
			c.nc.Close()
		}
	})
}

// lingerTimeout bounds the last write of a lingering connection.
const lingerTimeout = time.Second

// readLoop runs the TLS handshake and membership proofs if the tracker is
// secure, starts the writer, then reads and handles lines until the
// connection ends, and removes it with the reason.
func (t *Tracker) readLoop(c *conn) {
	if t.opts.Secure != nil {
		if reason, ok := t.handshake(c); !ok {
			t.drop(c, reason)
			return
		}
	}
	t.wg.Go(func() { t.writeLoop(c) })
	br := bufio.NewReader(c.rw)
	var reason string
	for {
		// Every line, PING included, proves the peer alive.
		if err := c.rw.SetReadDeadline(time.Now().Add(t.opts.IdleTimeout)); err != nil {
			reason = "set read deadline: " + err.Error()
			break
		}
		line, err := peerproto.ReadLine(br)
		if err != nil {
			reason = readFailure(err)
			break
		}
		if t.handleLine(c, line) {
			reason = "quit"
			break
		}
	}
	t.drop(c, reason)
}

// handshake makes c.rw a TLS connection whose client proved membership.
// A stranger gets "REGISTER FAIL denied ..." and false.
//
// Refusals are counted and logged by the gate, at a bounded rate: a flood
// of strangers must not flood the log.
func (t *Tracker) handshake(c *conn) (reason string, ok bool) {
	sc, err := t.opts.Secure.Server(c.nc, t.opts.HandshakeTimeout)
	if err != nil {
		c.pending.Refuse(err)
	}
	var text string
	switch {
	case err == nil:
		c.pending.Done()
		c.rw = sc
		return "", true
	case errors.Is(err, secure.ErrNotMember):
		text = "not a member of this cluster"
	case errors.Is(err, secure.ErrPlaintext):
		text = "this tracker speaks TLS only: connect with the cluster secret (PEERFS_SECRET)"
	default:
		return "handshake: " + err.Error(), false
	}
	_ = sc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = sc.Write(refusal(peerproto.VerbRegister, peerproto.CodeDenied, "%s", text))
	return "refused: " + err.Error(), false
}

func readFailure(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "closed by peer"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by peer mid-line"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "idle timeout"
	case errors.Is(err, peerproto.ErrLineTooLong):
		return "protocol error: " + err.Error()
	case errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	return "read: " + err.Error()
}

// writeLoop writes queued lines to c until shutdown, all those waiting
// in one Write. A failed or late write drops c.
func (t *Tracker) writeLoop(c *conn) {
	var buf, spare []byte
	for {
		select {
		case <-c.done:
			if c.linger.Load() {
				// Its last lines (a revoked turn) go out first.
				if last := c.out.take(nil); len(last) > 0 {
					_ = c.rw.SetWriteDeadline(time.Now().Add(lingerTimeout))
					_, _ = c.rw.Write(last)
				}
				c.nc.Close()
			}
			return
		case <-c.out.wake:
		}
		buf = c.out.take(spare)
		if len(buf) == 0 {
			spare = buf
			continue
		}
		err := c.rw.SetWriteDeadline(time.Now().Add(t.opts.WriteTimeout))
		if err == nil {
			_, err = c.rw.Write(buf)
		}
		if err != nil {
			reason := "write: " + err.Error()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				reason = fmt.Sprintf("write timeout (%s): not reading", t.opts.WriteTimeout)
			}
			t.drop(c, reason)
			return
		}
		// A burst's buffer (a full peer list) is not kept for good.
		if cap(buf) > maxKeptBuffer {
			buf = nil
		}
		spare = buf
	}
}

// handleLine handles one request line from c and reports whether c asked
// to leave.
func (t *Tracker) handleLine(c *conn, line []byte) (quit bool) {
	// A person at nc may press enter on an empty line: not worth a reply.
	if len(bytes.TrimSpace(line)) == 0 {
		return false
	}
	m, err := peerproto.ParseTrackerRequest(line)
	if err == nil && t.rep != nil {
		if handled, quit := t.rep.handle(c, m); handled {
			return quit
		}
	}

	t.mu.Lock()
	defer t.unlock()
	if c.gone {
		return true
	}
	if err != nil {
		t.sendLocked(c, invalidReply(line, err))
		return false
	}
	switch m := m.(type) {
	case peerproto.Ping:
		t.sendLocked(c, format(peerproto.Pong{}))
	case peerproto.Quit:
		t.removeLocked(c, reasonQuit, true)
		return true
	case peerproto.Features:
		t.featuresLocked(c, m)
	case peerproto.Register:
		t.registerLocked(c, m)
	case peerproto.Sync:
		if t.mustRegisterLocked(c, peerproto.VerbSync) {
			t.syncLocked(c)
		}
	case peerproto.SyncFin:
		if t.mustRegisterLocked(c, peerproto.VerbSync) {
			t.finLocked(c, m)
		}
	case peerproto.Writes:
		t.writesLocked(c, m)
	default:
		// ParseTrackerRequest returns no other message.
		t.sendLocked(c, refusal(m.Verb(), peerproto.CodeUnsupported, "not a tracker request"))
	}
	return false
}

// featuresLocked handles FEATURES <word>...: c gets the extensions it
// names that this tracker serves, and is told which. A registered
// connection that turns deltas on gets the whole list as PEERS and
// JOINED lines after the answer: the changes that follow are relative
// to it.
func (t *Tracker) featuresLocked(c *conn, m peerproto.Features) {
	ok := peerproto.FeaturesOK{Words: []string{}}
	for _, w := range m.Words {
		switch {
		case w == peerproto.FeatureLeft && !c.wantsLeft:
			c.wantsLeft = true
		case w == peerproto.FeatureTurns && !c.turns:
			// Until it says otherwise, it may hold writes.
			c.turns, c.holds = true, true
		case w == peerproto.FeatureDeltas && !c.deltas:
			c.deltas = true
		default:
			continue
		}
		ok.Words = append(ok.Words, w)
	}
	t.sendLocked(c, format(ok))
	if c.registered && c.deltas && slices.Contains(ok.Words, peerproto.FeatureDeltas) {
		t.sendListLocked(c)
	}
}

// writesLocked handles WRITES held|none from a connection with turns,
// before or after REGISTER: whether a round that starts from now on
// owes it a turn. A round in progress is not changed: writes held from
// now on are the next round's.
func (t *Tracker) writesLocked(c *conn, m peerproto.Writes) {
	if !c.turns {
		t.sendLocked(c, refusal(peerproto.VerbWrites, peerproto.CodeState, "ask for FEATURES turns first"))
		return
	}
	c.holds = m.Held
	t.sendLocked(c, format(peerproto.WritesOK{}))
}

// mustRegisterLocked reports whether c is registered, refusing the request
// if it is not.
func (t *Tracker) mustRegisterLocked(c *conn, verb string) bool {
	if c.registered {
		return true
	}
	t.sendLocked(c, refusal(verb, peerproto.CodeState, "register first"))
	return false
}

// invalidReply answers a line that does not parse:
// "<FIRST WORD UPPERCASED> FAIL invalid <detail>".
func invalidReply(line []byte, err error) []byte {
	s := strings.TrimLeft(string(line), " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		s = s[:i]
	}
	// The verb is echoed as one printable token, even if it is garbage.
	verb := peerproto.EncodeName(strings.ToUpper(s))
	if len(verb) > maxEchoVerb {
		verb = verb[:maxEchoVerb]
	}
	detail := err.Error()
	var pe *peerproto.ProtocolError
	if errors.As(err, &pe) {
		detail = pe.Msg
	}
	if len(detail) > maxEchoDetail {
		detail = detail[:maxEchoDetail] + "..."
	}
	return refusal(verb, peerproto.CodeInvalid, "%s", detail)
}

// registerLocked handles REGISTER: it admits c, tells it the peer list and
// tells the others, and lets c take part in a round in progress.
func (t *Tracker) registerLocked(c *conn, m peerproto.Register) {
	const verb = peerproto.VerbRegister
	if c.registered {
		t.sendLocked(c, refusal(verb, peerproto.CodeState, "already registered"))
		return
	}
	var addr string
	var old *conn
	if m.Name != "" {
		addr = net.JoinHostPort(c.host, strconv.Itoa(m.Port))
		if o := t.byName[m.Name]; o != nil {
			if o.addr != addr {
				t.sendLocked(c, refusal(verb, peerproto.CodeExists, "name %q is taken by %s", m.Name, o.addr))
				return
			}
			// The same peer came back (it restarted) before its old
			// connection timed out: the new connection replaces the old.
			old = o
		}
	}
	if old == nil && len(t.peers) >= t.opts.MaxPeers {
		t.sendLocked(c, refusal(verb, peerproto.CodeBusy, "tracker is full (%d peers)", t.opts.MaxPeers))
		return
	}
	at := len(t.peers)
	if old != nil {
		// The restarted peer keeps its place in the list, and nobody
		// needs to hear of it: the list is the same.
		at = slices.Index(t.peers, old)
		t.removeLocked(old, reasonReplaced, false)
	}

	c.registered = true
	if m.Name == "" {
		t.anonSeq++
		c.name = "anon-" + strconv.FormatUint(t.anonSeq, 10)
	} else {
		c.name, c.addr = m.Name, addr
		t.byName[m.Name] = c
	}
	t.peers = slices.Insert(t.peers, at, c)
	t.log.Info().Str("peer", c.name).Str("addr", c.addr).Str("remote", c.remote).
		Int("peers", len(t.peers)).Msg("peer joined")

	t.sendLocked(c, format(peerproto.RegisterOK{}))
	t.sendListLocked(c)
	if c.addr != "" && old == nil {
		t.announceJoinLocked(peerproto.PeerAddr{Name: c.name, Addr: c.addr}, c)
	}
	t.syncJoinLocked(c)
}
