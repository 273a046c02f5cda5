package fusefs

import (
	"context"
	"os"
	"syscall"

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
	a.Inode = f.names.inode(ControlDir, "")
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
		{Inode: f.names.inode(ControlDir, ""), Type: fuse.DT_Dir, Name: "."},
		{Inode: 1, Type: fuse.DT_Dir, Name: ".."},
		{Inode: f.names.inode(ControlDir, controlStatus), Type: fuse.DT_File, Name: controlStatus},
		{Inode: f.names.inode(ControlDir, controlSync), Type: fuse.DT_File, Name: controlSync},
	}
	if d.unsent != nil {
		out = append(out, fuse.Dirent{Inode: f.names.inode(ControlDir, controlUnsent), Type: fuse.DT_Dir, Name: controlUnsent})
	}
	return out, f.done("readdir", ControlDir, "", nil)
}
