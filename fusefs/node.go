package fusefs

import (
	"context"
	"io/fs"
	"os"
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

// node is the part shared by directories and files: identity, the
// entry's current path, and attributes handed over from the call that
// produced the node.
type node struct {
	// Read-only after nodeFor made it.
	fsys  *filesys
	self  bfs.Node // the *dir or *file embedding this node
	peer  string
	ino   uint64
	isDir bool

	mu      sync.Mutex // protects the fields below
	path    string     // updated by rename
	removed bool       // unlinked through this mount
	primed  fs.FileInfo
	last    fs.FileInfo
	handles map[*handle]struct{} // open handles of a file
}

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
	if info == nil && removed {
		// fstat of an unlinked but open file: answer from memory.
		info = n.last
	}
	n.mu.Unlock()
	if info == nil {
		var err error
		info, err = n.fsys.store.Stat(ctx, n.peer, path)
		if err != nil {
			return path, err
		}
		if info.IsDir() != n.isDir {
			// The name now refers to another kind of entry; make the
			// kernel look it up again.
			return path, syscall.ESTALE
		}
		n.mu.Lock()
		n.last = info
		n.mu.Unlock()
	}
	n.fsys.fillAttr(a, n.ino, n.isDir, info)
	if removed {
		a.Nlink = 0
	}
	return path, nil
}

// Setattr implements bfs.NodeSetattrer: size -> Truncate, mode ->
// Chmod, mtime -> Chtimes. Ownership cannot change; atime is not kept.
func (n *node) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	k := n.key()
	err := n.setattr(ctx, k.path, req)
	return n.fsys.done("setattr", n.peer, k.path, err)
}

func (n *node) setattr(ctx context.Context, path string, req *fuse.SetattrRequest) error {
	v := req.Valid
	f := n.fsys
	if (v.Uid() && req.Uid != f.uid) || (v.Gid() && req.Gid != f.gid) {
		return syscall.EPERM
	}
	if (v.Size() || v.Mode() || v.Mtime() || v.MtimeNow()) && f.readOnly {
		return syscall.EROFS
	}
	var (
		info fs.FileInfo
		err  error
	)
	if v.Size() {
		if n.isDir {
			return syscall.EISDIR
		}
		if info, err = f.store.Truncate(ctx, n.peer, path, int64(req.Size)); err != nil {
			return err
		}
	}
	if v.Mode() {
		if info, err = f.store.Chmod(ctx, n.peer, path, req.Mode&os.ModePerm); err != nil {
			return err
		}
	}
	if v.Mtime() || v.MtimeNow() {
		mtime := req.Mtime
		if mtime.IsZero() {
			mtime = time.Now()
		}
		if info, err = f.store.Chtimes(ctx, n.peer, path, mtime); err != nil {
			return err
		}
	}
	if info != nil {
		n.prime(info)
		f.names.dropListing(nodeKey{n.peer, path})
	}
	return nil
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
