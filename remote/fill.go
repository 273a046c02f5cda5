package remote

// Copies written without their content: opening a file for writing
// downloads nothing, and its first write makes a partial copy
// (cache.Partial) that holds what is written. The peer's bytes are
// fetched into it (Handle.FillAt) only where they are needed: where a
// writable handle reads, and where an upload must send them (a peer
// without delta PUTs, a conflict copy). An upload of a partial copy
// sends only what changed (upload_delta.go).

import (
	"context"
	"errors"
	"fmt"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

const (
	// fillChunk is the least a read through a writable handle fetches
	// around what it reads, aligned: a reader of a large file gets
	// read-ahead without the whole file.
	fillChunk = 1 << 20
	// fillMaxKnown bounds how scattered what a partial copy holds may
	// get (each range is kept in its cache record): past it, the rest of
	// the file is fetched.
	fillMaxKnown = 64
)

// writable returns f's copy to write into. A file opened for writing
// without O_TRUNC has none until it is first used: then it gets a
// partial one of the peer's file as it is then (a STAT, no data),
// holding nothing (or the cache's clean copy of that version, if it has
// one). That version is the base of the next PUT: nothing of an older
// one was seen by this writer, so a change made since the open is not a
// conflict, and one made from now on is.
func (s *Store) writable(ctx context.Context, f *fileState) (*cache.Handle, error) {
	if ch := f.ch.Load(); ch != nil {
		return ch, nil
	}
	f.fetch.Lock()
	defer f.fetch.Unlock()
	if ch := f.ch.Load(); ch != nil {
		return ch, nil
	}
	f.mu.Lock()
	key, owner := f.key, f.owner
	f.mu.Unlock()
	p, err := s.peer(key.Peer)
	if err != nil {
		return nil, err
	}
	var e peerproto.Entry
	err = s.poolDo(ctx, p, "STAT", func(c *peer.Conn) error {
		var err error
		e, err = c.Stat(ctx, key.Path)
		return err
	})
	if err != nil {
		return nil, netErr(p, err)
	}
	p.attrs.rememberStat(key.Path, e, 0, 0) // a plain answer: shown as such
	base := e.Version()
	f.mu.Lock()
	f.remote, f.base = e, base
	f.mu.Unlock()
	ch, err := s.cache.Partial(key, e.Size, s.cacheVersion(p, base), owner+"/"+string(base))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errLocal, err)
	}
	f.ch.Store(ch)
	return ch, nil
}

// readable returns f's copy holding [off, off+n) (as far as the copy
// goes), fetching from the peer what it lacks there: a small file whole,
// a large one by the aligned fillChunk around the read.
func (s *Store) readable(ctx context.Context, f *fileState, off, n int64) (*cache.Handle, error) {
	ch, err := s.writable(ctx, f)
	if err != nil {
		return nil, err
	}
	m := ch.Meta()
	if len(m.Unknown(off, off+n)) == 0 {
		return ch, nil // held: written here, or fetched before
	}
	from, to := off/fillChunk*fillChunk, (off+n+fillChunk-1)/fillChunk*fillChunk
	if m.Size <= s.opts.WholeFile || len(m.Known) > fillMaxKnown {
		from, to = 0, m.Size
	}
	if err := s.fill(ctx, f, ch, from, to); err != nil {
		return nil, err
	}
	return ch, nil
}

// fill fetches into ch, f's copy, the bytes of [off, end) it lacks.
func (s *Store) fill(ctx context.Context, f *fileState, ch *cache.Handle, off, end int64) error {
	key := f.currentKey()
	p, err := s.peer(key.Peer)
	if err != nil {
		return err
	}
	err = s.poolDo(ctx, p, "GET", func(c *peer.Conn) error {
		return s.fillFrom(ctx, c, p, ch, key.Path, off, end)
	})
	if err != nil {
		return netErr(p, err)
	}
	return nil
}

// fillFrom fetches on c the bytes of [off, end) that ch lacks from path
// on p, its peer, by ranged GETs of up to fillChunk bytes. The peer's
// file is the copy's base unless another writer replaced it meanwhile
// (the upload, conditional on the base, then finds the conflict, and
// keeps this copy as a conflict copy): what the peer's file no longer
// holds (it is shorter now) reads as zeros.
func (s *Store) fillFrom(ctx context.Context, c *peer.Conn, p *peerConn, ch *cache.Handle, path string, off, end int64) error {
	var buf []byte
	for _, g := range ch.Meta().Unknown(off, end) {
		if buf == nil {
			buf = make([]byte, min(g.Len(), fillChunk))
		}
		for at := g.Off; at < g.End; {
			b := buf[:min(int64(len(buf)), g.End-at)]
			n, err := c.ReadAt(ctx, path, b, at)
			if errors.Is(err, peer.ErrCutShort) {
				// The file shrank while it was sent: once more, at its
				// new size.
				n, err = c.ReadAt(ctx, path, b, at)
			}
			s.countBytes(p, int64(n), 0)
			if err != nil {
				return err
			}
			clear(b[n:])
			if err := ch.FillAt(b, at); err != nil {
				return fmt.Errorf("%w: %w", errLocal, err)
			}
			at += int64(len(b))
		}
	}
	return nil
}

// complete fetches on c whatever u's copy lacks, for an upload that must
// send all of it (a whole PUT, a conflict copy).
func (s *Store) complete(ctx context.Context, c *peer.Conn, u *upload) error {
	if !u.ch.Meta().Partial {
		return nil
	}
	return s.fillFrom(ctx, c, u.p, u.ch, u.origin, 0, u.ch.Size())
}

// fillIfScattered fetches the rest of f's partial copy once what it holds
// is too scattered to keep track of (fillMaxKnown), or its changes are
// (their upload then sends the whole file anyway). A failure leaves it
// as it is: an upload fetches what it needs.
func (s *Store) fillIfScattered(ctx context.Context, f *fileState, ch *cache.Handle) {
	m := ch.Meta()
	if !m.Partial || (m.Tracked && len(m.Known) <= fillMaxKnown) {
		return
	}
	if err := s.fill(ctx, f, ch, 0, m.Size); err != nil {
		s.log.Debug().Err(err).Str("path", f.currentKey().Path).Msg("fetching the rest of a scattered partial copy")
	}
}

// unknownBase reports whether v cannot be the base of a delta PUT.
func unknownBase(v peerproto.Version) bool { return !v.IsToken() }
