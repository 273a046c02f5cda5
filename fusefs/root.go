package fusefs

import (
	"context"
	"os"
	"slices"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

var (
	_ bfs.Node                = (*root)(nil)
	_ bfs.NodeRequestLookuper = (*root)(nil)
	_ bfs.HandleReadDirAller  = (*root)(nil)
	_ bfs.NodeSetattrer       = (*root)(nil)
	_ bfs.NodeMkdirer         = (*root)(nil)
	_ bfs.NodeCreater         = (*root)(nil)
	_ bfs.NodeRemover         = (*root)(nil)
	_ bfs.NodeRenamer         = (*root)(nil)
	_ bfs.NodeSymlinker       = (*root)(nil)
	_ bfs.NodeLinker          = (*root)(nil)
	_ bfs.NodeMknoder         = (*root)(nil)
	_ bfs.NodeFsyncer         = (*root)(nil)
)

// root is the mount's top directory: one read-only folder per connected
// peer, and the control folder .peerfs when the Store is a Controller
// (control.go). Peers come and go through the Store, never through the
// mount.
type root struct {
	fsys  *filesys
	mtime time.Time
}

// Attr implements bfs.Node.
func (r *root) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Valid = r.fsys.attrTimeout
	a.Inode = 1
	a.Mode = os.ModeDir | 0o555
	a.Nlink = 2
	a.Mtime, a.Atime, a.Ctime = r.mtime, r.mtime, r.mtime
	a.Uid, a.Gid = r.fsys.uid, r.fsys.gid
	a.BlockSize = blockSize
	return nil
}

// Lookup implements bfs.NodeRequestLookuper: a connected peer's folder.
func (r *root) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (bfs.Node, error) {
	f := r.fsys
	if err := checkNames(req.Name); err != nil {
		return nil, f.done("lookup", req.Name, "", err)
	}
	if f.control != nil && req.Name == ControlDir {
		resp.EntryValid = f.entryTimeout
		return f.control, f.done("lookup", ControlDir, "", nil)
	}
	if !slices.Contains(f.store.Peers(), req.Name) {
		return nil, f.done("lookup", req.Name, "", syscall.ENOENT)
	}
	info, err := f.store.Stat(ctx, req.Name, "")
	if err != nil {
		return nil, f.done("lookup", req.Name, "", err)
	}
	resp.EntryValid = f.entryTimeout
	return f.nodeFor(req.Name, "", info), f.done("lookup", req.Name, "", nil)
}

// ReadDirAll implements bfs.HandleReadDirAller: the peers, the control
// folder, and . and .. (the root itself: the kernel answers .. of a
// mount's root with the directory it is mounted on).
func (r *root) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	f := r.fsys
	peers := f.store.Peers()
	ents := make([]fuse.Dirent, 0, len(peers)+3)
	ents = append(ents, fuse.Dirent{Inode: 1, Type: fuse.DT_Dir, Name: "."}, fuse.Dirent{Inode: 1, Type: fuse.DT_Dir, Name: ".."})
	for _, p := range peers {
		ents = append(ents, fuse.Dirent{Inode: f.names.inode(p, ""), Type: fuse.DT_Dir, Name: p})
	}
	if f.control != nil {
		ents = append(ents, fuse.Dirent{Inode: f.names.inode(ControlDir, ""), Type: fuse.DT_Dir, Name: ControlDir})
	}
	return ents, f.done("readdir", "", "", nil)
}

// refuse answers every change to the root: peers are not made by mkdir.
func (r *root) refuse(op, name string) error {
	err := checkNames(name)
	if err == nil {
		err = syscall.EACCES
	}
	return r.fsys.done(op, "", name, err)
}

// Setattr implements bfs.NodeSetattrer.
func (r *root) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	return r.refuse("setattr", "")
}

// Mkdir implements bfs.NodeMkdirer.
func (r *root) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (bfs.Node, error) {
	return nil, r.refuse("mkdir", req.Name)
}

// Create implements bfs.NodeCreater.
func (r *root) Create(ctx context.Context, req *fuse.CreateRequest, resp *fuse.CreateResponse) (bfs.Node, bfs.Handle, error) {
	return nil, nil, r.refuse("create", req.Name)
}

// Remove implements bfs.NodeRemover.
func (r *root) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	return r.refuse("remove", req.Name)
}

// Rename implements bfs.NodeRenamer.
func (r *root) Rename(ctx context.Context, req *fuse.RenameRequest, newDir bfs.Node) error {
	return r.refuse("rename", req.OldName)
}

// Symlink implements bfs.NodeSymlinker.
func (r *root) Symlink(ctx context.Context, req *fuse.SymlinkRequest) (bfs.Node, error) {
	return nil, r.refuse("symlink", req.NewName)
}

// Link implements bfs.NodeLinker.
func (r *root) Link(ctx context.Context, req *fuse.LinkRequest, old bfs.Node) (bfs.Node, error) {
	return nil, r.refuse("link", req.NewName)
}

// Mknod implements bfs.NodeMknoder.
func (r *root) Mknod(ctx context.Context, req *fuse.MknodRequest) (bfs.Node, error) {
	return nil, r.refuse("mknod", req.Name)
}

// Fsync implements bfs.NodeFsyncer: fsync of the root runs the SYNC
// round, like fsync of any directory.
func (r *root) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	return r.fsys.done("fsyncdir", "", "", r.fsys.store.Sync(uninterruptible(ctx)))
}
