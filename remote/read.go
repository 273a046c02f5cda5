package remote

// The read path: small files fetched whole into the cache, large ones
// by ranged GET with read-ahead (and the streams of prefetch.go).

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

const (
	minWindow = 128 << 10
	maxWindow = 8 << 20
	// inlineMax is the largest upload sent inline (PUT ... inline): the
	// round trip it saves matters for small files, and a refused upload
	// has been sent for nothing.
	inlineMax = 1 << 20
)

// fetchWhole returns a pinned cache copy of the whole file, streaming it
// from the peer into the cache unless the cache holds a copy of this size
// and version.
func (s *Store) fetchWhole(ctx context.Context, p *peerConn, key cache.Key, size int64, ver peerproto.Version) (*cache.Handle, error) {
	if ch, ok, err := s.cache.Acquire(key, size, s.cacheVersion(p, ver), false); err == nil && ok {
		return ch, nil
	} else if ch != nil {
		ch.Release()
	}
	var ch *cache.Handle
	get := func(c *peer.Conn) error {
		return c.GetStream(ctx, key.Path, func(got int64, r io.Reader) error {
			// The peer's size is the truth; the attributes we had may be
			// stale. A copy whose size differs from them cannot be tied
			// to their version, so it is recorded with none (never reused).
			v := ver
			if got != size {
				v = peerproto.NoVersion
			}
			body := &readerErr{r: r}
			var err error
			ch, err = s.cache.Fill(key, body, got, s.cacheVersion(p, v))
			switch {
			case err == nil:
				s.countBytes(p, got, 0)
			case body.err == nil:
				// The transfer was fine; storing it here failed (a full
				// cache disk): keep the errno, do not blame the peer.
				err = fmt.Errorf("%w: %w", errLocal, err)
			}
			return err
		})
	}
	err := s.poolDo(ctx, p, "GET", get)
	if errors.Is(err, peer.ErrCutShort) {
		// The file shrank while it was sent: once more, at its new size.
		err = s.poolDo(ctx, p, "GET", get)
	}
	if err != nil {
		p.attrs.forget(key.Path)
		return nil, netErr(p, err)
	}
	return ch, nil
}

// ReadAt implements fusefs.Store.
func (s *Store) ReadAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	h, err := s.handle(fh)
	if err != nil {
		return 0, err
	}
	if h.state != nil {
		ch, err := s.readable(ctx, h.state, off, int64(len(p)))
		if err != nil {
			return 0, err
		}
		return readFull(ch, p, off)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s.follow(h)
	if h.clean == nil && h.size <= s.opts.WholeFile {
		ch, err := s.fetchWhole(ctx, h.p, h.key, h.size, h.ver)
		if err != nil {
			return 0, err
		}
		h.clean = ch
	}
	if h.clean == nil && !h.looked {
		// A large file is streamed, never fetched whole, but a copy the
		// cache already holds (this mount wrote the file, or read it
		// whole when it was small) is as good as the peer's while the
		// peer reports the same size and version: read it from the disk
		// here instead of over the network.
		h.looked = true
		if ch, ok, err := s.cache.Acquire(h.key, h.size, s.cacheVersion(h.p, h.ver), false); err == nil && ok {
			h.clean = ch
		} else if ch != nil {
			ch.Release()
		}
	}
	if h.clean != nil {
		return readFull(h.clean, p, off)
	}
	// Near the last read counts as sequential: the kernel's async reads
	// arrive slightly out of order.
	if h.next-chunkSize <= off && off <= h.next+chunkSize {
		h.seq++
		h.far = 0
	} else {
		h.seq = 0
		h.far++
	}
	if h.inStream(off) {
		return s.readStream(ctx, h, p, off)
	}
	if h.seq >= 2 {
		h.stopStream() // a sequential run elsewhere: start afresh there
		return s.readStream(ctx, h, p, off)
	}
	if h.far >= 2 {
		h.stopStream() // a random reader now: free the chunks
	}
	return s.readAhead(ctx, h, p, off)
}

type readerAt interface {
	ReadAt(p []byte, off int64) (int, error)
}

// readFull reads like io.ReaderAt but reports end of file as a short count
// without error, as FUSE expects.
func readFull(r readerAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		return n, nil
	}
	return n, err
}

// readerErr remembers the error its reader returned, telling a failed
// transfer from a failure to store what it brought.
type readerErr struct {
	r   io.Reader
	err error
}

func (r *readerErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// readRange fills buf from path on p at off with one ranged GET and
// returns the count, short only at end of file. A transfer the peer cut
// short (the file shrank while it was sent) is asked for once more, so
// that the reader sees the new end of file instead of an error.
func (s *Store) readRange(ctx context.Context, p *peerConn, path string, buf []byte, off int64) (int, error) {
	for retried := false; ; retried = true {
		var n int
		err := s.poolDo(ctx, p, "GET", func(c *peer.Conn) error {
			var err error
			n, err = c.ReadAt(ctx, path, buf, off)
			return err
		})
		s.countBytes(p, int64(n), 0)
		if err != nil && !retried && errors.Is(err, peer.ErrCutShort) {
			continue
		}
		return n, err
	}
}

// readAhead serves a read of a large file from the handle's read-ahead
// buffer, refilling it with one ranged GET whose size doubles while the
// reader stays sequential. Called with h.mu held.
func (s *Store) readAhead(ctx context.Context, h *handle, p []byte, off int64) (int, error) {
	if off >= h.raOff && off+int64(len(p)) <= h.raOff+int64(len(h.ra)) {
		h.next = off + int64(len(p))
		return copy(p, h.ra[off-h.raOff:]), nil
	}
	switch {
	case off == h.next && h.window > 0:
		h.window = min(max(2*h.window, minWindow), maxWindow)
	case off == h.next || off == 0:
		h.window = minWindow
	default:
		// A random read: fetch what was asked and no more, so 4 KiB
		// reads cost 4 KiB; a run of sequential reads grows it again.
		h.window = int64(len(p))
	}
	want := max(h.window, int64(len(p)))
	if cap(h.ra) < int(want) {
		h.ra = make([]byte, want)
	}
	h.ra = h.ra[:want]
	n, err := s.readRange(ctx, h.p, h.key.Path, h.ra, off)
	if err != nil {
		h.ra = h.ra[:0]
		return 0, netErr(h.p, err)
	}
	h.ra = h.ra[:n]
	h.raOff = off
	h.next = off + int64(min(len(p), n))
	return copy(p, h.ra), nil
}
