package remote

// Uploading a file while it is written: a streamed PUT (peerproto's
// Put.Stream) started once a new copy holds more than a small file's
// worth, fed as the writer appends, and ended by the close's upload.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

const (
	// streamMin is the size a copy reaches before its upload starts
	// while it is written; a smaller file goes whole at close, inline.
	streamMin = 256 << 10
	// streamBatch is how much written data the streamer waits for
	// before it sends it (all of it goes at the end).
	streamBatch = 128 << 10
	// streamRead is the most the streamer reads from the copy at once.
	streamRead = 1 << 20
	// maxStreams bounds the streams under way in a mount: each holds a
	// connection and a transfer slot on its peer.
	maxStreams = 4
)

// streamIdle is how long a stream waits for its writer: one that pauses
// longer loses it (the close sends the file whole), so that a stream
// never holds a peer's transfer slot, nor its I/O timeout, for long.
var streamIdle = 5 * time.Second

// errStreamDropped is a stream's end without an upload: it was dropped
// here (its writer paused, rewrote what was sent, renamed the file...).
// It says nothing about the peer.
var errStreamDropped = fmt.Errorf("%w: streamed upload dropped", errLocal)

// A streamUp is the upload of a copy under way while it is written: a
// goroutine (run) that holds a connection to the peer, sends what the
// writer appends (read back with cache.Handle.StreamAt) and, when the
// close's upload asks (finish), the rest and END. Any change below what
// it sent, or a copy that is no longer the one it streams, makes finish
// fall back to the usual whole PUT.
//
// The fields from s to owner are read-only once startStream made it. mu
// is a leaf: fileState.dropStream takes it under fileState.mu, and
// nothing is locked, nor any I/O done, while it is held.
type streamUp struct {
	s     *Store
	f     *fileState
	p     *peerConn
	ch    *cache.Handle // the copy streamed: finish ends the stream only for it
	key   cache.Key     // where it goes
	base  peerproto.Version
	owner string

	kick chan struct{} // capacity 1: more data, or a request below
	done chan struct{} // closed when run returns

	mu       sync.Mutex  // protects the fields below
	ending   bool        // finish asked for END
	abort    bool        // drop the stream
	endGoing bool        // END is being sent: abort comes too late
	result   streamEnded // valid once done is closed, if ending
}

// streamEnded is how a stream ended, for finish.
type streamEnded struct {
	pd      peerproto.PutDone
	err     error
	endSent bool // END went out: pd, or err, is the upload's outcome
}

// poke wakes the streamer without blocking.
func (st *streamUp) poke() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// drop asks the streamer to abort; it does not wait.
func (st *streamUp) drop() {
	st.mu.Lock()
	st.abort = true
	st.mu.Unlock()
	st.poke()
}

// streamWrote is called after each write to f's copy ch of [off, end):
// it starts a stream once a copy of new content, written from its start
// onwards with no hole, reaches streamMin, and wakes the one under way.
func (s *Store) streamWrote(f *fileState, ch *cache.Handle, off, end int64) {
	f.mu.Lock()
	if off <= f.seqEnd {
		f.seqEnd = max(f.seqEnd, end)
	} else {
		// A hole (a preallocated file, a torrent's pieces): streaming
		// would send zeros the writer is about to replace.
		f.streamTried, f.streamHole = true, true
		f.dropStream()
	}
	st := f.upStream
	// Not while an upload of the copy runs (a close of another
	// descriptor, a SYNC turn): it sends the copy itself.
	start := st == nil && !f.streamTried && f.seqEnd >= max(f.streamAt, streamMin) && !f.unlinked && f.parked == nil && f.owner != "" && !f.uploading
	if start {
		f.streamTried = true // once per content: a refusal is not retried
	}
	key, base, owner := f.key, f.base, f.owner
	f.mu.Unlock()
	if start {
		// Store.mu comes before fileState.mu: f.mu is not held here.
		var busy bool
		if st, busy = s.startStream(f, ch, key, base, owner); busy {
			f.mu.Lock()
			if f.upStream == nil && !f.streamHole && f.ch.Load() == ch {
				// Every stream of the mount is taken: tried again
				// once this copy has grown by another streamMin.
				f.streamTried, f.streamAt = false, f.seqEnd+streamMin
			}
			f.mu.Unlock()
		}
	}
	if st != nil {
		st.poke()
	}
}

// startStream starts streaming f's copy ch to key, conditional on base,
// if it is to be sent whole: a new file, or one emptied and rewritten
// here, whole in the cache. It returns nil if it does not apply, and
// busy if it would, but the mount's streams are all taken (maxStreams).
func (s *Store) startStream(f *fileState, ch *cache.Handle, key cache.Key, base peerproto.Version, owner string) (st *streamUp, busy bool) {
	m := ch.Meta()
	if m.Partial || m.Detached || !m.Dirty || (m.Tracked && !coversAll(m.Changed, m.Size)) {
		// Not whole here, or a change to the peer's content: the
		// close sends what changed (upload_delta.go).
		return nil, false
	}
	p, err := s.peer(key.Peer)
	if err != nil {
		return nil, false
	}
	if feats, ok := p.link.features(); ok && !feats.stream {
		return nil, false // as its connections last said
	}
	s.mu.Lock()
	if s.closed || s.streams >= maxStreams {
		busy := !s.closed
		s.mu.Unlock()
		return nil, busy
	}
	s.streams++
	s.wg.Add(1)
	s.mu.Unlock()
	st = &streamUp{s: s, f: f, p: p, ch: ch, key: key, base: base, owner: owner,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	f.mu.Lock()
	ok := f.upStream == nil && !f.unlinked && f.parked == nil && f.key == key && f.base == base && f.ch.Load() == ch
	if ok {
		f.upStream = st
	}
	f.mu.Unlock()
	if !ok {
		// Changed meanwhile (renamed, removed, stored): not this time.
		s.mu.Lock()
		s.streams--
		s.mu.Unlock()
		s.wg.Done()
		return nil, false
	}
	go st.run()
	return st, false
}

// coversAll reports whether rs, sorted and apart, cover [0, size).
func coversAll(rs []cache.Range, size int64) bool {
	return size == 0 || len(rs) == 1 && rs[0].Off == 0 && rs[0].End >= size
}

// run is the streamer: it starts the PUT (after the changes written
// behind before it, like any upload), sends what is written, and ends or
// aborts it when asked.
func (st *streamUp) run() {
	s := st.s
	// The mark is this stream's from here: nothing was read for it yet,
	// and no other stream of this copy is under way (f.upStream). Reset
	// here, not under fileState.mu, a leaf that waits on no cache lock.
	st.ch.ResetStream()
	// The copy's stream mark is left as it is: only the next stream's
	// start resets it (a reset here could hide a change from that one).
	defer func() {
		s.mu.Lock()
		s.streams--
		s.mu.Unlock()
		close(st.done)
		s.wg.Done()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop: // Store.Close
			cancel()
		case <-ctx.Done():
		}
	}()
	var res streamEnded
	err := s.waitBehind(ctx, st.p, true)
	if err == nil {
		err = s.poolDo(ctx, st.p, "STREAM", func(c *peer.Conn) error {
			// As long as the stream lasts (Store.send).
			defer st.p.attrs.ownSending(st.key.Path)()
			res = streamEnded{}
			res.pd, res.endSent, res.err = st.send(ctx, c)
			switch {
			case !res.endSent && res.err == nil:
				return errStreamDropped
			case res.err != nil && saysNothingOfPeer(res.err):
				// The close's upload finds out: a peer without
				// streams, or one that refused a chunk (a full disk)
				// and closed the connection, is up.
				return fmt.Errorf("%w: %w", errLocal, res.err)
			}
			// A timeout, a failed dial: the peer is marked down, and
			// the close's upload fails fast instead of waiting again.
			return nil
		})
	}
	if res.err == nil && !res.endSent {
		res.err = err
	}
	st.mu.Lock()
	st.result = res
	st.mu.Unlock()
	if err != nil && !errors.Is(err, errStreamDropped) {
		s.log.Debug().Err(err).Str("remote_peer", st.key.Peer).Str("path", st.key.Path).Msg("streamed upload dropped")
	}
}

// saysNothingOfPeer reports whether a stream's failure err tells nothing
// of whether its peer is up: a peer without streams, a copy written for
// another peer, a refusal, or the connection closed by the peer (after
// refusing a chunk it could not store, say).
func saysNothingOfPeer(err error) bool {
	var fe *peerproto.FailError
	return errors.Is(err, peer.ErrNoStream) || errors.Is(err, errForeign) || errors.As(err, &fe) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

// send runs the stream on c: PUT ... stream, then DATA as the writer
// appends until finish or drop asks, or the writer pauses for
// streamIdle. endSent reports that END went out (pd and err are then
// the PUT's outcome).
func (st *streamUp) send(ctx context.Context, c *peer.Conn) (pd peerproto.PutDone, endSent bool, err error) {
	// Only to the peer it was written for (identity.go).
	if now := st.s.owner(st.p); st.owner != now {
		return pd, false, errForeign
	}
	m := peerproto.Put{Name: st.key.Path, Size: st.ch.Size(), Async: true, Setid: setidFor(c, st.f, st.base)}
	m.SetCond(st.base)
	ps, err := c.StartPut(ctx, m)
	if err != nil {
		return pd, false, err
	}
	buf := make([]byte, streamRead)
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	// dropped ends the stream here, the peer told (ABORT).
	dropped := func() (peerproto.PutDone, bool, error) {
		return pd, false, errors.Join(ps.Abort(ctx), errStreamDropped)
	}
	for {
		select {
		case <-st.kick:
		case <-idle.C:
			st.drop()
		case <-ctx.Done():
			ps.Drop() // mid-stream: the connection is out of step
			return pd, false, ctx.Err()
		}
		ending, abort := st.state()
		if abort {
			return dropped()
		}
		limit := st.limit()
		if !ending && limit-ps.Sent() < streamBatch {
			continue
		}
		for ps.Sent() < limit {
			if _, abort := st.state(); abort {
				return dropped()
			}
			if _, intact := st.ch.Streamed(); !intact {
				// Rewritten below what was sent: void.
				return dropped()
			}
			n, err := st.ch.StreamAt(buf[:min(int64(len(buf)), limit-ps.Sent())], ps.Sent())
			if n == 0 || err != nil {
				// Cut shorter, or released: what is streamed is void.
				return dropped()
			}
			if err := ps.Write(ctx, buf[:n]); err != nil {
				return pd, false, err
			}
		}
		if !ending {
			idle.Reset(streamIdle)
			continue
		}
		if mark, intact := st.ch.Streamed(); !intact || mark != ps.Sent() || st.ch.Size() != mark {
			// Rewritten below what was sent, or changed since, or a
			// hole left: the whole PUT sends the copy as it is.
			return dropped()
		}
		if m.Setid && !setidFor(c, st.f, st.base) {
			// The bits went here while it streamed (another user's
			// write): what it carried may be hers, and must not keep
			// them. The whole PUT sends the copy without setid.
			return dropped()
		}
		// Past here finish waits for END's outcome even if its own
		// context ends: the upload's outcome is this one.
		st.mu.Lock()
		abort = st.abort
		st.endGoing = !abort
		st.mu.Unlock()
		if abort {
			return dropped()
		}
		pd, err = ps.End(ctx)
		return pd, true, err
	}
}

// state returns whether finish asked for END, and whether the stream is
// to be dropped.
func (st *streamUp) state() (ending, abort bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ending, st.abort
}

// limit returns how much of the copy may be sent: what was written from
// its start with no hole (fileState.seqEnd), within its size.
func (st *streamUp) limit() int64 {
	st.f.mu.Lock()
	seq := st.f.seqEnd
	st.f.mu.Unlock()
	return min(seq, st.ch.Size())
}

// finishStream ends f's stream for upload u conditional on base, if one
// is under way for that very copy, name, base and owner (any other is
// dropped): the rest of the copy goes, then END. ok reports that END
// went out, and pd and err are the PUT's outcome; if not, the caller
// sends the copy whole. Caller holds f.up.
func (s *Store) finishStream(ctx context.Context, u *upload, base peerproto.Version) (pd peerproto.PutDone, ok bool, err error) {
	f := u.f
	f.mu.Lock()
	st := f.upStream
	f.upStream = nil
	f.mu.Unlock()
	if st == nil {
		return pd, false, nil
	}
	if st.ch != u.ch || st.key != u.key || st.base != base || st.owner != u.owner {
		st.drop()
		return pd, false, nil
	}
	st.mu.Lock()
	st.ending = true
	st.mu.Unlock()
	st.poke()
	select {
	case <-st.done:
	case <-ctx.Done():
		st.mu.Lock()
		st.abort = true
		going := st.endGoing
		st.mu.Unlock()
		st.poke()
		if !going {
			return pd, false, ctx.Err()
		}
		// END is out: its outcome is the upload's (bounded by END's
		// own deadline), whatever this caller's context says.
		<-st.done
	}
	st.mu.Lock()
	res := st.result
	st.mu.Unlock()
	if !res.endSent {
		return pd, false, nil
	}
	if res.err != nil && !isRefusal(res.err) && !errors.Is(res.err, context.Canceled) {
		// END went out on the stream's own connection: its failure
		// must not read as the upload's connection gone stale, which
		// peer.Pool.Do would run again on a new one, sending the file
		// a second time.
		res.err = &streamConnError{res.err}
	}
	return res.pd, true, res.err
}

// streamConnError is a failure on a stream's connection after END went
// out (the upload's outcome is unknown), passed up through the upload's
// connection. It does not unwrap: it must not match io.EOF and the like
// there (see finishStream).
type streamConnError struct{ err error }

func (e *streamConnError) Error() string { return "streamed upload: " + e.err.Error() }

// dropStream drops f's stream, if any: its file was removed, renamed or
// set aside. Caller holds f.mu.
func (f *fileState) dropStream() {
	if st := f.upStream; st != nil {
		f.upStream = nil
		st.drop()
	}
}
