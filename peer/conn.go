package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
)

// ClientOptions configures connections to other peers. Zero values take
// the defaults noted.
type ClientOptions struct {
	// DialTimeout bounds connecting and reading the CONNECT greeting
	// (default 5s).
	DialTimeout time.Duration
	// IOTimeout bounds every read or write that must make progress while a
	// request runs: a peer silent for longer is considered dead (default 10s).
	IOTimeout time.Duration
	// Secure, if set, runs TLS and the membership proofs (package secure)
	// on every connection before the greeting; nil speaks plaintext.
	Secure *secure.Config
	// Attrs asks every connection's peer, right after the greeting, for
	// attribute words ("FEATURES attrs"): entries and PUT DONE then carry
	// the peer's version tokens (peerproto.Entry.Ver), where it has them.
	Attrs bool
	// Posix asks every connection's peer, right after the greeting, for
	// whole-filesystem mode ("FEATURES attrs posix"; it implies Attrs):
	// the peer then follows no symbolic link in any path, lists every
	// kind of entry and gives their inode numbers, link counts, owners
	// and times. A peer that predates it answers as to Attrs; Conn.Posix
	// says which one a connection got.
	Posix bool
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.IOTimeout <= 0 {
		o.IOTimeout = 10 * time.Second
	}
	return o
}

// ErrBroken is returned for requests on a Conn that an earlier failure left
// out of step with its peer; such a Conn must be closed.
var ErrBroken = errors.New("peer: connection broken by an earlier error")

// ErrSource is wrapped in the error of a PUT that could not read all the
// bytes it announced from its source (the file shrank, or reading it
// failed). The connection is dropped, since the peer waits for bytes
// that will not come, and the peer discards the partial upload; but the
// fault is on this side, not the peer's.
var ErrSource = errors.New("peer: reading the data to send failed")

// ErrCutShort is wrapped in the error of a GET whose data stopped short
// of the size the peer announced: the peer closed the connection, which
// is what it does when the file shrinks while it is being sent (or what a
// crash looks like). The peer answered, so it is not a sign of a stalled
// one; asking again gets the file's new size.
var ErrCutShort = errors.New("peer: transfer cut short")

// Conn is one client connection to a peer. It carries one request at a
// time; concurrent callers are serialised. For parallel requests use a Pool.
type Conn struct {
	addr string
	opts ClientOptions
	nc   net.Conn

	// mu is held for a whole request, its network I/O included: that is
	// how requests on one Conn are serialised. It protects the fields
	// below.
	mu     sync.Mutex
	r      *bufio.Reader
	w      *bufio.Writer
	broken error           // non-nil once the stream is out of step
	ctx    context.Context // the running request's context
	// feats is the peer's FEATURES answer, asked once per connection
	// (an older peer's refusal counts as an empty list); nil until then.
	feats *peerproto.FeaturesOK

	nread atomic.Int64 // bytes received so far; Pool.Do retries only unanswered work
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// Dial connects to the peer at addr and reads its greeting. A
// "CONNECT FAIL" greeting is returned as a *peerproto.FailError.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Conn, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer: connect %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if opts.Secure != nil {
		dl, _ := ctx.Deadline()
		if nc, err = opts.Secure.Client(nc, time.Until(dl)); err != nil {
			return nil, fmt.Errorf("peer: connect %s: %w", addr, dialRefusal(err))
		}
	}
	c := &Conn{addr: addr, opts: opts, nc: nc, w: bufio.NewWriterSize(nc, 64<<10)}
	c.r = bufio.NewReaderSize(countingReader{nc, &c.nread}, 64<<10)
	dl, _ := ctx.Deadline()
	_ = nc.SetDeadline(dl)
	if _, err := peerproto.ReadReply(c.r, peerproto.VerbConnect); err != nil {
		nc.Close()
		return nil, fmt.Errorf("peer: connect %s: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	if opts.Attrs || opts.Posix {
		want := []string{peerproto.FeatureAttrs}
		if opts.Posix {
			want = append(want, peerproto.FeaturePosix)
		}
		if _, err := c.features(ctx, want); err != nil {
			nc.Close()
			return nil, fmt.Errorf("peer: connect %s: %w", addr, err)
		}
	}
	return c, nil
}

// dialRefusal turns a refusal line received in place of the server's
// membership proof into the *peerproto.FailError it carries
// ("CONNECT FAIL denied not a member of this cluster").
func dialRefusal(err error) error {
	var re *secure.RefusedError
	if errors.As(err, &re) {
		if _, perr := peerproto.ParseReply([]byte(re.Line), peerproto.VerbConnect); perr != nil {
			var fe *peerproto.FailError
			if errors.As(perr, &fe) {
				return fe
			}
		}
	}
	return err
}

// Addr returns the address the connection was dialled to.
func (c *Conn) Addr() string { return c.addr }

// Close closes the connection, politely if it is in step.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_ = peerproto.WriteMessage(c.nc, peerproto.Quit{})
		c.broken = ErrBroken
	}
	return c.nc.Close()
}

// Broken reports whether the connection can no longer be used.
func (c *Conn) Broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken != nil
}

// begin takes the request lock and arms deadlines from ctx. The returned
// function releases both; it must be called exactly once.
func (c *Conn) begin(ctx context.Context) (func(), error) {
	c.mu.Lock()
	if c.broken != nil {
		c.mu.Unlock()
		return nil, c.broken
	}
	if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.ctx = ctx
	c.touch()
	// Cancelling ctx unblocks any pending read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	return func() {
		if !stop() && c.broken == nil {
			// The deadline was forced into the past: the stream is lost.
			c.broken = fmt.Errorf("peer: %s: %w", c.addr, ctx.Err())
		}
		c.mu.Unlock()
	}, nil
}

// touch renews the progress deadline, unless the request was cancelled
// (whose forced deadline must stand).
func (c *Conn) touch() {
	c.extend(c.opts.IOTimeout)
}

// extend sets the deadline d from now. A cancellation that raced with it
// is re-applied, so it is never lost.
func (c *Conn) extend(d time.Duration) {
	if c.ctx.Err() != nil {
		return
	}
	_ = c.nc.SetDeadline(time.Now().Add(d))
	if c.ctx.Err() != nil {
		_ = c.nc.SetDeadline(time.Unix(1, 0))
	}
}

// fail marks the stream as out of step and returns err, wrapped with context.
func (c *Conn) fail(op, name string, err error) error {
	var fe *peerproto.FailError
	if errors.As(err, &fe) {
		// A refusal leaves the stream in step.
		return fmt.Errorf("peer %s: %s %q: %w", c.addr, op, name, err)
	}
	c.broken = fmt.Errorf("peer %s: %w (%v)", c.addr, ErrBroken, err)
	c.nc.Close()
	return fmt.Errorf("peer %s: %s %q: %w", c.addr, op, name, c.cause(err))
}

// cause returns the request's cancellation instead of err when the
// request was cancelled: the forced deadline makes the read fail with a
// timeout, but the caller must see context.Canceled (a FUSE interrupt,
// answered EINTR so the kernel restarts the call), not a dead peer.
func (c *Conn) cause(err error) error {
	if cerr := c.ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// send writes one request line and flushes it.
func (c *Conn) send(m peerproto.Message) error {
	b := m.AppendTo(make([]byte, 0, 128))
	b = append(b, '\n')
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.w.Flush()
}

// roundTrip sends m and reads one reply to its verb.
func (c *Conn) roundTrip(ctx context.Context, m peerproto.Message, name string) (peerproto.Message, error) {
	done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := c.send(m); err != nil {
		return nil, c.fail(m.Verb(), name, err)
	}
	reply, err := peerproto.ReadReply(c.r, m.Verb())
	if err != nil {
		return nil, c.fail(m.Verb(), name, err)
	}
	return reply, nil
}

// PeerID returns the identity of the peer's export, as its FEATURES
// answer gave it on this connection (ClientOptions.Attrs); "" if it was
// not asked or not told.
func (c *Conn) PeerID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.feats == nil {
		return ""
	}
	return c.feats.ID
}

// Posix reports whether the connection is in whole-filesystem mode: it
// asked (ClientOptions.Posix) and the peer serves it. Owners and Devices
// say what more the peer allows there.
func (c *Conn) Posix() bool { return c.opts.Posix && c.has(peerproto.FeaturePosix) }

// Owners reports whether the peer stores owners as they are (SETATTR
// uid= and gid=), as its FEATURES answer on this connection said.
func (c *Conn) Owners() bool { return c.has(peerproto.FeatureOwners) }

// Setid reports whether the peer takes PUT's "setid" (peerproto.Put.Setid,
// peerproto.FeatureSetid), as its FEATURES answer on this connection
// said.
func (c *Conn) Setid() bool { return c.has(peerproto.FeatureSetid) }

// KeepsOwner reports whether the peer gives new content a PUT stores over
// a file that file's owner itself (peerproto.FeatureKeepOwner), as its
// FEATURES answer on this connection said.
func (c *Conn) KeepsOwner() bool { return c.has(peerproto.FeatureKeepOwner) }

// MkdirOwner reports whether the peer makes a directory with the owner
// MKDIR names (uid= gid=), as its FEATURES answer on this connection
// said.
func (c *Conn) MkdirOwner() bool { return c.has(peerproto.FeatureMkdirOwner) }

// Devices reports whether the peer creates device nodes (MKNOD c and b),
// as its FEATURES answer on this connection said.
func (c *Conn) Devices() bool { return c.has(peerproto.FeatureDevices) }

// Streams reports whether the peer takes streamed PUTs (StartPut), as
// its FEATURES answer on this connection said.
func (c *Conn) Streams() bool { return c.has(peerproto.FeatureStream) }

// ReadOnly reports whether the peer said its export is read-only.
func (c *Conn) ReadOnly() bool { return c.has(peerproto.FeatureReadOnly) }

// has reports whether the FEATURES answer this connection asked for
// when dialled names word; false if it asked none.
func (c *Conn) has(word string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.feats != nil && c.feats.Has(word)
}

// Features returns the protocol extensions the peer serves (FEATURES),
// asked once per connection. A peer that predates the verb serves none.
func (c *Conn) Features(ctx context.Context) (peerproto.FeaturesOK, error) {
	return c.features(ctx, nil)
}

// features is Features, turning on the extensions in want if it asks.
func (c *Conn) features(ctx context.Context, want []string) (peerproto.FeaturesOK, error) {
	c.mu.Lock()
	f := c.feats
	c.mu.Unlock()
	if f != nil {
		return *f, nil
	}
	reply, err := c.roundTrip(ctx, peerproto.Features{Words: want}, "")
	var fe *peerproto.FailError
	switch {
	case errors.As(err, &fe) && (fe.Code == peerproto.CodeUnsupported || fe.Code == peerproto.CodeInvalid):
		// A peer that predates the verb, or its words: no extensions.
		f = &peerproto.FeaturesOK{}
	case err != nil:
		return peerproto.FeaturesOK{}, err
	default:
		ok, isOK := reply.(peerproto.FeaturesOK)
		if !isOK {
			return peerproto.FeaturesOK{}, c.fail(peerproto.VerbFeatures, "", errors.New("want FEATURES OK"))
		}
		f = &ok
	}
	c.mu.Lock()
	c.feats = f
	c.mu.Unlock()
	return *f, nil
}
