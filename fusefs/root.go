package fusefs

import (
	"context"
	"os"
	"slices"
	"syscall"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"
)

var (
	_ fusefs.Node                = (*root)(nil)
	_ fusefs.NodeRequestLookuper = (*root)(nil)
	_ fusefs.HandleReadDirAller  = (*root)(nil)
	_ fusefs.NodeSetattrer       = (*root)(nil)
	_ fusefs.NodeMkdirer         = (*root)(nil)
	_ fusefs.NodeCreater         = (*root)(nil)
	_ fusefs.NodeRemover         = (*root)(nil)
	_ fusefs.NodeRenamer         = (*root)(nil)
	_ fusefs.NodeSymlinker       = (*root)(nil)
	_ fusefs.NodeLinker          = (*root)(nil)
	_ fusefs.NodeMknoder         = (*root)(nil)
	_ fusefs.NodeFsyncer         = (*root)(nil)
)

// root is the mount's top directory: one read-only folder per connected
// peer, and the control folder .peerfs when the Store is a Controller
// (control.go). Peers come and go through the Store, never through the
// mount.
type root struct {
	fsys  *filesys
	mtime time.Time
}

// Attr implements fusefs.Node.
func (r *root) Attr(ctx context.Context, a *fuse.Attr) error {
	r.fsys.markServing()
	a.Valid = r.fsys.attrTimeout
	a.Inode = 1
	a.Mode = os.ModeDir | 0o555
	a.Nlink = 2
	a.Mtime, a.Atime, a.Ctime = r.mtime, r.mtime, r.mtime
	a.Uid, a.Gid = r.fsys.uid, r.fsys.gid
	a.BlockSize = blockSize
	return nil
}

// Lookup implements fusefs.NodeRequestLookuper: a connected peer's folder.
func (r *root) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (fusefs.Node, error) {
	r.fsys.markServing()
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

// ReadDirAll implements fusefs.HandleReadDirAller.
func (r *root) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	r.fsys.markServing()
	f := r.fsys
	peers := f.store.Peers()
	ents := make([]fuse.Dirent, 0, len(peers))
	for _, p := range peers {
		ents = append(ents, fuse.Dirent{Inode: f.inode(p, ""), Type: fuse.DT_Dir, Name: p})
	}
	if f.control != nil {
		ents = append(ents, fuse.Dirent{Inode: f.inode(ControlDir, ""), Type: fuse.DT_Dir, Name: ControlDir})
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

// Setattr implements fusefs.NodeSetattrer.
func (r *root) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	return r.refuse("setattr", "")
}

// Mkdir implements fusefs.NodeMkdirer.
func (r *root) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (fusefs.Node, error) {
	return nil, r.refuse("mkdir", req.Name)
}

// Create implements fusefs.NodeCreater.
func (r *root) Create(ctx context.Context, req *fuse.CreateRequest, resp *fuse.CreateResponse) (fusefs.Node, fusefs.Handle, error) {
	return nil, nil, r.refuse("create", req.Name)
}

// Remove implements fusefs.NodeRemover.
func (r *root) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	return r.refuse("remove", req.Name)
}

// Rename implements fusefs.NodeRenamer.
func (r *root) Rename(ctx context.Context, req *fuse.RenameRequest, newDir fusefs.Node) error {
	return r.refuse("rename", req.OldName)
}

// Symlink implements fusefs.NodeSymlinker.
func (r *root) Symlink(ctx context.Context, req *fuse.SymlinkRequest) (fusefs.Node, error) {
	return nil, r.refuse("symlink", req.NewName)
}

// Link implements fusefs.NodeLinker.
func (r *root) Link(ctx context.Context, req *fuse.LinkRequest, old fusefs.Node) (fusefs.Node, error) {
	return nil, r.refuse("link", req.NewName)
}

// Mknod implements fusefs.NodeMknoder.
func (r *root) Mknod(ctx context.Context, req *fuse.MknodRequest) (fusefs.Node, error) {
	return nil, r.refuse("mknod", req.Name)
}

// Fsync implements fusefs.NodeFsyncer: fsync of the root runs the SYNC
// round, like fsync of any directory.
func (r *root) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	return r.fsys.done("fsyncdir", "", "", r.fsys.store.Sync(uninterruptible(ctx)))
}
