package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// fileState is a local copy of a file that is open for writing or holds
// writes not yet stored on its peer. Handles of the same file share it.
type fileState struct {
	ch *cache.Handle // pinned local copy; released when the state is dropped

	up sync.Mutex // serialises uploads of this file

	// Protected by Store.mu:
	key      cache.Key
	refs     int // open handles
	mode     fs.FileMode
	mtime    time.Time  // last local change
	setMode  bool       // mode must be applied on the peer after upload
	setMtime *time.Time // explicit mtime (utimens) to apply after upload
	unlinked bool       // deleted while open: never upload
}

// info returns the file's attributes as this client sees them. Called with
// Store.mu held.
func (f *fileState) info(name string) fs.FileInfo {
	mt := f.mtime
	if f.setMtime != nil {
		mt = *f.setMtime
	}
	return &fileInfo{name: name, mode: f.mode, size: f.ch.Size(), mtime: mt}
}

// handle is one open file.
type handle struct {
	p     *peerConn
	key   cache.Key
	flags int
	state *fileState // non-nil: reads and writes use the local copy

	mu     sync.Mutex    // protects the fields below
	size   int64         // remote size at open
	mtime  int64         // remote mtime at open
	clean  *cache.Handle // whole-file copy of a small file
	ra     []byte        // read-ahead buffer
	raOff  int64         // file offset of ra[0]
	next   int64         // offset a sequential reader asks for next
	window int64         // current read-ahead size
}

const (
	minWindow = 128 << 10
	maxWindow = 8 << 20
)

func (s *Store) localInfo(key cache.Key) fs.FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[key]; ok {
		return f.info(base(key.Path))
	}
	return nil
}

func (s *Store) newHandle(h *handle) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextFH++
	s.handles[s.nextFH] = h
	return s.nextFH
}

func (s *Store) handle(fh uint64) (*handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.handles[fh]
	if !ok {
		return nil, syscall.EBADF
	}
	return h, nil
}

// Open implements fusefs.Store.
func (s *Store) Open(ctx context.Context, peerName, path string, flags int, mode fs.FileMode) (uint64, fs.FileInfo, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return 0, nil, err
	}
	key := cache.Key{Peer: peerName, Path: path}
	write := flags&(os.O_WRONLY|os.O_RDWR) != 0
	excl := flags&os.O_CREATE != 0 && flags&os.O_EXCL != 0

	// A local copy already open or pending: share it.
	s.mu.Lock()
	if f, ok := s.files[key]; ok {
		if excl {
			s.mu.Unlock()
			return 0, nil, syscall.EEXIST
		}
		f.refs++
		s.mu.Unlock()
		if write && flags&os.O_TRUNC != 0 {
			if err := f.ch.Truncate(0); err != nil {
				s.release(f)
				return 0, nil, err
			}
			s.touch(f)
		}
		fh := s.newHandle(&handle{p: p, key: key, flags: flags, state: f})
		return fh, s.localInfo(key), nil
	}
	s.mu.Unlock()

	e, err := s.stat(ctx, p, path)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return 0, nil, err
	case !exists && flags&os.O_CREATE == 0:
		return 0, nil, err
	case exists && e.IsDir() && write:
		return 0, nil, syscall.EISDIR
	case exists && excl:
		return 0, nil, syscall.EEXIST
	}
	if !write && exists {
		fh := s.newHandle(&handle{p: p, key: key, flags: flags, size: e.Size, mtime: e.Mtime})
		return fh, infoOf(base(path), e), nil
	}

	// Writing (or creating): work on a local copy.
	var ch *cache.Handle
	fmode := mode.Perm()
	mtime := time.Now()
	if exists {
		fmode = fs.FileMode(e.Mode).Perm()
		mtime = time.Unix(0, e.Mtime)
	}
	if !exists || flags&os.O_TRUNC != 0 {
		ch, _, err = s.cache.Acquire(key, -1, 0, true)
		if err == nil {
			err = ch.Truncate(0) // marks the copy dirty: even an empty file is uploaded
			mtime = time.Now()
		}
	} else {
		ch, err = s.fetchWhole(ctx, p, key, e)
	}
	if err != nil {
		if ch != nil {
			ch.Release()
		}
		return 0, nil, err
	}
	s.mu.Lock()
	f, raced := s.files[key]
	if raced {
		f.refs++
	} else {
		f = &fileState{key: key, ch: ch, refs: 1, mode: fmode, mtime: mtime}
		s.files[key] = f
	}
	s.mu.Unlock()
	if raced {
		ch.Release()
	}
	fh := s.newHandle(&handle{p: p, key: key, flags: flags, state: f})
	return fh, s.localInfo(key), nil
}

// fetchWhole returns a pinned cache copy of the whole file, downloading it
// unless the cache holds a copy matching e.
func (s *Store) fetchWhole(ctx context.Context, p *peerConn, key cache.Key, e peerproto.Entry) (*cache.Handle, error) {
	if ch, ok, err := s.cache.Acquire(key, e.Size, e.Mtime, false); err == nil && ok {
		return ch, nil
	} else if ch != nil {
		ch.Release()
	}
	var buf bytes.Buffer
	var size int64
	err := p.pool.Do(ctx, func(c *peer.Conn) error {
		buf.Reset()
		var err error
		size, err = c.Get(ctx, key.Path, 0, -1, &buf, nil)
		return err
	})
	if err != nil {
		return nil, netErr(p, err)
	}
	return s.cache.Fill(key, &buf, size, e.Mtime)
}

func (s *Store) touch(f *fileState) {
	s.mu.Lock()
	f.mtime = time.Now()
	f.setMtime = nil
	s.mu.Unlock()
}

// ReadAt implements fusefs.Store.
func (s *Store) ReadAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	h, err := s.handle(fh)
	if err != nil {
		return 0, err
	}
	if h.state != nil {
		return readFull(h.state.ch, p, off)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clean == nil && h.size <= s.opts.WholeFile {
		ch, err := s.fetchWhole(ctx, h.p, h.key, peerproto.Entry{Size: h.size, Mtime: h.mtime})
		if err != nil {
			return 0, err
		}
		h.clean = ch
	}
	if h.clean != nil {
		return readFull(h.clean, p, off)
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

// readAhead serves a read of a large file from the handle's read-ahead
// buffer, refilling it with one ranged GET whose size doubles while the
// reader stays sequential. Called with h.mu held.
func (s *Store) readAhead(ctx context.Context, h *handle, p []byte, off int64) (int, error) {
	if off >= h.raOff && off+int64(len(p)) <= h.raOff+int64(len(h.ra)) {
		h.next = off + int64(len(p))
		return copy(p, h.ra[off-h.raOff:]), nil
	}
	if off == h.next && h.window > 0 {
		h.window = min(2*h.window, maxWindow)
	} else {
		h.window = minWindow
	}
	want := max(h.window, int64(len(p)))
	if cap(h.ra) < int(want) {
		h.ra = make([]byte, want)
	}
	h.ra = h.ra[:want]
	var n int
	err := h.p.pool.Do(ctx, func(c *peer.Conn) error {
		var err error
		n, err = c.ReadAt(ctx, h.key.Path, h.ra, off)
		return err
	})
	if err != nil {
		h.ra = h.ra[:0]
		return 0, netErr(h.p, err)
	}
	h.ra = h.ra[:n]
	h.raOff = off
	h.next = off + int64(min(len(p), n))
	return copy(p, h.ra), nil
}

// WriteAt implements fusefs.Store.
func (s *Store) WriteAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	h, err := s.handle(fh)
	if err != nil {
		return 0, err
	}
	if h.state == nil {
		return 0, syscall.EBADF
	}
	if h.flags&os.O_APPEND != 0 {
		off = h.state.ch.Size()
	}
	n, err := h.state.ch.WriteAt(p, off)
	s.touch(h.state)
	return n, err
}

// Flush implements fusefs.Store: the file is uploaded if it has changes,
// and the upload's error is returned (it reaches close()).
func (s *Store) Flush(ctx context.Context, fh uint64) error {
	h, err := s.handle(fh)
	if err != nil {
		return err
	}
	if h.state == nil {
		return nil
	}
	return s.upload(ctx, h.state, false)
}

// Fsync implements fusefs.Store: a writer's fsync runs the SYNC round.
func (s *Store) Fsync(ctx context.Context, fh uint64) error {
	h, err := s.handle(fh)
	if err != nil {
		return err
	}
	if h.state == nil {
		return nil
	}
	return s.Sync(ctx)
}

// Release implements fusefs.Store.
func (s *Store) Release(fh uint64) error {
	s.mu.Lock()
	h, ok := s.handles[fh]
	delete(s.handles, fh)
	s.mu.Unlock()
	if !ok {
		return syscall.EBADF
	}
	if h.clean != nil {
		h.clean.Release()
	}
	if h.state != nil {
		s.release(h.state)
	}
	return nil
}

// release drops one reference to f; a state with no handles and nothing
// left to upload is forgotten. One with pending changes stays for the
// retry loop.
func (s *Store) release(f *fileState) {
	s.mu.Lock()
	f.refs--
	drop := f.refs <= 0 && (f.unlinked || !s.pending(f))
	if drop && s.files[f.key] == f {
		delete(s.files, f.key)
	}
	s.mu.Unlock()
	if drop {
		f.ch.Release()
	}
}

// pending reports whether f has changes not yet on its peer. Called with
// s.mu held.
func (s *Store) pending(f *fileState) bool {
	return f.ch.Meta().Dirty || f.setMode || f.setMtime != nil
}

// waitTurn holds an upload back while another peer holds the write token,
// up to HoldTimeout.
func (s *Store) waitTurn(ctx context.Context) {
	s.mu.Lock()
	sy := s.syncer
	s.mu.Unlock()
	if sy == nil {
		return
	}
	deadline := time.Now().Add(s.opts.HoldTimeout)
	for {
		st := sy.State()
		if !st.InRound || st.Holding || time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// upload stores f on its peer if it has changes. inTurn is set when the
// caller holds the write token (or no round applies).
func (s *Store) upload(ctx context.Context, f *fileState, inTurn bool) error {
	f.up.Lock()
	defer f.up.Unlock()
	s.mu.Lock()
	key, unlinked := f.key, f.unlinked
	dirty := f.ch.Meta().Dirty
	setMode, mode := f.setMode, f.mode
	setMtime := f.setMtime
	s.mu.Unlock()
	if unlinked || (!dirty && !setMode && setMtime == nil) {
		return nil
	}
	p, err := s.peer(key.Peer)
	if err != nil {
		return fmt.Errorf("remote: upload %s:%s: peer is gone: %w", key.Peer, key.Path, syscall.EIO)
	}
	if !inTurn {
		s.waitTurn(ctx)
	}
	gen := f.ch.Generation()
	var e peerproto.Entry
	err = p.pool.Do(ctx, func(c *peer.Conn) error {
		if dirty {
			// A second descriptor at offset 0 lets the kernel sendfile it.
			// Reopen through /proc: the cache may have renamed the file
			// since it was opened.
			src, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", f.ch.File().Fd()))
			if err != nil {
				return err
			}
			defer src.Close()
			size := f.ch.Size()
			pd, err := c.Put(ctx, key.Path, src, size, nil)
			if err != nil {
				return err
			}
			e = peerproto.Entry{Type: peerproto.TypeFile, Mode: 0o644, Size: pd.Size, Mtime: pd.Mtime}
			if !setMode {
				// A new file is created 0644 by the peer: apply the
				// creator's mode if it differs.
				setMode = mode != 0o644
			}
		}
		if setMode || setMtime != nil {
			sa := peerproto.Setattr{Name: key.Path, HasMode: setMode, Mode: uint32(mode.Perm())}
			if setMtime != nil {
				sa.HasMtime, sa.Mtime = true, setMtime.UnixNano()
			}
			var err error
			if e, err = c.Setattr(ctx, sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn().Err(err).Str("peer", key.Peer).Str("path", key.Path).Msg("upload failed; the local copy is kept and retried")
		return netErr(p, err)
	}
	if _, err := f.ch.MarkClean(gen, e.Size, e.Mtime); err != nil {
		s.log.Warn().Err(err).Str("path", key.Path).Msg("cannot mark cache entry clean")
	}
	s.mu.Lock()
	f.setMode = false
	if f.setMtime == setMtime {
		f.setMtime = nil
	}
	drop := f.refs <= 0 && !s.pending(f)
	if drop && s.files[f.key] == f {
		delete(s.files, f.key)
	}
	s.mu.Unlock()
	p.remember(key.Path, e, true)
	if drop {
		f.ch.Release()
	}
	s.log.Debug().Str("peer", key.Peer).Str("path", key.Path).Int64("size", e.Size).Msg("uploaded")
	return nil
}

// unlinkLocal forgets a local copy of key; it reports whether one existed.
func (s *Store) unlinkLocal(key cache.Key) bool {
	s.mu.Lock()
	f, ok := s.files[key]
	if ok {
		f.unlinked = true
		delete(s.files, key)
	}
	drop := ok && f.refs <= 0
	s.mu.Unlock()
	if drop {
		f.ch.Release()
	}
	return ok
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// renameLocal moves local copies at or under from to their new names.
func (s *Store) renameLocal(peerName, from, to string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, f := range s.files {
		if key.Peer != peerName || !under(key.Path, from) {
			continue
		}
		delete(s.files, key)
		f.key = cache.Key{Peer: peerName, Path: to + key.Path[len(from):]}
		s.files[f.key] = f
	}
}

// flushTree uploads local changes at or under path before a rename.
func (s *Store) flushTree(ctx context.Context, peerName, path string) error {
	s.mu.Lock()
	var todo []*fileState
	for key, f := range s.files {
		if key.Peer == peerName && under(key.Path, path) {
			todo = append(todo, f)
		}
	}
	s.mu.Unlock()
	for _, f := range todo {
		if err := s.upload(ctx, f, false); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) truncateLocal(key cache.Key, size int64) (fs.FileInfo, bool, error) {
	s.mu.Lock()
	f, ok := s.files[key]
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	if err := f.ch.Truncate(size); err != nil {
		return nil, true, err
	}
	s.touch(f)
	return s.localInfo(key), true, nil
}

func (s *Store) chmodLocal(key cache.Key, mode fs.FileMode) (fs.FileInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[key]
	if !ok {
		return nil, false
	}
	f.mode, f.setMode = mode.Perm(), true
	return f.info(base(key.Path)), true
}

func (s *Store) chtimesLocal(key cache.Key, mtime time.Time) (fs.FileInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[key]
	if !ok {
		return nil, false
	}
	f.setMtime = &mtime
	return f.info(base(key.Path)), true
}
