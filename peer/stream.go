package peer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// ErrNoStream is returned by StartPut for a peer whose FEATURES do not
// name stream: the content must go as a whole PUT.
var ErrNoStream = errors.New("peer: the peer does not take streamed PUTs")

// PutStream is a streamed PUT under way (Conn.StartPut): its content goes
// to the peer in chunks as the caller has them, and End stores it. It
// owns its Conn until End or Abort returns: no other request may be sent
// on it meanwhile. Its methods must not be called concurrently.
type PutStream struct {
	c    *Conn
	name string
	sent int64 // bytes sent so far
}

// StartPut starts a streamed PUT with the options of m (async, a base
// condition): m.Stream is set here, and m.Size is an estimate of the
// final size that the peer checks free space for (0 for none). It
// returns once the peer has answered PUT OK; a refusal is a
// *peerproto.FailError (a conflict, nospace...) and leaves the Conn in
// step. A peer whose FEATURES do not name stream gets nothing
// (ErrNoStream).
func (c *Conn) StartPut(ctx context.Context, m peerproto.Put) (*PutStream, error) {
	m.Stream, m.Inline, m.Delta, m.Ranges = true, false, false, nil
	f, err := c.Features(ctx)
	if err != nil {
		return nil, err
	}
	if !f.Has(peerproto.FeatureStream) {
		return nil, fmt.Errorf("peer %s: PUT %q: %w", c.addr, m.Name, ErrNoStream)
	}
	done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := c.send(m); err != nil {
		return nil, c.fail("PUT", m.Name, err)
	}
	if _, err := peerproto.ReadReply(c.r, peerproto.VerbPut); err != nil {
		return nil, c.fail("PUT", m.Name, err)
	}
	return &PutStream{c: c, name: m.Name}, nil
}

// Sent returns how many bytes of content have been sent.
func (s *PutStream) Sent() int64 { return s.sent }

// Write sends p as the content's next bytes (in DATA chunks of at most
// peerproto.MaxChunk). A failure breaks the Conn: the peer drops the
// stream.
func (s *PutStream) Write(ctx context.Context, p []byte) error {
	c := s.c
	done, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	for len(p) > 0 {
		n := min(len(p), peerproto.MaxChunk)
		b := append(peerproto.PutData{Len: int64(n)}.AppendTo(c.w.AvailableBuffer()), '\n')
		if _, err := c.w.Write(b); err != nil {
			return c.fail("PUT", s.name, err)
		}
		for off := 0; off < n; {
			k := min(n-off, chunk)
			c.touch()
			if _, err := c.w.Write(p[off : off+k]); err != nil {
				return c.fail("PUT", s.name, err)
			}
			off += k
		}
		if err := c.w.Flush(); err != nil {
			return c.fail("PUT", s.name, err)
		}
		s.sent += int64(n)
		p = p[n:]
	}
	return nil
}

// End stores what was sent: the peer checks the PUT's condition again,
// renames the content into place (fsynced first unless async) and
// answers PUT DONE, returned here; or PUT FAIL, a *peerproto.FailError
// that leaves the Conn in step. Either way the stream is over.
func (s *PutStream) End(ctx context.Context) (peerproto.PutDone, error) {
	c := s.c
	done, err := c.begin(ctx)
	if err != nil {
		return peerproto.PutDone{}, err
	}
	defer done()
	if err := c.send(peerproto.PutEnd{Size: s.sent}); err != nil {
		return peerproto.PutDone{}, c.fail("PUT", s.name, err)
	}
	// Storing may fsync the whole file (20 MB/s on a slow disk).
	c.extend(3*c.opts.IOTimeout + time.Duration(s.sent/20e6)*time.Second)
	reply, err := peerproto.ReadReply(c.r, peerproto.VerbPut)
	if err != nil {
		return peerproto.PutDone{}, c.fail("PUT", s.name, err)
	}
	pd, ok := reply.(peerproto.PutDone)
	if !ok {
		return pd, c.fail("PUT", s.name, errors.New("want PUT DONE after END"))
	}
	if pd.Size != s.sent {
		return pd, c.fail("PUT", s.name, fmt.Errorf("peer stored %d bytes, want %d", pd.Size, s.sent))
	}
	return pd, nil
}

// Abort drops the stream: the peer stores nothing and answers nothing,
// and the Conn is free for other requests.
func (s *PutStream) Abort(ctx context.Context) error {
	c := s.c
	done, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := c.send(peerproto.PutAbort{}); err != nil {
		return c.fail("PUT", s.name, err)
	}
	return nil
}

// Drop closes the stream's connection at once, without a word to the
// peer (which drops what it received): for a stream that cannot be
// ended in step, its context cancelled say.
func (s *PutStream) Drop() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.broken == nil {
		s.c.broken = fmt.Errorf("peer %s: %w (streamed PUT dropped)", s.c.addr, ErrBroken)
	}
	s.c.nc.Close()
}

// Sum asks the peer for the size and SHA-256 of its file name (SUM; only
// to a peer whose FEATURES name sum: an older one refuses the verb). The
// peer reads the whole file first: size, the file's expected size, sets
// how long that may take (20 MB/s on top of the usual timeout).
func (c *Conn) Sum(ctx context.Context, name string, size int64) (peerproto.SumOK, error) {
	done, err := c.begin(ctx)
	if err != nil {
		return peerproto.SumOK{}, err
	}
	defer done()
	if err := c.send(peerproto.Sum{Name: name}); err != nil {
		return peerproto.SumOK{}, c.fail(peerproto.VerbSum, name, err)
	}
	c.extend(3*c.opts.IOTimeout + time.Duration(size/20e6)*time.Second)
	reply, err := peerproto.ReadReply(c.r, peerproto.VerbSum)
	if err != nil {
		return peerproto.SumOK{}, c.fail(peerproto.VerbSum, name, err)
	}
	ok, isOK := reply.(peerproto.SumOK)
	if !isOK {
		return ok, c.fail(peerproto.VerbSum, name, errors.New("want SUM OK"))
	}
	return ok, nil
}
