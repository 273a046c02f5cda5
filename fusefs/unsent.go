package fusefs

import (
	"context"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// UnsentController is an optional interface of a Controller: a Store
// that sets aside copies it cannot store (see remote.Store.Unsent) shows
// them, read-only, under .peerfs/unsent/<peer>/<path>, where a user can
// read or copy them, and rm drops one.
type UnsentController interface {
	// UnsentFiles lists the copies set aside by name ("<peer>/<path>"),
	// with their sizes and when they were last written.
	UnsentFiles() []UnsentFile
	// ReadUnsent reads the copy name at off, like io.ReaderAt but with a
	// short count and no error at its end.
	ReadUnsent(name string, p []byte, off int64) (int, error)
	// DropUnsent deletes the copy name.
	DropUnsent(name string) error
}

// UnsentFile is one copy set aside.
type UnsentFile struct {
	Name  string // "<peer>/<path>"
	Size  int64
	Mtime time.Time
}

// controlUnsent is the name of the folder of unsent copies.
const controlUnsent = "unsent"

var (
	_ bfs.Node               = (*unsentDir)(nil)
	_ bfs.NodeStringLookuper = (*unsentDir)(nil)
	_ bfs.HandleReadDirAller = (*unsentDir)(nil)
	_ bfs.NodeRemover        = (*unsentDir)(nil)
)

// unsentDir is .peerfs/unsent or a folder below it: dir is its path
// under unsent ("" for unsent itself). The tree is made of the copies'
// names as they are at each request.
type unsentDir struct {
	fsys *filesys
	ctl  UnsentController
	dir  string
}

func (d *unsentDir) key(name string) string {
	return path.Join(controlUnsent, d.dir, name)
}

// Attr implements bfs.Node.
func (d *unsentDir) Attr(ctx context.Context, a *fuse.Attr) error {
	f := d.fsys
	a.Valid = 0
	a.Inode = f.names.inode(ControlDir, d.key(""))
	a.Mode = os.ModeDir | 0o755
	a.Nlink = 2
	a.Mtime, a.Atime, a.Ctime = f.root.mtime, f.root.mtime, f.root.mtime
	a.Uid, a.Gid = f.uid, f.gid
	return nil
}

// children returns the names directly in d, each with whether it is a
// copy (else a folder), and the copies' details.
func (d *unsentDir) children() map[string]*UnsentFile {
	prefix := ""
	if d.dir != "" {
		prefix = d.dir + "/"
	}
	out := map[string]*UnsentFile{}
	for _, u := range d.ctl.UnsentFiles() {
		rest, ok := strings.CutPrefix(u.Name, prefix)
		if !ok || rest == "" {
			continue
		}
		if first, _, deeper := strings.Cut(rest, "/"); deeper {
			if _, seen := out[first]; !seen {
				out[first] = nil
			}
		} else {
			u := u
			out[rest] = &u
		}
	}
	return out
}

// Lookup implements bfs.NodeStringLookuper.
func (d *unsentDir) Lookup(ctx context.Context, name string) (bfs.Node, error) {
	c, ok := d.children()[name]
	switch {
	case !ok:
		return nil, d.fsys.done("lookup", ControlDir, d.key(name), syscall.ENOENT)
	case c == nil:
		return &unsentDir{fsys: d.fsys, ctl: d.ctl, dir: path.Join(d.dir, name)}, d.fsys.done("lookup", ControlDir, d.key(name), nil)
	}
	return &unsentFile{fsys: d.fsys, ctl: d.ctl, name: c.Name}, d.fsys.done("lookup", ControlDir, d.key(name), nil)
}

// ReadDirAll implements bfs.HandleReadDirAller.
func (d *unsentDir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	f := d.fsys
	var out []fuse.Dirent
	for name, c := range d.children() {
		t := fuse.DT_File
		if c == nil {
			t = fuse.DT_Dir
		}
		out = append(out, fuse.Dirent{Inode: f.names.inode(ControlDir, d.key(name)), Type: t, Name: name})
	}
	slices.SortFunc(out, func(a, b fuse.Dirent) int { return strings.Compare(a.Name, b.Name) })
	up := f.names.inode(ControlDir, "") // the control folder holds the top one
	if d.dir != "" {
		up = f.names.inode(ControlDir, path.Join(controlUnsent, path.Dir(d.dir)))
	}
	dots := []fuse.Dirent{{Inode: f.names.inode(ControlDir, d.key("")), Type: fuse.DT_Dir, Name: "."}, {Inode: up, Type: fuse.DT_Dir, Name: ".."}}
	return append(dots, out...), f.done("readdir", ControlDir, d.key(""), nil)
}

// Remove implements bfs.NodeRemover: rm of a copy drops it; folders
// go with their last copy.
func (d *unsentDir) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	c, ok := d.children()[req.Name]
	switch {
	case !ok:
		return d.fsys.done("remove", ControlDir, d.key(req.Name), syscall.ENOENT)
	case c == nil && req.Dir:
		return d.fsys.done("rmdir", ControlDir, d.key(req.Name), syscall.ENOTEMPTY)
	case c == nil:
		return d.fsys.done("remove", ControlDir, d.key(req.Name), syscall.EISDIR)
	case req.Dir:
		return d.fsys.done("rmdir", ControlDir, d.key(req.Name), syscall.ENOTDIR)
	}
	return d.fsys.done("remove", ControlDir, d.key(req.Name), d.ctl.DropUnsent(c.Name))
}
