package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

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

// Put uploads size bytes from src as name. It returns once the peer
// confirms the file is stored intact and durable (PUT DONE). If src is an
// *os.File the bytes go out with sendfile.
func (c *Conn) Put(ctx context.Context, name string, src io.Reader, size int64, progress Progress) (peerproto.PutDone, error) {
	return c.put(ctx, peerproto.Put{Name: name, Size: size}, src, progress)
}

// PutWith uploads with the options of m (async, inline, base condition);
// m.Name and m.Size name the file and the number of bytes read from src.
// A conditional PUT whose base is stale fails with a *peerproto.FailError
// of code conflict, before any byte is sent or after the payload.
//
// With m.Inline the payload goes right after the request line, without
// waiting for PUT OK: one round trip instead of two, worth it for small
// files (a payload up to half the write buffer, 32 KiB, even shares the
// request's write). Only for peers that support it (package export's
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

// PutDelta uploads only what changed (m.Delta): the new content is the
// version m.Ver names, resized to m.NewSize, with m.Ranges written in,
// their bytes read from src at their offsets (src holds the new content).
// m.Size is set here, to the ranges' total. Only to a peer whose FEATURES
// name delta (Conn.Features): an older one refuses the line as invalid.
// A peer that no longer has version m.Ver refuses with conflict, before
// any byte is sent or after the payload, as for PutWith.
func (c *Conn) PutDelta(ctx context.Context, m peerproto.Put, src io.ReaderAt, progress Progress) (peerproto.PutDone, error) {
	rs := make([]io.Reader, 0, len(m.Ranges))
	m.Size = 0
	for _, r := range m.Ranges {
		rs = append(rs, io.NewSectionReader(src, r.Off, r.Len))
		m.Size += r.Len
	}
	if !m.Delta {
		return peerproto.PutDone{}, fmt.Errorf("peer %s: PUT %q: not a delta", c.addr, m.Name)
	}
	if err := m.CheckDelta(); err != nil {
		return peerproto.PutDone{}, fmt.Errorf("peer %s: PUT %q: %w", c.addr, m.Name, err)
	}
	if m.Inline {
		f, err := c.Features(ctx)
		if err != nil {
			return peerproto.PutDone{}, err
		}
		m.Inline = f.Has(peerproto.FeatureInline)
	}
	return c.put(ctx, m, io.MultiReader(rs...), progress)
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
	stored := size // what PUT DONE must report
	// Storing includes an fsync of the whole file on the far side: allow
	// for a slow disk (20 MB/s) on top of the usual timeout. A delta
	// makes the peer copy the old content first, where its filesystem
	// cannot share blocks: before PUT OK, or before it reads an inline
	// payload.
	storing := 3*c.opts.IOTimeout + time.Duration(size/20e6)*time.Second
	if m.Delta {
		stored = m.NewSize
		storing = 3*c.opts.IOTimeout + time.Duration(m.NewSize/20e6)*time.Second
	}
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
			if m.Delta {
				c.extend(storing)
			}
			if _, err := peerproto.ReadReply(c.r, peerproto.VerbPut); err != nil {
				return peerproto.PutDone{}, c.fail("PUT", name, err)
			}
		}
	}
	// Write straight to the connection: the bufio.Writer is empty after
	// send, and bypassing it lets *net.TCPConn.ReadFrom use sendfile (over
	// TLS, io.CopyN goes through a buffer instead).
	for moved < size {
		if moved == 0 && m.Delta && m.Inline {
			c.extend(storing) // the peer may still be copying the old content
		} else {
			c.touch()
		}
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
	c.extend(storing)
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
	if pd.Size != stored {
		return pd, c.fail("PUT", name, fmt.Errorf("peer stored %d bytes, want %d", pd.Size, stored))
	}
	return pd, nil
}
