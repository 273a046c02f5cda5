package remote

// Open files: the handle table, opening (for reading, or on a local copy
// for writing) and what a program does with a descriptor.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// handle is one open file.
type handle struct {
	key     cache.Key
	flags   int
	state   *fileState // non-nil: reads and writes use the local copy
	created bool       // this open created the file: its close uploads it, even read-only
	// diverted is set when an upload of state, not necessarily this
	// handle's, found the file replaced by another writer and kept this
	// copy as a conflict copy: the writer must hear of it at its own
	// fsync and close (ESTALE), whoever sent it.
	diverted atomic.Pointer[error]

	mu     sync.Mutex        // protects the fields below
	p      *peerConn         // the peer's connection; follows it to a new address (Store.follow)
	size   int64             // remote size at open
	ver    peerproto.Version // remote version at open
	clean  *cache.Handle     // whole-file copy: a small file, or a large one the cache already held
	looked bool              // the cache was asked for a large file's copy (only once per handle)
	ra     []byte            // read-ahead buffer
	raOff  int64             // file offset of ra[0]
	next   int64             // offset a sequential reader asks for next
	window int64             // current read-ahead size
	seq    int               // reads in a row near the one before
	far    int               // reads in a row far from the one before
	st     *stream           // chunks fetched ahead of a sequential reader (prefetch.go)
}

func (h *handle) writable() bool { return h.flags&(os.O_WRONLY|os.O_RDWR) != 0 }

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
		return nil, fmt.Errorf("remote: file handle %d: %w", fh, fusefs.ErrBadHandle)
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
			return 0, nil, fmt.Errorf("remote: create %s:%s: %w", peerName, path, fs.ErrExist)
		}
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
		s.mu.Unlock()
		if write && flags&os.O_TRUNC != 0 {
			if err := s.truncateState(ctx, f, 0); err != nil {
				s.release(f)
				return 0, nil, err
			}
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
		return 0, nil, fmt.Errorf("remote: open %s:%s for writing: %w", peerName, path, fusefs.ErrIsDir)
	case exists && excl:
		return 0, nil, fmt.Errorf("remote: create %s:%s: %w", peerName, path, fs.ErrExist)
	}
	if !write && exists {
		fh := s.newHandle(&handle{p: p, key: key, flags: flags, size: e.Size, ver: e.Version()})
		return fh, infoOf(base(path), e), nil
	}

	// Writing (or creating): work on a local copy, fetched lazily.
	f := &fileState{key: key, refs: 1, remote: e, mode: fs.FileMode(e.Mode).Perm(), mtime: time.Unix(0, e.Mtime),
		base: peerproto.VersionNone, owner: s.owner(p)}
	if exists {
		f.base = e.Version()
	}
	if !exists || flags&os.O_TRUNC != 0 {
		var m uint32 // 0: a truncated existing file keeps its recorded mode
		if !exists {
			m = uint32(mode.Perm())
		}
		// Empty and dirty (even an empty file is uploaded), its record
		// written once.
		ch, err := s.cache.Create(key, m, f.owner+"/"+string(f.base))
		if err != nil {
			return 0, nil, err
		}
		f.ch.Store(ch)
		f.mtime = time.Now()
		if !exists {
			f.mode = mode.Perm()
		}
	}
	s.mu.Lock()
	other, raced := s.files[key]
	if raced {
		other.mu.Lock()
		other.refs++
		other.mu.Unlock()
		s.mu.Unlock()
		f.releaseCopy()
		f = other
	} else {
		s.files[key] = f
		s.mu.Unlock()
	}
	fh := s.newHandle(&handle{p: p, key: key, flags: flags, state: f, created: !exists && !raced})
	return fh, s.localInfo(key), nil
}

// WriteAt implements fusefs.Store.
func (s *Store) WriteAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	h, err := s.handle(fh)
	if err != nil {
		return 0, err
	}
	if h.state == nil {
		return 0, fmt.Errorf("remote: file handle %d: %w", fh, fusefs.ErrBadHandle)
	}
	// Nothing is fetched to write (fill.go): the copy holds the writes,
	// and the upload sends what changed.
	ch, err := s.writable(ctx, h.state)
	if err != nil {
		return 0, err
	}
	if h.flags&os.O_APPEND != 0 {
		off = ch.Size()
	}
	n, err := ch.WriteAt(p, off)
	s.touch(h.state)
	if err == nil {
		s.fillIfScattered(ctx, h.state, ch)
	}
	return n, err
}

// Flush implements fusefs.Store: a writer's file is uploaded if it has
// changes, and the upload's error is returned (it reaches close()). So is
// a file this handle created, even read-only (open(O_CREAT|O_RDONLY)): a
// created file is on the peer no later than a written one.
func (s *Store) Flush(ctx context.Context, fh uint64) error {
	h, err := s.handle(fh)
	if err != nil {
		return err
	}
	if h.state == nil || !h.writable() && !h.created {
		return nil // readers never wait for uploads
	}
	if err := s.upload(ctx, h.state, false); err != nil {
		return err
	}
	return s.divertedErr(h)
}

// divertedErr returns what h's writer must still hear of: that its data
// went to a conflict copy (handle.diverted).
func (s *Store) divertedErr(h *handle) error {
	if err := h.diverted.Load(); err != nil {
		return *err
	}
	return nil
}

// Fsync implements fusefs.Store: a writer's fsync runs the SYNC round.
// The file itself goes up while the SYNC request is on its way, as a
// close would send it (held back if another peer holds the token), with
// an FSYNC behind it in the same round trip (uploadDurable); the turn
// then usually finds nothing left to store or to make durable.
func (s *Store) Fsync(ctx context.Context, fh uint64) error {
	h, err := s.handle(fh)
	if err != nil {
		return err
	}
	if h.state == nil {
		return nil
	}
	up := make(chan error, 1)
	go func() { up <- s.uploadDurable(ctx, h.state) }()
	err = s.Sync(ctx)
	// A failure to reach the peer is the turn's to report (it retries
	// what is still pending); a conflict is final: the data went to a
	// conflict copy, and the writer must hear of it. A file set aside is
	// final too, and so is a refusal for good of attributes alone (a
	// chmod): nothing of it is left for the turn to find.
	if uerr := <-up; errors.Is(uerr, fusefs.ErrConflict) || errors.Is(uerr, errSetAside) || permanent(uerr) {
		return uerr
	}
	if err != nil {
		return err
	}
	return s.divertedErr(h)
}

// Release implements fusefs.Store.
func (s *Store) Release(fh uint64) error {
	s.mu.Lock()
	h, ok := s.handles[fh]
	delete(s.handles, fh)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("remote: file handle %d: %w", fh, fusefs.ErrBadHandle)
	}
	h.mu.Lock()
	if h.clean != nil {
		h.clean.Release()
		h.clean = nil
	}
	h.stopStream()
	h.mu.Unlock()
	if h.state != nil {
		s.release(h.state)
	}
	return nil
}
