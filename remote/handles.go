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
	"github.com/peerfs/peerfs/peer"
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
	entry  peerproto.Entry   // remote attributes at open
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
		fh := s.newHandle(&handle{p: p, key: key, flags: flags, size: e.Size, ver: e.Version(), entry: e})
		return fh, p.info(path, e), nil
	}

	// Writing (or creating): work on a local copy, fetched lazily.
	f := &fileState{key: key, refs: 1, remote: e, mode: peerproto.FileMode(e.Mode), mtime: time.Unix(0, e.Mtime),
		base: peerproto.VersionNone, owner: s.owner(p)}
	f.ctime = f.mtime
	f.stamped = f.ctime
	if exists {
		f.base = e.Version()
	} else {
		s.ownCreated(ctx, p, f)
	}
	if !exists || flags&os.O_TRUNC != 0 {
		var m uint32 // 0: a truncated existing file keeps its recorded mode
		if !exists {
			m = peerproto.UnixBits(mode)
		}
		// Empty and dirty (even an empty file is uploaded), its record
		// written once.
		ch, err := s.cache.Create(key, m, f.owner+"/"+string(f.base))
		if err != nil {
			return 0, nil, err
		}
		f.ch.Store(ch)
		f.mtime = time.Now()
		f.ctime = f.mtime
		if !exists {
			f.mode = mode & peerproto.ModeBits
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

// ownCreated gives f, a file the caller of ctx creates here, the owner
// it gets on a local disk (ownerFor), on a peer that keeps owners; its
// upload applies it.
func (s *Store) ownCreated(ctx context.Context, p *peerConn, f *fileState) {
	caller, ok := fusefs.CallerOf(ctx)
	if !ok || !p.link.owners() {
		return
	}
	var dir peer.StatResult
	dir.Entry, dir.Err = s.stat(ctx, p, parent(f.key.Path))
	f.uid, f.gid = ownerFor(caller, dir)
	f.setOwner = true
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
		s.streamWrote(h.state, ch, off, off+int64(n))
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
		// Nothing of its own to store; but what this mount changed on
		// its peer and wrote behind is durable only after a round.
		if s.ns.pendingFor(h.key.Peer) > 0 {
			return s.Sync(ctx)
		}
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

// StatHandle implements fusefs.Store: an open file's attributes, also
// after its name is gone.
func (s *Store) StatHandle(ctx context.Context, fh uint64) (fs.FileInfo, error) {
	h, err := s.handle(fh)
	if err != nil {
		return nil, err
	}
	p, err := s.peer(h.key.Peer)
	if err != nil {
		return nil, err
	}
	if h.state != nil {
		return h.state.info(base(h.state.currentKey().Path), p.link.owners()), nil
	}
	h.mu.Lock()
	e := h.entry
	if h.clean != nil {
		e.Size = h.clean.Size()
	}
	h.mu.Unlock()
	return p.info(h.key.Path, e), nil
}

// TruncateHandle implements fusefs.Store: ftruncate of a file open for
// writing, also after its name is gone.
func (s *Store) TruncateHandle(ctx context.Context, fh uint64, size int64) (fs.FileInfo, error) {
	h, err := s.handle(fh)
	if err != nil {
		return nil, err
	}
	if h.state == nil {
		return nil, fmt.Errorf("remote: truncate through file handle %d, open for reading: %w", fh, fusefs.ErrBadHandle)
	}
	if err := s.truncateState(ctx, h.state, size); err != nil {
		return nil, err
	}
	return s.StatHandle(ctx, fh)
}

// keepOpen fetches what the handles open on key still need of the file
// before it is removed from its peer: an open file stays readable (and,
// open for writing, writable) through its descriptors after its name is
// gone, as on a local disk. A copy that cannot be fetched is logged, and
// the file removed all the same (its readers then get EIO).
func (s *Store) keepOpen(ctx context.Context, key cache.Key, f *fileState) {
	if f != nil {
		f.mu.Lock()
		open := f.refs > 0
		f.mu.Unlock()
		if open {
			if err := s.fetchRest(ctx, f); err != nil {
				s.log.Warn().Err(err).Str("peer", key.Peer).Str("path", key.Path).Msg("cannot keep the content of a removed file open here")
			}
		}
	}
	s.mu.Lock()
	var readers []*handle
	for _, h := range s.handles {
		if h.key == key && h.state == nil {
			readers = append(readers, h)
		}
	}
	s.mu.Unlock()
	for _, h := range readers {
		h.mu.Lock()
		if h.clean == nil {
			ch, err := s.fetchWhole(ctx, h.p, h.key, h.size, h.ver)
			if err != nil {
				s.log.Warn().Err(err).Str("peer", key.Peer).Str("path", key.Path).Msg("cannot keep the content of a removed file open here")
			} else {
				h.clean, h.looked = ch, true
				h.stopStream()
			}
		}
		h.mu.Unlock()
	}
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
