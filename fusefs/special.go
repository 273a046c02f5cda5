package fusefs

import (
	bfs "bazil.org/fuse/fs"
)

var (
	_ bfs.Node          = (*special)(nil)
	_ bfs.NodeGetattrer = (*special)(nil)
	_ bfs.NodeSetattrer = (*special)(nil)
	_ bfs.NodeForgetter = (*special)(nil)
)

// special is a FIFO, a UNIX socket or a device node inside a peer's
// export: attributes only. The kernel of this machine opens it as its
// own (a FIFO is a pipe here, a socket one bound here, a device this
// machine's), never through the mount.
type special struct {
	*node
}
