package fusefs

import (
	"context"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

var (
	_ bfs.Node          = (*controlFile)(nil)
	_ bfs.NodeOpener    = (*controlFile)(nil)
	_ bfs.NodeSetattrer = (*controlFile)(nil)

	_ bfs.Handle       = (*controlHandle)(nil)
	_ bfs.HandleReader = (*controlHandle)(nil)
	_ bfs.HandleWriter = (*controlHandle)(nil)
)

// controlFile is .peerfs/status or .peerfs/sync.
type controlFile struct {
	fsys *filesys
	ctl  Controller
	name string
}

// Attr implements bfs.Node. The status file's size is that of a report
// made now; reads bypass the page cache (DirectIO), so a longer report
// at open is still read whole.
func (c *controlFile) Attr(ctx context.Context, a *fuse.Attr) error {
	f := c.fsys
	a.Valid = 0
	a.Inode = f.names.inode(ControlDir, c.name)
	a.Nlink = 1
	now := time.Now()
	a.Mtime, a.Atime, a.Ctime = now, now, now
	a.Uid, a.Gid = f.uid, f.gid
	if c.name == controlStatus {
		a.Mode = 0o444
		a.Size = uint64(len(c.ctl.StatusText()))
	} else {
		a.Mode = 0o200
	}
	return nil
}

// Setattr implements bfs.NodeSetattrer: the truncation (and touch) of
// a shell's "echo > .peerfs/sync" is accepted and ignored; modes and
// owners never change.
func (c *controlFile) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if c.name == controlSync && !req.Valid.Mode() && !req.Valid.Uid() && !req.Valid.Gid() {
		return c.Attr(ctx, &resp.Attr)
	}
	return c.fsys.done("setattr", ControlDir, c.name, syscall.EACCES)
}

// Open implements bfs.NodeOpener: status opens for reading only, sync
// for writing only. The status report is taken at open.
func (c *controlFile) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (bfs.Handle, error) {
	f := c.fsys
	resp.Flags |= fuse.OpenDirectIO
	switch {
	case c.name == controlStatus && req.Flags.IsReadOnly():
		return &controlHandle{file: c, data: c.ctl.StatusText()}, f.done("open", ControlDir, c.name, nil)
	case c.name == controlSync && req.Flags.IsWriteOnly():
		return &controlHandle{file: c}, f.done("open", ControlDir, c.name, nil)
	}
	return nil, f.done("open", ControlDir, c.name, syscall.EACCES)
}

// controlHandle is an open control file: the report taken at open, for
// status.
type controlHandle struct {
	file *controlFile
	data []byte
}

// Read implements bfs.HandleReader.
func (h *controlHandle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	if req.Offset < int64(len(h.data)) {
		resp.Data = h.data[req.Offset:min(int64(len(h.data)), req.Offset+int64(req.Size))]
	}
	return nil
}

// Write implements bfs.HandleWriter: every write to sync runs a SYNC
// round and returns its error; the bytes themselves mean nothing.
func (h *controlHandle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	f := h.file.fsys
	if h.file.name != controlSync {
		return f.done("write", ControlDir, h.file.name, syscall.EBADF)
	}
	if err := h.file.ctl.Sync(ctx); err != nil {
		return f.done("sync", ControlDir, h.file.name, err)
	}
	resp.Size = len(req.Data)
	return f.done("sync", ControlDir, h.file.name, nil)
}
