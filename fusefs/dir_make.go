package fusefs

// The requests that make entries other than files and directories:
// symbolic links, hard links and special files.

import (
	"context"
	"io/fs"
	"os"
	"syscall"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// maxTarget is the longest symbolic link target, in bytes (PATH_MAX
// less its NUL); the kernel refuses longer ones before asking.
const maxTarget = 4095

// Symlink implements bfs.NodeSymlinker: the Store keeps the target as it
// is; the kernel here resolves it.
func (d *dir) Symlink(ctx context.Context, req *fuse.SymlinkRequest) (bfs.Node, error) {
	f := d.fsys
	path := child(d.key().path, req.NewName)
	err := checkNames(req.NewName)
	switch {
	case err != nil:
	case len(req.Target) > maxTarget:
		err = syscall.ENAMETOOLONG
	case f.readOnly:
		err = syscall.EROFS
	}
	if err != nil {
		return nil, f.done("symlink", d.peer, path, err)
	}
	info, err := f.store.Symlink(WithCaller(ctx, callerOf(req.Header)), d.peer, path, req.Target)
	if err != nil {
		return nil, f.done("symlink", d.peer, path, err)
	}
	return d.made(path, info).self, f.done("symlink", d.peer, path, nil)
}

// made returns the node of path, just made in d as info says.
func (d *dir) made(path string, info fs.FileInfo) *node {
	f := d.fsys
	f.names.removed(nodeKey{d.peer, path}) // a stale entry of that name, if any
	f.dirChanged(d, false)
	return f.nodeOf(d.peer, path, info)
}

// Link implements bfs.NodeLinker: a hard link within one peer's folder
// (EXDEV to another, as between two filesystems). The new name shows the
// old one's inode number; the kernel has an inode for each name, so the
// old one's attributes (its link count) are dropped at once.
func (d *dir) Link(ctx context.Context, req *fuse.LinkRequest, old bfs.Node) (bfs.Node, error) {
	f := d.fsys
	path := child(d.key().path, req.NewName)
	var on *node
	err := checkNames(req.NewName)
	if err == nil {
		switch o := old.(type) {
		case *file:
			on = o.node
		case *symlink:
			on = o.node
		case *special:
			on = o.node
		case *dir:
			err = syscall.EPERM // link(2) of a directory
		default:
			err = syscall.EXDEV // the root, or the control folder
		}
	}
	switch {
	case err != nil:
	case on.peer != d.peer:
		err = syscall.EXDEV
	case f.readOnly:
		err = syscall.EROFS
	}
	if err != nil {
		return nil, f.done("link", d.peer, path, err)
	}
	info, err := f.store.Link(WithCaller(ctx, callerOf(req.Header)), d.peer, on.key().path, path)
	if err != nil {
		return nil, f.done("link", d.peer, path, err)
	}
	// The old name learns its peer inode first: the new one then gets
	// its number. Every other name (the old one too) has a link more.
	on.learn(info)
	n := d.made(path, info)
	if st := StatOf(info); st != nil {
		f.siblingsChanged(d.peer, st.Ino, n)
	}
	return n.self, f.done("link", d.peer, path, nil)
}

// Mknod implements bfs.NodeMknoder: FIFOs, sockets and devices (which
// the peer may refuse: EPERM), and a regular file (mknod S_IFREG), which
// is created empty.
func (d *dir) Mknod(ctx context.Context, req *fuse.MknodRequest) (bfs.Node, error) {
	f := d.fsys
	path := child(d.key().path, req.Name)
	err := checkNames(req.Name)
	if err == nil && f.readOnly {
		err = syscall.EROFS
	}
	if err != nil {
		return nil, f.done("mknod", d.peer, path, err)
	}
	ctx = WithCaller(ctx, callerOf(req.Header))
	mode := req.Mode & (typeBits | modeBits)
	var info fs.FileInfo
	switch mode.Type() {
	case 0:
		info, err = d.createEmpty(ctx, path, mode)
	case fs.ModeNamedPipe, fs.ModeSocket, fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		major, minor := decodeDev(req.Rdev)
		info, err = f.store.Mknod(ctx, d.peer, path, mode, major, minor)
	default:
		err = syscall.EINVAL
	}
	if err != nil {
		return nil, f.done("mknod", d.peer, path, err)
	}
	return d.made(path, info).self, f.done("mknod", d.peer, path, nil)
}

// createEmpty creates an empty regular file at path and stores it.
func (d *dir) createEmpty(ctx context.Context, path string, mode fs.FileMode) (fs.FileInfo, error) {
	f := d.fsys
	fh, _, err := f.store.Open(ctx, d.peer, path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode&modeBits)
	if err != nil {
		return nil, err
	}
	err = f.store.Flush(uninterruptible(ctx), fh)
	if rerr := f.store.Release(fh); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	return f.store.Stat(ctx, d.peer, path)
}
