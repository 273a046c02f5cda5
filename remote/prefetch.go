package remote

import (
	"context"
	"errors"
	"sync"
)

// Sequential reads of a large file are served from a stream: chunks of
// chunkSize bytes fetched ahead of the reader, chunksAhead of them in
// flight at once, each with its own ranged GET on a connection of the
// peer's pool. The reader then waits for the network only when it is
// faster than the transfer, and the transfers use more than one
// connection (and CPU). Random reads keep fetching exactly what they ask
// (readAhead).
const (
	chunkSize   = 1 << 20
	chunksAhead = 4
)

// maxAhead bounds the chunks fetched ahead of their readers, over all
// handles of a Store: many sequential readers at once must not hold 5 MiB
// each. A chunk a read needs now is fetched regardless.
const maxAhead = 32

// chunkPool is a Store's budget of chunks fetched ahead, and its buffers.
type chunkPool struct {
	// ahead holds one token per chunk fetched ahead and not yet given
	// back (chunk.ahead).
	ahead chan struct{}
	// bufs recycles chunk buffers: a 2 GiB read would otherwise allocate
	// (and zero) 2048 of them.
	bufs sync.Pool
}

func newChunkPool() *chunkPool {
	cp := &chunkPool{ahead: make(chan struct{}, maxAhead)}
	cp.bufs.New = func() any {
		b := make([]byte, chunkSize)
		return &b
	}
	return cp
}

// chunk is one chunk of a stream. All fields but done, buf's contents, n
// and err are guarded by the handle's mu; n and err are written before
// done is closed and read after.
type chunk struct {
	idx     int64
	pool    *chunkPool    // where buf and the ahead token go back to
	done    chan struct{} // closed when the fetch ended
	buf     *[]byte       // from pool.bufs; nil once given back
	n       int           // bytes fetched: less than chunkSize only at end of file
	err     error         // the fetch's error
	fetched bool          // done is closed
	refs    int           // readers copying out of buf
	dropped bool          // no longer in the stream: buf goes back when unused
	ahead   bool          // holds a pool.ahead token until buf goes back
}

// stream is a handle's read-ahead for a sequential reader. Guarded by the
// handle's mu.
type stream struct {
	ctx    context.Context // the fetches'; cancelled when the stream stops
	cancel context.CancelFunc
	chunks map[int64]*chunk
	pos    int64 // chunk index of the last read's start
}

// putBack returns c's buffer to the pool once nothing uses it. Called with
// the handle's mu held.
func (c *chunk) putBack() {
	if c.dropped && c.fetched && c.refs == 0 && c.buf != nil {
		c.pool.bufs.Put(c.buf)
		c.buf = nil
		if c.ahead {
			<-c.pool.ahead
			c.ahead = false
		}
	}
}

// dropChunk takes c out of h's stream. Called with h.mu held.
func (h *handle) dropChunk(c *chunk) {
	if h.st != nil && h.st.chunks[c.idx] == c {
		delete(h.st.chunks, c.idx)
	}
	c.dropped = true
	c.putBack()
}

// stopStream cancels h's stream and drops its chunks. Called with h.mu held.
func (h *handle) stopStream() {
	if h.st == nil {
		return
	}
	h.st.cancel()
	for _, c := range h.st.chunks {
		h.dropChunk(c)
	}
	h.st = nil
}

// inStream reports whether a read at off continues h's stream: it falls
// in the chunk before the last read's or in the ones the stream fetches
// ahead. Called with h.mu held.
func (h *handle) inStream(off int64) bool {
	if h.st == nil {
		return false
	}
	idx := off / chunkSize
	return h.st.pos-1 <= idx && idx <= h.st.pos+chunksAhead+1
}

// fetchAhead starts fetching chunk idx ahead of any reader if the
// process-wide bound allows, and reports whether it did. Called with
// h.mu held.
func (s *Store) fetchAhead(h *handle, idx int64) bool {
	select {
	case s.chunks.ahead <- struct{}{}:
		s.startChunk(h, idx, true)
		return true
	default:
		return false
	}
}

// startChunk starts fetching chunk idx of h's stream; ahead says it holds
// a token of the process-wide bound (a chunk a reader needs now does not).
// Called with h.mu held.
func (s *Store) startChunk(h *handle, idx int64, ahead bool) *chunk {
	c := &chunk{idx: idx, pool: s.chunks, done: make(chan struct{}), buf: s.chunks.bufs.Get().(*[]byte), ahead: ahead}
	h.st.chunks[idx] = c
	ctx, p := h.st.ctx, h.p
	buf := (*c.buf)[:chunkSize]
	go func() {
		n, err := s.readRange(ctx, p, h.key.Path, buf, idx*chunkSize)
		h.mu.Lock()
		c.n, c.err = n, err
		c.fetched = true
		close(c.done)
		c.putBack()
		h.mu.Unlock()
	}()
	return c
}

// readStream serves a sequential read from h's stream, starting one if
// needed and keeping chunksAhead chunks in flight beyond it. Called with
// h.mu held; it is released while waiting for a chunk.
func (s *Store) readStream(ctx context.Context, h *handle, p []byte, off int64) (int, error) {
	if h.st == nil {
		sctx, cancel := context.WithCancel(context.Background())
		h.st = &stream{ctx: sctx, cancel: cancel, chunks: map[int64]*chunk{}}
	}
	first := off / chunkSize
	last := (off + int64(len(p)) - 1) / chunkSize
	h.st.pos = max(h.st.pos, first)
	for idx, c := range h.st.chunks {
		// Behind the reader; one chunk is kept for reads that arrive
		// late (the kernel's concurrent reads).
		if idx < h.st.pos-1 {
			h.dropChunk(c)
		}
	}
	for idx := first; idx <= last+chunksAhead; idx++ {
		if _, ok := h.st.chunks[idx]; ok {
			continue
		}
		if idx <= last {
			s.startChunk(h, idx, false) // needed now
			continue
		}
		if idx*chunkSize >= h.size || !s.fetchAhead(h, idx) {
			break // past the end of the file as of open, or the bound reached
		}
	}

	n := 0
	for idx := first; idx <= last && n < len(p); idx++ {
		if h.st == nil {
			// Another reader stopped the stream while we waited: the
			// rest of this read goes the random way.
			m, err := s.readAhead(ctx, h, p[n:], off+int64(n))
			return n + m, err
		}
		c, ok := h.st.chunks[idx]
		if !ok {
			c = s.startChunk(h, idx, false)
		}
		c.refs++
		h.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		h.mu.Lock()
		c.refs--
		if !c.fetched {
			c.putBack()
			return n, ctx.Err()
		}
		if c.err != nil && c.dropped && errors.Is(c.err, context.Canceled) {
			// Another reader of this handle stopped the stream (it went
			// elsewhere) while this one waited: read the rest directly.
			c.putBack()
			m, err := s.readAhead(ctx, h, p[n:], off+int64(n))
			return n + m, err
		}
		if c.err != nil {
			err := c.err
			h.dropChunk(c) // the next read tries again
			return n, netErr(h.p, err)
		}
		at := int(off + int64(n) - idx*chunkSize)
		m := 0
		if at < c.n {
			m = copy(p[n:], (*c.buf)[at:c.n])
		}
		c.putBack()
		n += m
		if c.n < chunkSize {
			break // end of file
		}
	}
	h.next = max(h.next, off+int64(n))
	return n, nil
}
