package secure

import (
	"container/list"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Gate defaults, used for zero GateOptions fields.
const (
	// DefaultMaxPendingPerSource bounds the connections from one source
	// that have not finished the handshake. A member's mount dials a few
	// at a time; several mounts behind one NAT share a source.
	DefaultMaxPendingPerSource = 64
	// DefaultMaxPending bounds the pending connections from everywhere.
	DefaultMaxPending = 512
	// DefaultRefusalLogInterval is how often a Gate logs the refusals it
	// counted: at most one summary line per interval.
	DefaultRefusalLogInterval = 10 * time.Second
)

// Reasons a Gate counts a refused connection under.
const (
	ReasonNotMember = "not_member" // no valid membership proof (ErrNotMember)
	ReasonPlaintext = "plaintext"  // no TLS handshake (ErrPlaintext)
	ReasonHandshake = "handshake"  // the TLS handshake failed, timed out or was cut
	ReasonPerSource = "per_source" // too many pending connections from its source
	ReasonEvicted   = "evicted"    // the oldest pending one, closed to make room
	ReasonBusy      = "busy"       // the server's own connection limit (counted by the server)
)

// Reason names the Reason* constant a handshake error from Config.Server
// is counted under.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrNotMember):
		return ReasonNotMember
	case errors.Is(err, ErrPlaintext):
		return ReasonPlaintext
	}
	return ReasonHandshake
}

// GateOptions configures a Gate. Zero fields take the defaults.
type GateOptions struct {
	// MaxPendingPerSource bounds the pending connections (accepted, the
	// handshake not done) from one source: an IPv4 address or an IPv6
	// /64, what one attacker easily holds. More are refused at once.
	MaxPendingPerSource int
	// MaxPending bounds the pending connections in all. At the limit a new
	// one evicts the oldest pending connection (closing it), so idle
	// strangers cannot keep members out, and file descriptors stay
	// bounded.
	MaxPending int
	// RefusalLogInterval: refusals are logged at most one line per
	// interval, with counts, after the first of a quiet spell, which is
	// logged in full.
	RefusalLogInterval time.Duration
	// Logger receives the refusal lines.
	Logger zerolog.Logger
}

// Gate admits connections to a server before they have proven
// membership, and counts and logs the refusals of strangers at a bounded
// rate: a flood of them costs a few log lines, not one per connection.
// It is safe for concurrent use. Close it when the server stops.
//
// A server calls Enter for each accepted connection before its handshake,
// then Done or Refuse on the Pending it got; Refused counts refusals of
// its own (a connection limit).
type Gate struct {
	opts GateOptions
	log  refusalLog

	mu        sync.Mutex        // protects the fields below
	pending   list.List         // of *Pending, oldest first
	perSource map[string]int    // pending connections by source key
	refused   map[string]uint64 // refusals since NewGate, by reason
}

// Pending is a connection let in by Gate.Enter whose handshake is not
// done yet.
type Pending struct {
	g      *Gate
	nc     net.Conn
	source string // key in Gate.perSource

	// Guarded by Gate.mu.
	elem    *list.Element // in Gate.pending; nil once it left
	evicted bool
}

// NewGate returns a Gate for opts.
func NewGate(opts GateOptions) *Gate {
	if opts.MaxPendingPerSource <= 0 {
		opts.MaxPendingPerSource = DefaultMaxPendingPerSource
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.RefusalLogInterval <= 0 {
		opts.RefusalLogInterval = DefaultRefusalLogInterval
	}
	g := &Gate{
		opts:      opts,
		perSource: make(map[string]int),
		refused:   make(map[string]uint64),
	}
	g.log.init(opts.Logger, opts.RefusalLogInterval)
	return g
}

// Enter lets nc in as a pending connection, or refuses it (false) if its
// source already has MaxPendingPerSource pending: the caller then closes
// nc at once, without a word (the refusal is counted). At MaxPending, the
// oldest pending connection is evicted to make room: its socket is closed
// under its handshake.
func (g *Gate) Enter(nc net.Conn) (*Pending, bool) {
	addr := nc.RemoteAddr()
	p := &Pending{g: g, nc: nc, source: sourceKey(addr)}
	var evict *Pending
	g.mu.Lock()
	if g.perSource[p.source] >= g.opts.MaxPendingPerSource {
		g.refused[ReasonPerSource]++
		g.mu.Unlock()
		g.log.refused(addr, ReasonPerSource, nil)
		return nil, false
	}
	if g.pending.Len() >= g.opts.MaxPending {
		evict = g.pending.Front().Value.(*Pending)
		evict.evicted = true
		g.leaveLocked(evict)
		g.refused[ReasonEvicted]++
	}
	p.elem = g.pending.PushBack(p)
	g.perSource[p.source]++
	g.mu.Unlock()
	if evict != nil {
		evict.nc.Close()
		g.log.refused(evict.nc.RemoteAddr(), ReasonEvicted, nil)
	}
	return p, true
}

// Done ends the pending state of a connection whose handshake succeeded.
// It reports false if the connection was evicted meanwhile (its socket is
// closed; the caller drops it). Done of a nil *Pending does nothing.
func (p *Pending) Done() bool {
	if p == nil {
		return true
	}
	g := p.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leaveLocked(p)
	return !p.evicted
}

// Refuse ends the pending state of a connection whose handshake failed
// with err, counting and logging it under Reason(err) (unless it was
// evicted, which was counted then). Refuse of a nil *Pending does
// nothing.
func (p *Pending) Refuse(err error) {
	if p == nil {
		return
	}
	g := p.g
	reason := Reason(err)
	g.mu.Lock()
	counted := p.evicted || p.elem == nil
	g.leaveLocked(p)
	if !counted {
		g.refused[reason]++
	}
	g.mu.Unlock()
	if !counted {
		g.log.refused(p.nc.RemoteAddr(), reason, err)
	}
}

func (g *Gate) leaveLocked(p *Pending) {
	if p.elem == nil {
		return
	}
	g.pending.Remove(p.elem)
	p.elem = nil
	if n := g.perSource[p.source] - 1; n > 0 {
		g.perSource[p.source] = n
	} else {
		delete(g.perSource, p.source)
	}
}

// Refused counts and logs a refusal the server decided itself (reason is
// a Reason* constant, or a word of its own), such as ReasonBusy.
func (g *Gate) Refused(addr net.Addr, reason string, err error) {
	g.mu.Lock()
	g.refused[reason]++
	g.mu.Unlock()
	g.log.refused(addr, reason, err)
}

// GateStats is a snapshot of a Gate's counters.
type GateStats struct {
	Pending int               // connections pending now
	Refused map[string]uint64 // refusals since NewGate, by reason
}

// RefusedTotal sums Refused.
func (s GateStats) RefusedTotal() uint64 {
	var n uint64
	for _, v := range s.Refused {
		n += v
	}
	return n
}

// Stats returns the Gate's counters.
func (g *Gate) Stats() GateStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := GateStats{Pending: g.pending.Len(), Refused: make(map[string]uint64, len(g.refused))}
	for k, v := range g.refused {
		st.Refused[k] = v
	}
	return st
}

// Close logs the refusals counted since the last line and stops the
// Gate's timer. Refusals after Close are counted but not logged.
func (g *Gate) Close() { g.log.close() }

// sourceKey names the source of a connection for the per-source limit:
// its IPv4 address, or the /64 of its IPv6 address.
func sourceKey(addr net.Addr) string {
	if addr == nil {
		return "?"
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return addr.String()
	}
	ip = ip.Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}
