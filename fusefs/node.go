package fusefs

import (
	"context"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
)

var (
	_ bfs.Node               = (*node)(nil)
	_ bfs.NodeGetattrer      = (*node)(nil)
	_ bfs.NodeSetattrer      = (*node)(nil)
	_ bfs.NodeForgetter      = (*node)(nil)
	_ fuseserve.NodeReviver  = (*node)(nil)
	_ fuseserve.NodeStatfser = (*node)(nil)
)

// node is the part shared by every kind of entry: identity, the entry's
// current path and inode number, and attributes handed over from the
// call that produced the node.
type node struct {
	// Read-only after nodeFor made it.
	fsys *filesys
	self bfs.Node // the *dir, *file, *symlink or *special embedding this node
	peer string
	kind fs.FileMode // the entry's type: its mode's typeBits (0 for a regular file)

	mu      sync.Mutex // protects the fields below
	path    string     // updated by rename
	ino     uint64     // the mount's inode number of the entry (names.go)
	peerIno uint64     // the entry's inode number on its peer; 0 unknown
	removed bool       // unlinked through this mount
	primed  fs.FileInfo
	last    fs.FileInfo
	handles map[*handle]struct{} // open handles of a file
	// localShown: the kernel was given attributes of a copy changed here
	// (Stat.Local), to keep for the attribute timeout; they go from the
	// kernel once the copy is stored (localStored: after the next flush
	// or fsync, or as the Store says, StoredWatcher), its times the
	// peer's then.
	localShown bool
}

// isDir reports whether n is a directory.
func (n *node) isDir() bool { return n.kind == fs.ModeDir }

// key returns the node's current name.
func (n *node) key() nodeKey {
	n.mu.Lock()
	defer n.mu.Unlock()
	return nodeKey{n.peer, n.path}
}

// prime hands info to the next Attr call, so the Attr the request server
// makes right after Lookup, Create, Mkdir or Setattr costs no Store round
// trip.
func (n *node) prime(info fs.FileInfo) {
	n.mu.Lock()
	n.primed, n.last = info, info
	n.mu.Unlock()
}

// markRemoved notes that n no longer names its path: unlinked, or
// replaced by a rename, through this mount.
func (n *node) markRemoved() {
	n.mu.Lock()
	n.removed = true
	n.primed = nil
	n.mu.Unlock()
}

// moved notes n's new path after a rename.
func (n *node) moved(path string) {
	n.mu.Lock()
	n.path = path
	n.primed = nil
	n.mu.Unlock()
}

// unprime drops primed attributes after the file changed.
func (n *node) unprime() {
	n.mu.Lock()
	n.primed = nil
	n.mu.Unlock()
}

// forgetAttrs drops the attributes n keeps from earlier answers (primed,
// and last unless n was unlinked here: then they are all it has), after
// its entry changed by another name or another writer's hand.
func (n *node) forgetAttrs() {
	n.mu.Lock()
	n.primed = nil
	if !n.removed {
		n.last = nil
	}
	n.mu.Unlock()
}

// Attr implements bfs.Node.
func (n *node) Attr(ctx context.Context, a *fuse.Attr) error {
	path, err := n.attr(ctx, a)
	return n.fsys.done("attr", n.peer, path, err)
}

// Getattr implements bfs.NodeGetattrer: Attr, logged as a stat
// rather than as the attributes a lookup returns.
func (n *node) Getattr(ctx context.Context, req *fuse.GetattrRequest, resp *fuse.GetattrResponse) error {
	path, err := n.attr(ctx, &resp.Attr)
	return n.fsys.done("getattr", n.peer, path, err)
}

func (n *node) attr(ctx context.Context, a *fuse.Attr) (string, error) {
	n.mu.Lock()
	info, path, removed := n.primed, n.path, n.removed
	n.primed = nil
	fh, open := n.anyHandle(false)
	if info == nil && removed {
		// An unlinked file: from memory, or through a descriptor if
		// one is open (its data stays, and may change).
		info = n.last
	}
	n.mu.Unlock()
	if removed && open {
		var err error
		if info, err = n.fsys.store.StatHandle(ctx, fh); err != nil {
			return path, err
		}
	}
	if info == nil {
		var err error
		info, err = n.fsys.store.Stat(ctx, n.peer, path)
		if err != nil {
			return path, err
		}
		if kindOf(info) != n.kind && path != "" {
			// The name now refers to another kind of entry; make the
			// kernel look it up again.
			return path, syscall.ESTALE
		}
		n.mu.Lock()
		n.last = info
		n.mu.Unlock()
		n.learn(info)
	}
	st := StatOf(info)
	local := st != nil && st.Local
	n.mu.Lock()
	ino := n.ino
	if local {
		n.localShown = true
	}
	n.mu.Unlock()
	n.fsys.fillAttr(a, ino, info)
	if removed {
		// This name is gone; other hard links of the entry stay.
		a.Nlink = max(a.Nlink, 1) - 1
	}
	return path, nil
}

// localStored drops the kernel's attributes of n if they were a local
// copy's (localShown), after a flush or fsync that may have stored the
// copy: its times are the peer's from then on, and a program that looks
// again must see those, not the ones it was shown before until the
// attribute timeout ends. The kernel drops a reply to a GETATTR that was
// on its way meanwhile too (its attr_version), and waits on nothing for
// it, so the request that stored the copy sends it.
func (n *node) localStored() {
	n.mu.Lock()
	shown := n.localShown
	n.localShown = false
	n.mu.Unlock()
	if !shown || n.fsys.kernel == nil {
		return
	}
	if err := n.fsys.kernel.InvalidateNodeAttr(n.self); err != nil {
		n.fsys.log.Debug().Err(err).Str("peer", n.peer).Str("path", n.key().path).Msg("invalidate the attributes of a stored copy")
	}
}

// stored is the StoredWatcher callback: peer's file at path was stored,
// and its node, if the kernel holds one, drops what the kernel was shown
// of the local copy's attributes (localStored).
func (f *filesys) stored(peer, path string) {
	if fl, ok := f.names.lookupSelf(nodeKey{peer, path}).(*file); ok {
		fl.localStored()
	}
}

// anyHandle returns the Store handle of one of n's open handles (open
// for writing, if writing). Called with n.mu held.
func (n *node) anyHandle(writing bool) (uint64, bool) {
	for h := range n.handles {
		if h.writable || !writing {
			return h.fh, true
		}
	}
	return 0, false
}

// learn takes the entry's inode number on its peer from info, and with it
// the node's inode number (names.go), if it changed.
func (n *node) learn(info fs.FileInfo) {
	st := StatOf(info)
	if st == nil || st.Ino == 0 {
		return
	}
	n.mu.Lock()
	same, path := n.peerIno == st.Ino, n.path
	n.mu.Unlock()
	if same {
		return
	}
	ino := n.fsys.names.inodeOf(n.peer, path, st.Ino)
	n.mu.Lock()
	n.peerIno, n.ino = st.Ino, ino
	n.mu.Unlock()
}

// lastInfo returns the attributes n last had, asking the Store if it has
// none.
func (n *node) lastInfo(ctx context.Context) (fs.FileInfo, error) {
	n.mu.Lock()
	info, path := n.last, n.path
	n.mu.Unlock()
	if info != nil {
		return info, nil
	}
	return n.fsys.store.Stat(ctx, n.peer, path)
}

// peerInode returns the entry's inode number on its peer (0: unknown),
// whose other names (hard links) a change to it changes too
// (filesys.siblingsChanged).
func (n *node) peerInode() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peerIno
}

// Setattr implements bfs.NodeSetattrer: size -> Truncate, uid and gid ->
// Chown (where the Store keeps owners), mode -> Chmod, times -> Chtimes.
func (n *node) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	k := n.key()
	err := n.setattr(ctx, k.path, req)
	return n.fsys.done("setattr", n.peer, k.path, err)
}

func (n *node) setattr(ctx context.Context, path string, req *fuse.SetattrRequest) error {
	v := req.Valid
	f := n.fsys
	uid, gid, err := n.owners(ctx, req)
	if err != nil {
		return err
	}
	atime, mtime := timeChange(v.Atime(), v.AtimeNow(), req.Atime), timeChange(v.Mtime(), v.MtimeNow(), req.Mtime)
	if (v.Size() || v.Mode() || uid >= 0 || gid >= 0 || atime.Set || mtime.Set) && f.readOnly {
		return syscall.EROFS
	}
	var info fs.FileInfo
	n.mu.Lock()
	removed := n.removed
	n.mu.Unlock()
	// The file's group before a chown changes it: whether the caller is
	// in it decides a setgid bit's fate (killSuidgid).
	var group uint32
	kill := f.killPriv && !n.isDir() && !removed && (v&fuse.SetattrKillSUIDGID != 0 || chowned(v))
	if kill {
		last, err := n.lastInfo(ctx)
		if err != nil {
			return err
		}
		group = f.groupOf(last)
	}
	if kill && v.Size() && uid < 0 && gid < 0 {
		// A truncation by a caller without CAP_FSETID: the bits go
		// first, as the kernel clears them before a write, so that no
		// upload that keeps them carries the truncated content (the
		// Store's Chmod waits for one under way).
		if _, err := n.killSuidgid(ctx, path, nil, req.Header, group, false); err != nil {
			return err
		}
		kill = false
	}
	if v.Size() {
		if n.isDir() {
			return syscall.EISDIR
		}
		n.mu.Lock()
		fh, open := n.anyHandle(true)
		n.mu.Unlock()
		if removed && open {
			// ftruncate of an unlinked file: through its descriptor.
			info, err = f.store.TruncateHandle(ctx, fh, int64(req.Size))
		} else {
			info, err = f.store.Truncate(ctx, n.peer, path, int64(req.Size))
		}
		if err != nil {
			return err
		}
	}
	if uid >= 0 || gid >= 0 {
		// Before the mode: a chown clears setuid bits, and the kernel
		// sends the mode it wants after it in the same request.
		if info, err = f.store.Chown(ctx, n.peer, path, uid, gid); err != nil {
			return err
		}
	}
	if kill {
		// A truncation by a caller without CAP_FSETID, or a chown (also
		// of a Store without owners, where it changes nothing): the
		// kernel leaves clearing the bits to the mount. A Store that
		// chowns on the peer has it done there, and info says so. Not
		// of a file whose name is gone (truncated through a
		// descriptor): its path leads to another file now, if any.
		chown := v&fuse.SetattrSize == 0
		if kinfo, err := n.killSuidgid(ctx, path, info, req.Header, group, chown && req.Header.Uid == 0); err != nil {
			return err
		} else if kinfo != nil {
			info = kinfo
		}
	}
	if v.Mode() {
		if info, err = f.store.Chmod(ctx, n.peer, path, req.Mode&modeBits); err != nil {
			return err
		}
	}
	if atime.Set || mtime.Set {
		if info, err = f.store.Chtimes(ctx, n.peer, path, atime, mtime); err != nil {
			return err
		}
	}
	if info != nil {
		n.prime(info)
		n.learn(info)
		f.names.dropListing(nodeKey{n.peer, path})
		f.siblingsChanged(n.peer, n.peerInode(), n)
	}
	return nil
}

// killSuidgid clears the setuid bit of n (a regular file at path), and
// its setgid bit if its group may execute it or the caller is neither in
// its group nor privileged, where the kernel leaves that to the mount
// (filesys.killPriv): after a write or a truncation by a caller without
// CAP_FSETID, which the kernel marks, and after any chown, as a local
// filesystem does. hdr is the request's and group the file's group
// before the change; privileged says the caller may keep setgid outside
// that group (a chown by root). Group membership is the caller's group:
// a request does not carry its other groups, so a member through one of
// them loses the setgid bit of a file its group may not execute (a local
// disk would keep it), never the other way. info is n's attributes as
// last changed, nil for those n last had. It returns the attributes
// after the change, nil where there was nothing to clear.
func (n *node) killSuidgid(ctx context.Context, path string, info fs.FileInfo, hdr fuse.Header, group uint32, privileged bool) (fs.FileInfo, error) {
	if info == nil {
		var err error
		if info, err = n.lastInfo(ctx); err != nil {
			return nil, err
		}
	}
	m := info.Mode()
	if m&typeBits != 0 {
		return nil, nil
	}
	var kill fs.FileMode
	if m&fs.ModeSetuid != 0 {
		kill |= fs.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 && (m&0o010 != 0 || !privileged && hdr.Gid != group) {
		kill |= fs.ModeSetgid
	}
	if kill == 0 {
		return nil, nil
	}
	return n.fsys.store.Chmod(ctx, n.peer, path, m&modeBits&^kill)
}

// chowned reports whether a SETATTR with v is a chown: of the owner or
// the group, or of neither (chown(-1, -1): a SETATTR of nothing, which on
// a local disk clears setuid bits all the same, as does the kernel's
// request to clear them before a write to a setuid file); not with a
// mode in it (the kernel's own clearing, without KillPriv).
func chowned(v fuse.SetattrValid) bool {
	if v.Mode() {
		return false
	}
	return v.Uid() || v.Gid() || v&^(fuse.SetattrHandle|fuse.SetattrLockOwner|fuse.SetattrCTime) == 0
}

// owners returns the owner and group a setattr asks for (-1: unchanged).
// Where the Store keeps no owners, every entry shows as the mounting
// user, and a change to anyone else is EPERM (as sshfs has it).
func (n *node) owners(ctx context.Context, req *fuse.SetattrRequest) (uid, gid int, err error) {
	v, f := req.Valid, n.fsys
	uid, gid = -1, -1
	if !v.Uid() && !v.Gid() {
		return uid, gid, nil
	}
	info, err := n.lastInfo(ctx)
	if err != nil {
		return uid, gid, err
	}
	if st := StatOf(info); st == nil || !st.Owners {
		if (v.Uid() && req.Uid != f.uid) || (v.Gid() && req.Gid != f.gid) {
			return uid, gid, syscall.EPERM
		}
		return uid, gid, nil
	}
	if v.Uid() {
		uid = int(req.Uid)
	}
	if v.Gid() {
		gid = int(req.Gid)
	}
	return uid, gid, nil
}

// timeChange is what a setattr asks of one time: set (to t, or now).
func timeChange(set, now bool, t time.Time) TimeChange {
	if now {
		return TimeChange{Set: true, Now: true}
	}
	if !set {
		return TimeChange{}
	}
	return TimeChange{Set: true, T: t}
}

// Forget implements bfs.NodeForgetter: the kernel holds no reference,
// so the name table may let go of it.
func (n *node) Forget() {
	n.fsys.names.forget(n)
}

// Revive implements fuseserve.NodeReviver: it puts n back in the name
// table when the kernel forgot it while a lookup was returning it, unless
// a newer node took its name meanwhile.
func (n *node) Revive() {
	n.fsys.names.revive(n)
}

// Statfs implements fuseserve.NodeStatfser: the space of the node's peer.
func (n *node) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	return n.fsys.statfs(ctx, []string{n.peer}, true, resp)
}
