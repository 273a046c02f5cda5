package fusefs

import (
	"context"
	"os"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// ControlDir is the name of the control folder in the mount root. It is
// shown only when the Store implements Controller; a peer of that name is
// the Store's business to refuse (remote.Store does).
const ControlDir = ".peerfs"

// Controller is an optional interface of a Store: one that implements it
// gets a read-only folder .peerfs in the mount root, holding
//
//	status  the daemon's status report as text (StatusText), read-only;
//	sync    write-only: writing anything to it runs Sync, a SYNC round, and
//	        the write returns Sync's error (echo > .peerfs/sync);
//	unsent  copies the Store set aside, if it is an UnsentController
//	        (unsent.go).
type Controller interface {
	// StatusText returns the status report shown in .peerfs/status.
	StatusText() []byte
	// Sync runs a SYNC round (the same as Store.Sync).
	Sync(ctx context.Context) error
}

var (
	_ bfs.Node               = (*controlDir)(nil)
	_ bfs.NodeStringLookuper = (*controlDir)(nil)
	_ bfs.HandleReadDirAller = (*controlDir)(nil)

	_ bfs.Node          = (*controlFile)(nil)
	_ bfs.NodeOpener    = (*controlFile)(nil)
	_ bfs.NodeSetattrer = (*controlFile)(nil)

	_ bfs.Handle       = (*controlHandle)(nil)
	_ bfs.HandleReader = (*controlHandle)(nil)
	_ bfs.HandleWriter = (*controlHandle)(nil)
)

// Names of the files in the control folder.
const (
	controlStatus = "status"
	controlSync   = "sync"
)

// controlDir is the .peerfs folder. Its inode numbers come from the node
// table under the reserved peer name ControlDir, so they never clash.
type controlDir struct {
	fsys         *filesys
	ctl          Controller
	status, sync *controlFile
	unsent       *unsentDir // nil unless ctl is an UnsentController
}

// newControlDir returns the control folder of f, or nil if f's Store is
// not a Controller.
func newControlDir(f *filesys) *controlDir {
	ctl, ok := f.store.(Controller)
	if !ok {
		return nil
	}
	d := &controlDir{fsys: f, ctl: ctl}
	d.status = &controlFile{fsys: f, ctl: ctl, name: controlStatus}
	d.sync = &controlFile{fsys: f, ctl: ctl, name: controlSync}
	if uc, ok := ctl.(UnsentController); ok {
		d.unsent = &unsentDir{fsys: f, ctl: uc}
	}
	return d
}

// Attr implements bfs.Node.
func (d *controlDir) Attr(ctx context.Context, a *fuse.Attr) error {
	f := d.fsys
	a.Valid = f.attrTimeout
	a.Inode = f.inode(ControlDir, "")
	a.Mode = os.ModeDir | 0o555
	a.Nlink = 2
	a.Mtime, a.Atime, a.Ctime = f.root.mtime, f.root.mtime, f.root.mtime
	a.Uid, a.Gid = f.uid, f.gid
	return nil
}

// Lookup implements bfs.NodeStringLookuper.
func (d *controlDir) Lookup(ctx context.Context, name string) (bfs.Node, error) {
	switch name {
	case controlStatus:
		return d.status, d.fsys.done("lookup", ControlDir, name, nil)
	case controlSync:
		return d.sync, d.fsys.done("lookup", ControlDir, name, nil)
	case controlUnsent:
		if d.unsent != nil {
			return d.unsent, d.fsys.done("lookup", ControlDir, name, nil)
		}
	}
	return nil, d.fsys.done("lookup", ControlDir, name, syscall.ENOENT)
}

// ReadDirAll implements bfs.HandleReadDirAller.
func (d *controlDir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	f := d.fsys
	out := []fuse.Dirent{
		{Inode: f.inode(ControlDir, controlStatus), Type: fuse.DT_File, Name: controlStatus},
		{Inode: f.inode(ControlDir, controlSync), Type: fuse.DT_File, Name: controlSync},
	}
	if d.unsent != nil {
		out = append(out, fuse.Dirent{Inode: f.inode(ControlDir, controlUnsent), Type: fuse.DT_Dir, Name: controlUnsent})
	}
	return out, f.done("readdir", ControlDir, "", nil)
}

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
	a.Inode = f.inode(ControlDir, c.name)
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
