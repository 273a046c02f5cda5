package remote

// The local copies of files this mount writes: their state, shared by
// the handles open on them, and the changes made to them before upload.

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// fileState is a local copy of a file that is open for writing or holds
// writes not yet stored on its peer. Handles of the same file share it.
// The Store keeps it in Store.files under its key while it is there.
//
// Lock order: up, then fetch, then Store.mu, then mu. up serialises
// everything that sends the file's name to its peer (PUT, DELETE, RENAME
// of it) and every release of ch, so an upload never streams a copy that
// is being released. mu is a leaf: nothing else is locked, and no I/O
// done, while it is held.
type fileState struct {
	up    sync.Mutex // serialises uploads, deletes and renames of this file
	fetch sync.Mutex // serialises fetching the content

	// ch is the pinned local copy; nil until the content is first needed
	// (opening an existing file for writing does not download it: the
	// kernel's open-then-truncate of an overwrite would waste the transfer).
	ch atomic.Pointer[cache.Handle]

	mu        sync.Mutex // protects the fields below
	key       cache.Key
	refs      int             // open handles
	remote    peerproto.Entry // the peer's attributes at open, for an unfetched copy
	mode      fs.FileMode     // peerproto.ModeBits
	mtime     time.Time       // last local change of the content
	ctime     time.Time       // last local change of the content or the attributes
	stamped   time.Time       // ctime when the times shown were last the peer's (open, stored)
	setMode   bool            // mode must be applied on the peer after upload
	setMtime  *time.Time      // explicit mtime (utimens) to apply after upload
	setAtime  *time.Time      // explicit atime (utimens) to apply after upload
	uid, gid  uint32          // the owner given here (setOwner): the creator's, or a chown's
	setOwner  bool            // uid and gid must be applied on the peer after upload
	unlinked  bool            // deleted or replaced: never upload, forget on last release
	uploading bool            // an upload of it is under way (FileState)
	// setidUp, while a PUT that says setid reads the copy (setidBegin),
	// is closed when it ends; nil otherwise.
	setidUp chan struct{}
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

	// upStream is the upload of the copy under way while it is written
	// (upload_stream.go), nil if none; streamTried is set once one was
	// started or found not to apply, until the copy is next stored;
	// streamHole once the copy was written with a hole, until then too.
	// streamAt is how far seqEnd must reach before a stream starts, past
	// streamMin when the mount's streams were all taken at the last try.
	// Protected by mu.
	upStream    *streamUp
	streamTried bool
	streamHole  bool
	streamAt    int64
	// seqEnd is how far the copy was written from its start with no
	// hole, as the streamer may send it (upload_stream.go); reset with
	// streamTried. Protected by mu.
	seqEnd int64

	// sent is the content of the last PUT whose outcome is unknown (it
	// failed, perhaps after the peer got it all): a stalled peer may
	// store it later, and that version is this writer's own, not a
	// conflict. Protected by up; nil once an upload succeeds. Kept in the
	// cache record too (cache.Meta.Sent), for the next run of the mount.
	sent *digest
}

// info returns the file's attributes as this client sees them; owners
// says its peer keeps owners.
func (f *fileState) info(name string, owners bool) fs.FileInfo {
	f.mu.Lock()
	mt, mode, size, r := f.mtime, f.mode, f.remote.Size, f.remote
	if f.setMtime != nil {
		mt = *f.setMtime
	}
	var st *fusefs.Stat
	// Changed here since it was last stored (or never stored): the times
	// are this machine's until the upload, then the peer's (stored).
	local := f.base == peerproto.VersionNone || !f.ctime.Equal(f.stamped)
	if r.Has != 0 || f.setOwner || local {
		st = statOf(r, owners)
		st.Local = local
		st.Blocks = -1 // the local copy's size says
		if st.Nlink == 0 {
			st.Nlink = 1
		}
		if f.setOwner {
			st.Owners, st.Uid, st.Gid = owners, f.uid, f.gid
		}
		switch {
		case f.setAtime != nil:
			st.Atime = *f.setAtime
		case st.Atime.IsZero():
			st.Atime = mt
		}
		if f.ctime.After(st.Ctime) {
			st.Ctime = f.ctime
		}
	}
	f.mu.Unlock()
	if ch := f.ch.Load(); ch != nil {
		size = ch.Size()
	}
	return &fileInfo{name: name, mode: mode, size: size, mtime: mt, st: st}
}

// size returns the file's size as this client sees it.
func (f *fileState) size() int64 {
	if ch := f.ch.Load(); ch != nil {
		return ch.Size()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.remote.Size
}

// dirty reports whether the local copy has bytes the peer lacks.
func (f *fileState) dirty() bool {
	ch := f.ch.Load()
	return ch != nil && ch.Meta().Dirty
}

// isUnlinked reports whether f was deleted or replaced.
func (f *fileState) isUnlinked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unlinked
}

// currentKey returns f's key now (a rename or a conflict copy moves it).
func (f *fileState) currentKey() cache.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key
}

// releaseCopy unpins the local copy. Called with f.up held (or when no
// upload can run any more).
func (f *fileState) releaseCopy() {
	if ch := f.ch.Swap(nil); ch != nil {
		ch.Release()
	}
}

// pending reports whether f has changes not yet on its peer.
func (f *fileState) pending() bool {
	f.mu.Lock()
	attrs := f.setMode || f.setMtime != nil || f.setAtime != nil || f.setOwner
	f.mu.Unlock()
	return attrs || f.dirty()
}

// live reports whether f still holds changes to upload: not unlinked,
// not set aside, and pending.
func (f *fileState) live() bool {
	f.mu.Lock()
	gone := f.unlinked || f.parked != nil
	f.mu.Unlock()
	return !gone && f.pending()
}

// dropIfDone forgets f (out of Store.files) if no handle has it open
// and it holds nothing more to upload, and reports whether it did; the
// caller then releases its copy. Called with f.up held.
func (s *Store) dropIfDone(f *fileState) bool {
	f.mu.Lock()
	unused := f.refs <= 0
	f.mu.Unlock()
	if !unused || f.live() {
		return false
	}
	s.mu.Lock()
	f.mu.Lock()
	if s.files[f.key] == f {
		delete(s.files, f.key)
	}
	f.mu.Unlock()
	s.mu.Unlock()
	return true
}

// release drops one reference to f; a state with no handles and nothing
// left to upload is forgotten. One with pending changes stays for the
// retry loop.
func (s *Store) release(f *fileState) {
	f.up.Lock()
	defer f.up.Unlock()
	f.mu.Lock()
	f.refs--
	f.mu.Unlock()
	if s.dropIfDone(f) {
		f.releaseCopy()
	}
}

// statesUnder returns the local copies at or under path, sorted by path
// (the order in which their up locks are taken).
func (s *Store) statesUnder(peerName, path string) []*fileState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*fileState
	var keys []string
	for key, f := range s.files {
		if key.Peer == peerName && under(key.Path, path) {
			out = append(out, f)
			keys = append(keys, key.Path)
		}
	}
	sort.Sort(byPath{out, keys})
	return out
}

// byPath sorts states by their keys' paths.
type byPath struct {
	fs   []*fileState
	keys []string
}

func (b byPath) Len() int           { return len(b.fs) }
func (b byPath) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byPath) Swap(i, j int) {
	b.fs[i], b.fs[j] = b.fs[j], b.fs[i]
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
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
	f.mu.Lock()
	f.unlinked = true
	f.dropStream()
	if s.files[f.key] == f {
		delete(s.files, f.key)
	}
	drop := f.refs <= 0
	f.mu.Unlock()
	s.mu.Unlock()
	if drop {
		f.releaseCopy()
	}
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func (s *Store) touch(f *fileState) {
	f.mu.Lock()
	f.mtime = time.Now()
	f.ctime = f.mtime
	f.setMtime = nil
	f.mu.Unlock()
}

// truncateState sets the size of a local copy. Truncating needs no
// download: an emptied copy is new content, and what a partial one cuts
// off it need not have (fill.go).
func (s *Store) truncateState(ctx context.Context, f *fileState, size int64) error {
	if size == 0 && f.ch.Load() == nil {
		f.fetch.Lock()
		if f.ch.Load() == nil {
			f.mu.Lock()
			key, base := f.key, f.owner+"/"+string(f.base)
			f.mu.Unlock()
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
	ch, err := s.writable(ctx, f)
	if err != nil {
		return err
	}
	if err := ch.Truncate(size); err != nil {
		return err
	}
	f.mu.Lock()
	f.seqEnd = min(f.seqEnd, size) // what grows back is a hole
	f.mu.Unlock()
	s.touch(f)
	return nil
}

func (s *Store) truncateLocal(ctx context.Context, key cache.Key, size int64) (fs.FileInfo, bool, error) {
	f, ok := s.local(key)
	if !ok {
		return nil, false, nil
	}
	if err := s.truncateState(ctx, f, size); err != nil {
		return nil, true, err
	}
	return s.localInfo(key), true, nil
}

// chmodLocal applies a chmod to key's local copy, if there is one: the
// mode goes to the peer with the next upload.
//
// One that drops setuid or setgid bits (another user's write, which the
// kernel has the mount clear them before: fusefs killSuidgid) while a PUT
// that says setid reads the copy (setidBegin) waits for it to end, or
// for ctx: what is written after this must not ride in an upload whose
// content keeps the bits on the peer.
func (s *Store) chmodLocal(ctx context.Context, key cache.Key, mode fs.FileMode) (fs.FileInfo, bool, error) {
	f, ok := s.local(key)
	if !ok {
		return nil, false, nil
	}
	for {
		f.mu.Lock()
		wait := f.setidUp
		if wait == nil || f.mode&privModes&^mode == 0 {
			f.mode, f.setMode, f.ctime = mode&peerproto.ModeBits, true, time.Now()
			f.mu.Unlock()
			break
		}
		f.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, true, fmt.Errorf("remote: chmod %s:%s: waiting for an upload that keeps its setuid bits: %w", key.Peer, key.Path, ctx.Err())
		}
	}
	if ch := f.ch.Load(); ch != nil {
		_ = ch.SetMode(peerproto.UnixBits(mode)) // survives a restart with the dirty copy
	}
	return s.localInfo(key), true, nil
}

// chtimesLocal applies new times to key's local copy, if there is one;
// "now" is this machine's clock (the peer's is not at hand).
func (s *Store) chtimesLocal(key cache.Key, atime, mtime fusefs.TimeChange) (fs.FileInfo, bool) {
	f, ok := s.local(key)
	if !ok {
		return nil, false
	}
	now := time.Now()
	at := func(c fusefs.TimeChange) *time.Time {
		if c.Now {
			return &now
		}
		t := c.T
		return &t
	}
	f.mu.Lock()
	if atime.Set {
		f.setAtime = at(atime)
	}
	if mtime.Set {
		f.setMtime = at(mtime)
	}
	f.ctime = now
	f.mu.Unlock()
	return s.localInfo(key), true
}

// chownLocal applies a chown to key's local copy, if there is one: the
// owner goes to the peer with the next upload.
func (s *Store) chownLocal(key cache.Key, uid, gid int) (fs.FileInfo, bool) {
	f, ok := s.local(key)
	if !ok {
		return nil, false
	}
	f.mu.Lock()
	if !f.setOwner {
		f.uid, f.gid = f.remote.Uid, f.remote.Gid
	}
	if uid >= 0 {
		f.uid = uint32(uid)
	}
	if gid >= 0 {
		f.gid = uint32(gid)
	}
	f.setOwner, f.ctime = true, time.Now()
	f.mu.Unlock()
	return s.localInfo(key), true
}

// local returns key's local copy, if there is one.
func (s *Store) local(key cache.Key) (*fileState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[key]
	return f, ok
}

// localInfo returns the attributes of key's local copy, or nil.
func (s *Store) localInfo(key cache.Key) fs.FileInfo {
	f, ok := s.local(key)
	if !ok {
		return nil
	}
	owners := false
	if p, err := s.peer(key.Peer); err == nil {
		owners = p.link.owners()
	}
	return f.info(base(key.Path), owners)
}
