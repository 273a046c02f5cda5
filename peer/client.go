package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
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

	mu     sync.Mutex // serialises requests; protects the fields below
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
	if opts.Attrs {
		if _, err := c.features(ctx, []string{peerproto.FeatureAttrs}); err != nil {
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

// Ping checks the peer is alive.
func (c *Conn) Ping(ctx context.Context) error {
	_, err := c.roundTrip(ctx, peerproto.Ping{}, "")
	return err
}

// Stat returns the attributes of name ("" for the export root).
func (c *Conn) Stat(ctx context.Context, name string) (peerproto.Entry, error) {
	r, err := c.roundTrip(ctx, peerproto.Stat{Name: name}, name)
	if err != nil {
		return peerproto.Entry{}, err
	}
	return r.(peerproto.StatOK).Entry, nil
}

// List returns the entries of directory dir ("" for the export root).
func (c *Conn) List(ctx context.Context, dir string) ([]peerproto.Entry, error) {
	done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := c.send(peerproto.List{Dir: dir}); err != nil {
		return nil, c.fail("LIST", dir, err)
	}
	reply, err := peerproto.ReadReply(c.r, peerproto.VerbList)
	if err != nil {
		return nil, c.fail("LIST", dir, err)
	}
	n := reply.(peerproto.ListOK).Count
	entries := make([]peerproto.Entry, 0, min(n, 4096))
	for i := 0; i < n; i++ {
		if i%256 == 0 {
			c.touch()
		}
		line, err := peerproto.ReadLine(c.r)
		if err != nil {
			return nil, c.fail("LIST", dir, err)
		}
		e, err := peerproto.ParseEntry(line)
		if err != nil {
			return nil, c.fail("LIST", dir, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func (c *Conn) simple(ctx context.Context, m peerproto.Message, name string) error {
	_, err := c.roundTrip(ctx, m, name)
	return err
}

// Delete removes file name.
func (c *Conn) Delete(ctx context.Context, name string) error {
	return c.simple(ctx, peerproto.Delete{Name: name}, name)
}

// Rmdir removes the empty directory name.
func (c *Conn) Rmdir(ctx context.Context, name string) error {
	return c.simple(ctx, peerproto.Rmdir{Name: name}, name)
}

// Mkdir creates directory name with permission bits mode (0: default).
func (c *Conn) Mkdir(ctx context.Context, name string, mode uint32) error {
	return c.simple(ctx, peerproto.Mkdir{Name: name, Mode: mode}, name)
}

// Rename renames from to to, replacing a target file atomically.
func (c *Conn) Rename(ctx context.Context, from, to string) error {
	return c.simple(ctx, peerproto.Rename{From: from, To: to}, from)
}

// Setattr changes the attributes set in s and returns the new attributes.
func (c *Conn) Setattr(ctx context.Context, s peerproto.Setattr) (peerproto.Entry, error) {
	r, err := c.roundTrip(ctx, s, s.Name)
	if err != nil {
		return peerproto.Entry{}, err
	}
	return r.(peerproto.SetattrOK).Entry, nil
}

// Statfs returns the space of the peer's export filesystem, in bytes.
func (c *Conn) Statfs(ctx context.Context) (peerproto.StatfsOK, error) {
	r, err := c.roundTrip(ctx, peerproto.Statfs{}, "")
	if err != nil {
		return peerproto.StatfsOK{}, err
	}
	return r.(peerproto.StatfsOK), nil
}

// Progress is called with the number of payload bytes moved so far.
type Progress func(done int64)

// chunk is how much payload moves between deadline renewals.
const chunk = 1 << 20

// Get reads length bytes of name starting at off (length < 0: to the end)
// and writes them to dst. It returns the number of bytes the peer sent,
// which is short only at end of file.
func (c *Conn) Get(ctx context.Context, name string, off, length int64, dst io.Writer, progress Progress) (int64, error) {
	done, err := c.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	if err := c.send(peerproto.Get{Name: name, Offset: off, Length: length}); err != nil {
		return 0, c.fail("GET", name, err)
	}
	reply, err := peerproto.ReadReply(c.r, peerproto.VerbGet)
	if err != nil {
		return 0, c.fail("GET", name, err)
	}
	n := reply.(peerproto.GetOK).Size
	if length >= 0 && n > length {
		return 0, c.fail("GET", name, fmt.Errorf("peer announced %d bytes, asked for at most %d", n, length))
	}
	var moved int64
	for moved < n {
		c.touch()
		k, err := io.CopyN(dst, c.r, min(chunk, n-moved))
		moved += k
		if progress != nil {
			progress(moved)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: %w", ErrCutShort, io.ErrUnexpectedEOF)
			}
			return moved, c.fail("GET", name, fmt.Errorf("after %d of %d bytes: %w", moved, n, err))
		}
	}
	return n, nil
}

// ReadAt fills p from name at off with one ranged GET and returns the
// count, short only at end of file.
func (c *Conn) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	w := sliceWriter{buf: p}
	n, err := c.Get(ctx, name, off, int64(len(p)), &w, nil)
	return int(n), err
}

type sliceWriter struct {
	buf []byte
	n   int
}

func (w *sliceWriter) Write(p []byte) (int, error) {
	n := copy(w.buf[w.n:], p)
	w.n += n
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// Put uploads size bytes from src as name. It returns once the peer
// confirms the file is stored intact and durable (PUT DONE). If src is an
// *os.File the bytes go out with sendfile.
func (c *Conn) Put(ctx context.Context, name string, src io.Reader, size int64, progress Progress) (peerproto.PutDone, error) {
	return c.put(ctx, peerproto.Put{Name: name, Size: size}, src, progress)
}

// PutAsync is Put without waiting for the peer's disk: it returns once
// the file is stored intact and visible under its name; Fsync makes it
// durable. A mount uses it on close, and Fsync on fsync.
func (c *Conn) PutAsync(ctx context.Context, name string, src io.Reader, size int64, progress Progress) (peerproto.PutDone, error) {
	return c.put(ctx, peerproto.Put{Name: name, Size: size, Async: true}, src, progress)
}

// PutWith uploads with the options of m (async, inline, base condition);
// m.Name and m.Size name the file and the number of bytes read from src.
// A conditional PUT whose base is stale fails with a *peerproto.FailError
// of code conflict, before any byte is sent or after the payload.
//
// With m.Inline the payload goes right after the request line, without
// waiting for PUT OK: one round trip instead of two, worth it for small
// files (a payload up to half the write buffer, 32 KiB, even shares the
// request's write). Only for peers that support it (this package's
// Server does): an older peer refuses the line as invalid, and any
// invalid refusal of an inline PUT closes the connection.
func (c *Conn) PutWith(ctx context.Context, m peerproto.Put, src io.Reader, progress Progress) (peerproto.PutDone, error) {
	if m.Inline {
		// An older peer would read the payload as requests: send inline
		// only to a peer that says it serves it.
		f, err := c.Features(ctx)
		if err != nil {
			return peerproto.PutDone{}, err
		}
		m.Inline = f.Has(peerproto.FeatureInline)
	}
	return c.put(ctx, m, src, progress)
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

// Fsync asks the peer to make everything stored so far durable.
func (c *Conn) Fsync(ctx context.Context) error {
	return c.simple(ctx, peerproto.Fsync{}, "")
}

// FsyncFiles asks the peer to make the named files (and their directory
// entries) durable: cheaper than Fsync on a busy filesystem, which the
// peer syncs whole. A peer that cannot (FEATURES), an empty list or one
// too long for a line get Fsync.
func (c *Conn) FsyncFiles(ctx context.Context, names []string) error {
	m := peerproto.Fsync{Names: names}
	if len(names) == 0 || len(m.AppendTo(nil)) >= peerproto.MaxLine {
		return c.Fsync(ctx)
	}
	f, err := c.Features(ctx)
	if err != nil {
		return err
	}
	if !f.Has(peerproto.FeatureFsyncFiles) {
		return c.Fsync(ctx)
	}
	return c.simple(ctx, m, names[0])
}

// GetStream asks for the whole file name and calls fn with the size the
// peer announced and a reader of exactly that many bytes, so a caller can
// stream a file whose size changed since it last looked. If fn returns an
// error, or leaves bytes unread, the connection is dropped.
func (c *Conn) GetStream(ctx context.Context, name string, fn func(size int64, r io.Reader) error) error {
	done, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := c.send(peerproto.Get{Name: name, Length: -1}); err != nil {
		return c.fail("GET", name, err)
	}
	reply, err := peerproto.ReadReply(c.r, peerproto.VerbGet)
	if err != nil {
		return c.fail("GET", name, err)
	}
	n := reply.(peerproto.GetOK).Size
	body := &payloadReader{c: c, r: io.LimitedReader{R: c.r, N: n}}
	if err := fn(n, body); err != nil {
		return c.fail("GET", name, err)
	}
	if body.r.N > 0 {
		return c.fail("GET", name, fmt.Errorf("%d of %d bytes left unread", body.r.N, n))
	}
	return nil
}

// payloadReader reads a payload, renewing the progress deadline as bytes
// arrive and reporting a cut stream as ErrCutShort (and
// io.ErrUnexpectedEOF).
type payloadReader struct {
	c *Conn
	r io.LimitedReader
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.r.N <= 0 {
		return 0, io.EOF
	}
	p.c.touch()
	n, err := p.r.Read(b)
	if errors.Is(err, io.EOF) && p.r.N > 0 {
		err = fmt.Errorf("%w: %w", ErrCutShort, io.ErrUnexpectedEOF)
	}
	return n, err
}

// sourceErr returns the error of a PUT's payload copy that stopped after
// moved of size bytes, marked ErrSource when the source, not the
// connection, failed: it ended early, or reading it failed.
func sourceErr(err error, moved, size int64) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: source ended after %d of %d bytes: %w", ErrSource, moved, size, io.ErrUnexpectedEOF)
	case errors.As(err, &pe):
		return fmt.Errorf("%w: after %d of %d bytes: %w", ErrSource, moved, size, err)
	}
	return err
}

func (c *Conn) put(ctx context.Context, m peerproto.Put, src io.Reader, progress Progress) (peerproto.PutDone, error) {
	name, size := m.Name, m.Size
	done, err := c.begin(ctx)
	if err != nil {
		return peerproto.PutDone{}, err
	}
	defer done()
	var moved int64
	if m.Inline && size <= int64(c.w.Size()/2) {
		// Small: the line and the payload leave in one write (one TLS
		// record).
		b := append(m.AppendTo(c.w.AvailableBuffer()), '\n')
		if _, err := c.w.Write(b); err != nil {
			return peerproto.PutDone{}, c.fail("PUT", name, err)
		}
		k, err := io.CopyN(c.w, src, size)
		moved = k
		if err == nil {
			err = c.w.Flush()
		} else {
			err = sourceErr(err, moved, size)
		}
		if err != nil {
			// Nothing, or not all, went out: drop the stream.
			c.broken = ErrBroken
			c.nc.Close()
			return peerproto.PutDone{}, fmt.Errorf("peer %s: PUT %q: %w", c.addr, name, c.cause(err))
		}
		if progress != nil {
			progress(moved)
		}
	} else {
		if err := c.send(m); err != nil {
			return peerproto.PutDone{}, c.fail("PUT", name, err)
		}
		if !m.Inline {
			if _, err := peerproto.ReadReply(c.r, peerproto.VerbPut); err != nil {
				return peerproto.PutDone{}, c.fail("PUT", name, err)
			}
		}
	}
	// Write straight to the connection: the bufio.Writer is empty after
	// send, and bypassing it lets *net.TCPConn.ReadFrom use sendfile (over
	// TLS, io.CopyN goes through a buffer instead).
	for moved < size {
		c.touch()
		k, err := io.CopyN(c.nc, src, min(chunk, size-moved))
		moved += k
		if progress != nil {
			progress(moved)
		}
		if err != nil {
			err = sourceErr(err, moved, size)
			// The peer waits for bytes that will never come: drop the stream.
			c.broken = ErrBroken
			c.nc.Close()
			return peerproto.PutDone{}, fmt.Errorf("peer %s: PUT %q: %w", c.addr, name, c.cause(err))
		}
	}
	// Storing includes an fsync of the whole file on the far side: allow
	// for a slow disk (20 MB/s) on top of the usual timeout.
	c.extend(3*c.opts.IOTimeout + time.Duration(size/20e6)*time.Second)
	reply, err := peerproto.ReadReply(c.r, peerproto.VerbPut)
	if err != nil {
		var fe *peerproto.FailError
		if m.Inline && errors.As(err, &fe) && fe.Code == peerproto.CodeInvalid {
			// A peer that does not know inline refuses the line and reads
			// the payload as requests: the stream cannot be trusted.
			c.broken = fmt.Errorf("peer %s: %w (inline PUT refused as invalid)", c.addr, ErrBroken)
			c.nc.Close()
		}
		return peerproto.PutDone{}, c.fail("PUT", name, err)
	}
	pd, ok := reply.(peerproto.PutDone)
	if !ok {
		return pd, c.fail("PUT", name, errors.New("want PUT DONE after the payload"))
	}
	if pd.Size != size {
		return pd, c.fail("PUT", name, fmt.Errorf("peer stored %d bytes, sent %d", pd.Size, size))
	}
	return pd, nil
}

// PutFile uploads the local file path as name.
func (c *Conn) PutFile(ctx context.Context, name, path string, progress Progress) (peerproto.PutDone, error) {
	f, err := os.Open(path)
	if err != nil {
		return peerproto.PutDone{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return peerproto.PutDone{}, err
	}
	if !fi.Mode().IsRegular() {
		return peerproto.PutDone{}, fmt.Errorf("%s: not a regular file", path)
	}
	return c.Put(ctx, name, f, fi.Size(), progress)
}
