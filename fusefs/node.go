package fusefs

import (
	"context"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
)

// Lock order: filesys.mu before node.mu. Neither is held across a Store
// call, so open files and directories never serialize each other.

var (
	_ bfs.Node               = (*node)(nil)
	_ bfs.NodeGetattrer      = (*node)(nil)
	_ bfs.NodeSetattrer      = (*node)(nil)
	_ bfs.NodeForgetter      = (*node)(nil)
	_ fuseserve.NodeReviver  = (*node)(nil)
	_ fuseserve.NodeStatfser = (*node)(nil)
)

// nodeKey names an entry: a path inside a peer's export ("" is its root).
type nodeKey struct{ peer, path string }

// parent returns the key of the directory holding k, and k's base name.
func (k nodeKey) parent() (nodeKey, string) {
	i := strings.LastIndexByte(k.path, '/')
	if i < 0 {
		return nodeKey{k.peer, ""}, k.path
	}
	return nodeKey{k.peer, k.path[:i]}, k.path[i+1:]
}

// under reports whether k is p or inside p.
func (k nodeKey) under(p nodeKey) bool {
	if k.peer != p.peer {
		return false
	}
	return p.path == "" || k.path == p.path || strings.HasPrefix(k.path, p.path+"/")
}

// child joins a name onto a directory path.
func child(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// node is the part shared by directories and files: identity, the
// entry's current path, and attributes handed over from the call that
// produced the node.
type node struct {
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

// prime hands info to the next Attr call, so the Attr bazil makes right
// after Lookup, Create, Mkdir or Setattr costs no Store round trip.
func (n *node) prime(info fs.FileInfo) {
	n.mu.Lock()
	n.primed, n.last = info, info
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
		f.dropListing(nodeKey{n.peer, path})
	}
	return nil
}

// Forget implements bfs.NodeForgetter: the kernel holds no reference,
// so the node table may let go of it.
func (n *node) Forget() {
	n.fsys.forget(n)
}

// Statfs implements fuseserve.NodeStatfser: the space of the node's peer.
func (n *node) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	return n.fsys.statfs(ctx, []string{n.peer}, true, resp)
}

// fillAttr converts a Store entry to FUSE attributes.
func (f *filesys) fillAttr(a *fuse.Attr, ino uint64, isDir bool, info fs.FileInfo) {
	a.Valid = f.attrTimeout
	a.Inode = ino
	size := info.Size()
	if size < 0 {
		size = 0
	}
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512
	a.Mtime = info.ModTime()
	a.Atime = a.Mtime
	a.Ctime = a.Mtime
	a.Mode = info.Mode() & os.ModePerm
	a.Nlink = 1
	if isDir {
		a.Mode |= os.ModeDir
		a.Nlink = 2
	}
	a.Uid, a.Gid = f.uid, f.gid
	a.BlockSize = blockSize
}

// blockSize is the preferred I/O size reported in st_blksize; tools like
// cp use it as their buffer size, and bigger requests suit a network.
const blockSize = 128 << 10

// nodeFor returns the node for (peer, path), creating it if needed, and
// primes it with info. The same name yields the same node for as long as
// the kernel holds it, unless the entry changed kind.
func (f *filesys) nodeFor(peer, path string, info fs.FileInfo) bfs.Node {
	k := nodeKey{peer, path}
	isDir := path == "" || info.IsDir()
	f.mu.Lock()
	n, ok := f.nodes[k]
	if !ok || n.isDir != isDir {
		n = &node{fsys: f, peer: peer, path: path, isDir: isDir, ino: f.inodeLocked(k)}
		if isDir {
			n.self = &dir{node: n}
		} else {
			n.self = &file{node: n}
		}
		f.nodes[k] = n
	}
	f.mu.Unlock()
	n.prime(info)
	return n.self
}

// inode returns the stable inode number of (peer, path).
func (f *filesys) inode(peer, path string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inodeLocked(nodeKey{peer, path})
}

// inodeLocked hands out inode numbers from a table rather than a hash:
// numbers stay unique among live names (tools treat equal inodes as hard
// links), and a rename carries the number to the new name.
func (f *filesys) inodeLocked(k nodeKey) uint64 {
	ino, ok := f.inodes[k]
	if !ok {
		f.nextIno++
		ino = f.nextIno
		f.inodes[k] = ino
	}
	return ino
}

// forget drops n from the table if the table still points at it.
func (f *filesys) forget(n *node) {
	k := n.key()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes[k] == n {
		delete(f.nodes, k)
	}
}

// Revive implements fuseserve.NodeReviver: it puts n back in the table
// of live nodes when the kernel forgot it while a lookup was returning
// it, unless a newer node took its key meanwhile.
func (n *node) Revive() {
	f := n.fsys
	k := n.key()
	f.mu.Lock()
	if _, ok := f.nodes[k]; !ok {
		f.nodes[k] = n
	}
	f.mu.Unlock()
}

// removed updates the tables after (peer, path) was unlinked through the
// mount: the node stays valid for open handles but no longer names path.
func (f *filesys) removed(k nodeKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[k]; ok {
		delete(f.nodes, k)
		n.mu.Lock()
		n.removed = true
		n.primed = nil
		n.mu.Unlock()
	}
	delete(f.inodes, k)
	f.dropListingLocked(k)
}

// renamedFileLocked is renamed for file node n at from, with no directory
// at to. Called with f.mu held.
func (f *filesys) renamedFileLocked(n *node, from, to nodeKey) {
	if old, ok := f.nodes[to]; ok && old != n {
		old.mu.Lock()
		old.removed = true
		old.primed = nil
		old.mu.Unlock()
	}
	delete(f.nodes, from)
	f.nodes[to] = n
	n.mu.Lock()
	n.path = to.path
	n.primed = nil
	n.mu.Unlock()
	delete(f.inodes, to)
	if ino, ok := f.inodes[from]; ok {
		delete(f.inodes, from)
		f.inodes[to] = ino
	}
	f.dropListingLocked(from)
	f.dropListingLocked(to)
}

// renamed moves from and everything under it to to, in both tables and in
// the nodes' paths, after a successful Store rename. An entry replaced at
// to becomes removed.
func (f *filesys) renamed(from, to nodeKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[from]; ok && !n.isDir {
		if old, ok := f.nodes[to]; !ok || !old.isDir {
			// A file over a file (or a new name): nothing lies under
			// either name, so no table needs a scan (rsync and editors
			// rename one file after another).
			f.renamedFileLocked(n, from, to)
			return
		}
	}
	// Whatever the tables hold at or under to was replaced (a file, or
	// an empty directory).
	for k, n := range f.nodes {
		if k.under(to) {
			delete(f.nodes, k)
			n.mu.Lock()
			n.removed = true
			n.primed = nil
			n.mu.Unlock()
		}
	}
	for k := range f.inodes {
		if k.under(to) {
			delete(f.inodes, k)
		}
	}
	rekey := func(k nodeKey) nodeKey {
		return nodeKey{to.peer, to.path + k.path[len(from.path):]}
	}
	moved := map[nodeKey]*node{}
	for k, n := range f.nodes {
		if k.under(from) {
			delete(f.nodes, k)
			moved[rekey(k)] = n
		}
	}
	for k, n := range moved {
		f.nodes[k] = n
		n.mu.Lock()
		n.path = k.path
		n.primed = nil
		n.mu.Unlock()
	}
	movedIno := map[nodeKey]uint64{}
	for k, ino := range f.inodes {
		if k.under(from) {
			delete(f.inodes, k)
			movedIno[rekey(k)] = ino
		}
	}
	for k, ino := range movedIno {
		f.inodes[k] = ino
	}
	// Listings under the old name are stale; so are the parents'.
	f.dropPeerListingsLocked(from.peer)
}
