package peer

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"

	"github.com/peerfs/peerfs/peerproto"
)

// Pool keeps connections to one peer so that requests run in parallel and
// reuse connections. It is safe for concurrent use.
type Pool struct {
	addr    string
	opts    ClientOptions
	maxIdle int

	mu     sync.Mutex // protects the fields below
	idle   []*Conn
	closed bool
}

// NewPool returns a pool for the peer at addr keeping up to maxIdle idle
// connections (default 8).
func NewPool(addr string, opts ClientOptions, maxIdle int) *Pool {
	if maxIdle <= 0 {
		maxIdle = 8
	}
	return &Pool{addr: addr, opts: opts.withDefaults(), maxIdle: maxIdle}
}

// Addr returns the peer's address.
func (p *Pool) Addr() string { return p.addr }

// noRetryKey marks a context whose request Do must not send twice.
type noRetryKey struct{}

// NoRetry returns ctx marked so that Pool.Do does not send its request
// again on a new connection (see Do).
func NoRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

// ErrPoolClosed is returned by Do after Close.
var ErrPoolClosed = errors.New("peer: pool closed")

// Do runs fn on a connection. A connection that was idle in the pool may
// have been closed by the peer meanwhile: if fn fails on one with a
// connection-level error before a single byte of reply arrived, Do
// retries once on a new connection. A request that got any reply is
// never retried, since it may have taken effect.
//
// A context marked by NoRetry is never retried: its request is one that
// must not be carried out twice (a RENAME), and a connection that died
// after the peer carried it out, before any reply, looks the same.
func (p *Pool) Do(ctx context.Context, fn func(*Conn) error) error {
	c, reused, err := p.get(ctx)
	if err != nil {
		return err
	}
	before := c.nread.Load()
	err = fn(c)
	if err != nil && reused && stale(err) && c.nread.Load() == before && ctx.Value(noRetryKey{}) == nil {
		c.Close()
		if c, err = p.dial(ctx); err != nil {
			return err
		}
		err = fn(c)
	}
	p.put(c)
	return err
}

// stale reports whether err looks like a connection the peer had already
// closed while it sat idle.
func stale(err error) bool {
	var fe *peerproto.FailError
	if errors.As(err, &fe) || errors.Is(err, ErrSource) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (p *Pool) get(ctx context.Context) (*Conn, bool, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, ErrPoolClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	return c, false, err
}

func (p *Pool) dial(ctx context.Context) (*Conn, error) {
	return Dial(ctx, p.addr, p.opts)
}

func (p *Pool) put(c *Conn) {
	if c.Broken() {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// Close closes every idle connection; connections in use are closed when
// they are returned.
func (p *Pool) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	return nil
}
