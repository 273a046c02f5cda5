package fusefs

import (
	"context"
	"path"
	"syscall"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

var (
	_ bfs.Node         = (*unsentFile)(nil)
	_ bfs.NodeOpener   = (*unsentFile)(nil)
	_ bfs.HandleReader = (*unsentFile)(nil)
)

// unsentFile is one copy set aside, name being "<peer>/<path>".
type unsentFile struct {
	fsys *filesys
	ctl  UnsentController
	name string
}

// Attr implements bfs.Node.
func (u *unsentFile) Attr(ctx context.Context, a *fuse.Attr) error {
	f := u.fsys
	a.Valid = 0
	a.Inode = f.names.inode(ControlDir, path.Join(controlUnsent, u.name))
	a.Mode = 0o444
	a.Nlink = 1
	a.Uid, a.Gid = f.uid, f.gid
	for _, c := range u.ctl.UnsentFiles() {
		if c.Name == u.name {
			a.Size = uint64(c.Size)
			a.Mtime, a.Atime, a.Ctime = c.Mtime, c.Mtime, c.Mtime
			return nil
		}
	}
	return f.done("getattr", ControlDir, path.Join(controlUnsent, u.name), syscall.ENOENT)
}

// Open implements bfs.NodeOpener: for reading only; the node is its
// own handle.
func (u *unsentFile) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (bfs.Handle, error) {
	if !req.Flags.IsReadOnly() {
		return nil, u.fsys.done("open", ControlDir, path.Join(controlUnsent, u.name), syscall.EACCES)
	}
	resp.Flags |= fuse.OpenDirectIO
	return u, u.fsys.done("open", ControlDir, path.Join(controlUnsent, u.name), nil)
}

// Read implements bfs.HandleReader.
func (u *unsentFile) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	buf := make([]byte, req.Size)
	n, err := u.ctl.ReadUnsent(u.name, buf, req.Offset)
	if err != nil {
		return u.fsys.done("read", ControlDir, path.Join(controlUnsent, u.name), err)
	}
	resp.Data = buf[:n]
	return nil
}
