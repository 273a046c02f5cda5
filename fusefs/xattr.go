package fusefs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// StateXattr is the extended attribute holding a file's durability, as
// reported by a Store that implements FileStater.
const StateXattr = "user.peerfs.state"

// FileStater is an optional interface of a Store: one that implements it
// exposes each file's durability as the extended attribute StateXattr
// (getfattr -n user.peerfs.state FILE).
type FileStater interface {
	// FileState describes how far the file's last local change has got:
	// "pending" (not yet uploaded), "uploading", or "stored" (on the
	// peer), optionally followed by details such as " round=7".
	FileState(peer, path string) (string, error)
}

// PeerXattr is the extended attribute of a peer's folder holding the
// peer's presence, as reported by a Store that implements PeerStater.
const PeerXattr = "user.peerfs.peer"

// PeerStater is an optional interface of a Store: one that implements it
// exposes each peer's presence as the extended attribute PeerXattr of
// its folder (getfattr -n user.peerfs.peer MOUNT/PEER).
type PeerStater interface {
	// PeerState describes the peer: "up", "down" or "unknown", then
	// details such as " since=<RFC 3339 time>".
	PeerState(peer string) (string, error)
}

// ourPrefix is the namespace of the attributes a peer folder serves (the
// two above); it stores no others.
const ourPrefix = "user.peerfs."

// ours reports whether the extended attribute name is in ourPrefix.
func ours(name string) bool { return strings.HasPrefix(name, ourPrefix) }

// errNoXattrs answers a get of any other attribute: ENOTSUP, "this
// filesystem keeps none", as a local filesystem without them says. Not
// ENODATA ("not set on this file"), which makes ls -l ask again for each
// entry (security.selinux and system.posix_acl_access: two requests per
// entry, ten times a warm ls -l's time), where ENOTSUP makes it stop
// asking for the whole filesystem.
var errNoXattrs = fmt.Errorf("fusefs: extended attributes other than %s*: %w", ourPrefix, errors.ErrUnsupported)

var (
	_ bfs.NodeGetxattrer  = (*file)(nil)
	_ bfs.NodeListxattrer = (*file)(nil)
	_ bfs.NodeGetxattrer  = (*dir)(nil)
	_ bfs.NodeListxattrer = (*dir)(nil)
)

// Getxattr implements bfs.NodeGetxattrer: StateXattr, the only
// attribute there is.
func (fl *file) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	f := fl.fsys
	path := fl.key().path
	fs, ok := f.store.(FileStater)
	if !ours(req.Name) {
		return f.done("getxattr", fl.peer, path, errNoXattrs)
	}
	if !ok || req.Name != StateXattr {
		return f.done("getxattr", fl.peer, path, fuse.ErrNoXattr)
	}
	state, err := fs.FileState(fl.peer, path)
	if err != nil {
		return f.done("getxattr", fl.peer, path, err)
	}
	resp.Xattr = []byte(state)
	return f.done("getxattr", fl.peer, path, nil)
}

// Listxattr implements bfs.NodeListxattrer: a file lists no attribute.
// StateXattr is answered when asked for by name, like the virtual
// attributes of other network filesystems (CephFS's ceph.*), and not
// listed: cp -a, rsync -X and tar --xattrs copy what listxattr names, and
// would stamp "stored" on every copy taken out of a peer folder (and
// rsync would find it changed at every round).
func (fl *file) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	return fl.fsys.done("listxattr", fl.peer, fl.key().path, nil)
}

// Getxattr implements bfs.NodeGetxattrer: PeerXattr, on a peer's
// folder only.
func (d *dir) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	f := d.fsys
	path := d.key().path
	ps, ok := f.store.(PeerStater)
	if !ours(req.Name) {
		return f.done("getxattr", d.peer, path, errNoXattrs)
	}
	if !ok || path != "" || req.Name != PeerXattr {
		return f.done("getxattr", d.peer, path, fuse.ErrNoXattr)
	}
	state, err := ps.PeerState(d.peer)
	if err != nil {
		return f.done("getxattr", d.peer, path, err)
	}
	resp.Xattr = []byte(state)
	return f.done("getxattr", d.peer, path, nil)
}

// Listxattr implements bfs.NodeListxattrer: a directory lists no
// attribute; PeerXattr is answered by name only, as StateXattr is (see
// file.Listxattr).
func (d *dir) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	return d.fsys.done("listxattr", d.peer, d.key().path, nil)
}
