package remote

// The local copies of files this mount writes: their state, shared by
// the handles open on them, and the changes made to them before upload.

import (
	"context"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peerproto"
)

// fileState is a local copy of a file that is open for writing or holds
// writes not yet stored on its peer. Handles of the same file share it.
//
// Lock order: up before Store.mu; fetch before Store.mu. up serialises
// everything that sends the file's name to its peer (PUT, DELETE, RENAME
// of it) and every release of ch, so an upload never streams a copy that
// is being released.
type fileState struct {
	up    sync.Mutex // serialises uploads, deletes and renames of this file
	fetch sync.Mutex // serialises fetching the content

	// ch is the pinned local copy; nil until the content is first needed
	// (opening an existing file for writing does not download it: the
	// kernel's open-then-truncate of an overwrite would waste the transfer).
	ch atomic.Pointer[cache.Handle]

	// Protected by Store.mu:
	key       cache.Key
	refs      int             // open handles
	remote    peerproto.Entry // the peer's attributes at open, for an unfetched copy
	mode      fs.FileMode
	mtime     time.Time  // last local change
	setMode   bool       // mode must be applied on the peer after upload
	setMtime  *time.Time // explicit mtime (utimens) to apply after upload
	unlinked  bool       // deleted or replaced: never upload, forget on last release
	uploading bool       // an upload of it is under way (FileState)
	// parked is set when the copy was set aside (unsent.go): it is not
	// uploaded again, and its writer's flushes and fsyncs report this.
	parked *ParkedError
	// failures counts the retry loop's failed uploads in a row, and
	// retryAt is when it tries again (backing off); both reset on success.
	failures int
	retryAt  time.Time
	// base is the version of the peer's file this copy started from, the
	// condition of the next PUT (peerproto.NoVersion for none, VersionNone
	// for a file created here): a writer never silently replaces a
	// version it has not seen.
	base peerproto.Version
	// owner is the peer identity this copy was written for (identity.go):
	// it is uploaded only while the peer has it. "" for a copy from
	// before owners were recorded.
	owner string

	// sent is the content of the last PUT whose outcome is unknown (it
	// failed, perhaps after the peer got it all): a stalled peer may
	// store it later, and that version is this writer's own, not a
	// conflict. Protected by up; nil once an upload succeeds. Kept in the
	// cache record too (cache.Meta.Sent), for the next run of the mount.
	sent *digest
}

// size returns the file's size as this client sees it.
func (f *fileState) size() int64 {
	if ch := f.ch.Load(); ch != nil {
		return ch.Size()
	}
	return f.remote.Size
}

// info returns the file's attributes as this client sees them. Called with
// Store.mu held.
func (f *fileState) info(name string) fs.FileInfo {
	mt := f.mtime
	if f.setMtime != nil {
		mt = *f.setMtime
	}
	return &fileInfo{name: name, mode: f.mode, size: f.size(), mtime: mt}
}

// dirty reports whether the local copy has bytes the peer lacks.
func (f *fileState) dirty() bool {
	ch := f.ch.Load()
	return ch != nil && ch.Meta().Dirty
}

// releaseCopy unpins the local copy. Called with f.up held (or when no
// upload can run any more).
func (f *fileState) releaseCopy() {
	if ch := f.ch.Swap(nil); ch != nil {
		ch.Release()
	}
}

// pending reports whether f has changes not yet on its peer. Called with
// Store.mu held.
func (f *fileState) pending() bool {
	return f.dirty() || f.setMode || f.setMtime != nil
}

// release drops one reference to f; a state with no handles and nothing
// left to upload is forgotten. One with pending changes stays for the
// retry loop.
func (s *Store) release(f *fileState) {
	f.up.Lock()
	defer f.up.Unlock()
	s.mu.Lock()
	f.refs--
	drop := f.refs <= 0 && (f.unlinked || f.parked != nil || !f.pending())
	if drop && s.files[f.key] == f {
		delete(s.files, f.key)
	}
	s.mu.Unlock()
	if drop {
		f.releaseCopy()
	}
}

// statesUnder returns the local copies at or under path, sorted by path
// (the order in which their up locks are taken).
func (s *Store) statesUnder(peerName, path string) []*fileState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*fileState
	for key, f := range s.files {
		if key.Peer == peerName && under(key.Path, path) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key.Path < out[j].key.Path })
	return out
}

func lockAll(fs []*fileState) {
	for _, f := range fs {
		f.up.Lock()
	}
}

func unlockAll(fs []*fileState) {
	for _, f := range fs {
		f.up.Unlock()
	}
}

// unlinkLocked marks f deleted and forgets it; the copy is released now if
// no handle has it open. Called with f.up held.
func (s *Store) unlinkLocked(f *fileState) {
	s.mu.Lock()
	f.unlinked = true
	if s.files[f.key] == f {
		delete(s.files, f.key)
	}
	drop := f.refs <= 0
	s.mu.Unlock()
	if drop {
		f.releaseCopy()
	}
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func (s *Store) touch(f *fileState) {
	s.mu.Lock()
	f.mtime = time.Now()
	f.setMtime = nil
	s.mu.Unlock()
}

// truncateState sets the size of a local copy. Truncating an unfetched
// copy to zero needs no download.
func (s *Store) truncateState(ctx context.Context, f *fileState, size int64) error {
	if size == 0 && f.ch.Load() == nil {
		f.fetch.Lock()
		if f.ch.Load() == nil {
			s.mu.Lock()
			key, base := f.key, f.owner+"/"+string(f.base)
			s.mu.Unlock()
			// Emptied without a download, and recording the version the
			// new content replaces (a shell's "> file" opens, then
			// truncates).
			ch, err := s.cache.Create(key, 0, base)
			if err != nil {
				f.fetch.Unlock()
				return err
			}
			f.ch.Store(ch)
		}
		f.fetch.Unlock()
	}
	ch, err := s.content(ctx, f)
	if err != nil {
		return err
	}
	if err := ch.Truncate(size); err != nil {
		return err
	}
	s.touch(f)
	return nil
}

func (s *Store) truncateLocal(ctx context.Context, key cache.Key, size int64) (fs.FileInfo, bool, error) {
	s.mu.Lock()
	f, ok := s.files[key]
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	if err := s.truncateState(ctx, f, size); err != nil {
		return nil, true, err
	}
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
	if ch := f.ch.Load(); ch != nil {
		_ = ch.SetMode(uint32(mode.Perm())) // survives a restart with the dirty copy
	}
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

func (s *Store) localInfo(key cache.Key) fs.FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[key]; ok {
		return f.info(base(key.Path))
	}
	return nil
}
