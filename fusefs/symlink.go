package fusefs

import (
	"context"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

var (
	_ bfs.Node           = (*symlink)(nil)
	_ bfs.NodeGetattrer  = (*symlink)(nil)
	_ bfs.NodeSetattrer  = (*symlink)(nil)
	_ bfs.NodeForgetter  = (*symlink)(nil)
	_ bfs.NodeReadlinker = (*symlink)(nil)
)

// symlink is a symbolic link inside a peer's export. Its target is data,
// which the Store never resolves: the kernel of this machine follows it,
// as it does on NFS.
type symlink struct {
	*node
}

// Readlink implements bfs.NodeReadlinker.
func (l *symlink) Readlink(ctx context.Context, req *fuse.ReadlinkRequest) (string, error) {
	path := l.key().path
	target, err := l.fsys.store.Readlink(ctx, l.peer, path)
	return target, l.fsys.done("readlink", l.peer, path, err)
}
