package fusefs

import (
	"context"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"
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

var (
	_ fusefs.NodeGetxattrer  = (*file)(nil)
	_ fusefs.NodeListxattrer = (*file)(nil)
)

// Getxattr implements fusefs.NodeGetxattrer: StateXattr, the only
// attribute there is.
func (fl *file) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	f := fl.fsys
	path := fl.key().path
	fs, ok := f.store.(FileStater)
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

// Listxattr implements fusefs.NodeListxattrer.
func (fl *file) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	if _, ok := fl.fsys.store.(FileStater); ok {
		resp.Append(StateXattr)
	}
	return fl.fsys.done("listxattr", fl.peer, fl.key().path, nil)
}
