package fusefs

import (
	"context"
	"io/fs"
	"os"
	"syscall"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
)

var (
	_ bfs.Node                     = (*dir)(nil)
	_ bfs.NodeGetattrer            = (*dir)(nil)
	_ bfs.NodeSetattrer            = (*dir)(nil)
	_ bfs.NodeForgetter            = (*dir)(nil)
	_ bfs.NodeRequestLookuper      = (*dir)(nil)
	_ bfs.HandleReadDirAller       = (*dir)(nil)
	_ fuseserve.NodeListedLookuper = (*dir)(nil)
	_ bfs.NodeMkdirer              = (*dir)(nil)
	_ bfs.NodeCreater              = (*dir)(nil)
	_ bfs.NodeRemover              = (*dir)(nil)
	_ bfs.NodeRenamer              = (*dir)(nil)
	_ bfs.NodeSymlinker            = (*dir)(nil)
	_ bfs.NodeLinker               = (*dir)(nil)
	_ bfs.NodeMknoder              = (*dir)(nil)
	_ bfs.NodeFsyncer              = (*dir)(nil)
)

// maxNameLen is the longest name of a directory entry, in bytes (NAME_MAX,
// and what Statfs reports). The kernel passes FUSE names up to 1024
// bytes; longer than this are refused with ENAMETOOLONG before anything
// is cached or sent, as a local filesystem refuses them (a peer would
// refuse them only at the upload, after close).
const maxNameLen = 255

// checkNames returns ENAMETOOLONG if a name is longer than maxNameLen.
func checkNames(names ...string) error {
	for _, n := range names {
		if len(n) > maxNameLen {
			return syscall.ENAMETOOLONG
		}
	}
	return nil
}

// dir is a directory inside a peer's export (path "" is the peer folder).
// It is its own handle: the request server calls ReadDirAll on it after
// opendir.
type dir struct {
	*node
}

// Lookup implements bfs.NodeRequestLookuper. A listing younger than
// the entry timeout answers without a Store call.
func (d *dir) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (bfs.Node, error) {
	f := d.fsys
	k := d.key()
	path := child(k.path, req.Name)
	if err := checkNames(req.Name); err != nil {
		return nil, f.done("lookup", d.peer, path, err)
	}
	info, found, listed := f.names.getListing(k, req.Name)
	if listed && !found {
		return nil, f.done("lookup", d.peer, path, syscall.ENOENT)
	}
	if !listed {
		var err error
		if info, err = f.store.Stat(ctx, d.peer, path); err != nil {
			return nil, f.done("lookup", d.peer, path, err)
		}
	}
	resp.EntryValid = f.entryTimeout
	return f.nodeFor(d.peer, path, info), f.done("lookup", d.peer, path, nil)
}

// LookupListed implements fuseserve.NodeListedLookuper: the lookup of
// a name of the listing the kernel is reading (READDIRPLUS), answered
// from that listing as Lookup would; false for a name it no longer holds.
func (d *dir) LookupListed(ctx context.Context, name string, resp *fuse.LookupResponse) (bfs.Node, bool) {
	f := d.fsys
	k := d.key()
	if checkNames(name) != nil {
		return nil, false
	}
	info, found, listed := f.names.getListing(k, name)
	if !listed || !found {
		return nil, false
	}
	resp.EntryValid = f.entryTimeout
	return f.nodeFor(d.peer, child(k.path, name), info), true
}

// ReadDirAll implements bfs.HandleReadDirAller with one List call,
// whose result then answers lookups (see Lookup). The listing has . and
// .., as a local directory's.
func (d *dir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	f := d.fsys
	k := d.key()
	gen := f.names.listGeneration()
	infos, err := f.store.List(ctx, d.peer, k.path)
	if err != nil {
		return nil, f.done("readdir", d.peer, k.path, err)
	}
	f.names.putListing(k, gen, infos)
	ents := make([]fuse.Dirent, 0, len(infos)+2)
	d.mu.Lock()
	self := d.ino
	d.mu.Unlock()
	up := uint64(1) // a peer's folder is in the mount's root
	if k.path != "" {
		pk, _ := k.parent()
		up = f.names.inode(pk.peer, pk.path)
	}
	ents = append(ents, fuse.Dirent{Inode: self, Type: fuse.DT_Dir, Name: "."}, fuse.Dirent{Inode: up, Type: fuse.DT_Dir, Name: ".."})
	for _, info := range infos {
		var pino uint64
		if st := StatOf(info); st != nil {
			pino = st.Ino
		}
		name := info.Name()
		ents = append(ents, fuse.Dirent{Inode: f.names.inodeOf(d.peer, child(k.path, name), pino), Type: direntType(info.Mode()), Name: name})
	}
	return ents, f.done("readdir", d.peer, k.path, nil)
}

// direntType is the type of a directory entry of mode m.
func direntType(m fs.FileMode) fuse.DirentType {
	switch m.Type() {
	case fs.ModeDir:
		return fuse.DT_Dir
	case fs.ModeSymlink:
		return fuse.DT_Link
	case fs.ModeNamedPipe:
		return fuse.DT_FIFO
	case fs.ModeSocket:
		return fuse.DT_Socket
	case fs.ModeDevice | fs.ModeCharDevice:
		return fuse.DT_Char
	case fs.ModeDevice:
		return fuse.DT_Block
	}
	return fuse.DT_File
}

// Mkdir implements bfs.NodeMkdirer. The mode arrives exactly (the kernel
// has applied the umask: no FUSE_DONT_MASK), the sticky bit included.
func (d *dir) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (bfs.Node, error) {
	f := d.fsys
	path := child(d.key().path, req.Name)
	if err := checkNames(req.Name); err != nil {
		return nil, f.done("mkdir", d.peer, path, err)
	}
	if f.readOnly {
		return nil, f.done("mkdir", d.peer, path, syscall.EROFS)
	}
	info, err := f.store.Mkdir(WithCaller(ctx, callerOf(req.Header)), d.peer, path, req.Mode&modeBits)
	if err != nil {
		return nil, f.done("mkdir", d.peer, path, err)
	}
	f.names.removed(nodeKey{d.peer, path}) // a stale entry of that name, if any
	f.dirChanged(d, false)
	return f.nodeFor(d.peer, path, info), f.done("mkdir", d.peer, path, nil)
}

// callerOf is the process that sent a request.
func callerOf(h fuse.Header) Caller { return Caller{Uid: h.Uid, Gid: h.Gid} }

// Create implements bfs.NodeCreater: Open with O_CREAT, returning the
// new file's node and an open handle.
func (d *dir) Create(ctx context.Context, req *fuse.CreateRequest, resp *fuse.CreateResponse) (bfs.Node, bfs.Handle, error) {
	f := d.fsys
	path := child(d.key().path, req.Name)
	if err := checkNames(req.Name); err != nil {
		return nil, nil, f.done("create", d.peer, path, err)
	}
	if f.readOnly {
		return nil, nil, f.done("create", d.peer, path, syscall.EROFS)
	}
	flags := openFlags(req.Flags) | os.O_CREATE
	fh, info, err := f.store.Open(WithCaller(ctx, callerOf(req.Header)), d.peer, path, flags, req.Mode&modeBits)
	if err != nil {
		return nil, nil, f.done("create", d.peer, path, err)
	}
	f.names.dropListing(nodeKey{d.peer, path})
	f.dirChanged(d, false)
	n := f.nodeFor(d.peer, path, info)
	fl, ok := n.(*file)
	if !ok {
		// The Store created something that is not a file.
		d.releaseQuietly(fh, path)
		return nil, nil, f.done("create", d.peer, path, syscall.EISDIR)
	}
	resp.EntryValid = f.entryTimeout
	return fl, fl.newHandle(fh, flags, true), f.done("create", d.peer, path, nil)
}

func (d *dir) releaseQuietly(fh uint64, path string) {
	if err := d.fsys.store.Release(fh); err != nil {
		d.fsys.log.Warn().Err(err).Str("peer", d.peer).Str("path", path).Msg("release")
	}
}

// Remove implements bfs.NodeRemover: unlink or rmdir by req.Dir. The
// other names of an unlinked entry (hard links) lose a link.
func (d *dir) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	f := d.fsys
	path := child(d.key().path, req.Name)
	k := nodeKey{d.peer, path}
	op := "unlink"
	if req.Dir {
		op = "rmdir"
	}
	if err := checkNames(req.Name); err != nil {
		return f.done(op, d.peer, path, err)
	}
	if f.readOnly {
		return f.done(op, d.peer, path, syscall.EROFS)
	}
	var err error
	if req.Dir {
		err = f.store.Rmdir(ctx, d.peer, path)
	} else {
		err = f.store.Remove(ctx, d.peer, path)
	}
	if err == nil {
		gone := f.names.lookupNode(k)
		f.names.removed(k)
		if gone != nil {
			f.siblingsChanged(d.peer, gone.peerInode(), gone)
		}
		f.dirChanged(d, false)
	}
	return f.done(op, d.peer, path, err)
}

// Rename implements bfs.NodeRenamer within one peer. Across peers it
// fails with EXDEV, so mv falls back to copy and delete; into the root
// with EACCES.
func (d *dir) Rename(ctx context.Context, req *fuse.RenameRequest, newDir bfs.Node) error {
	f := d.fsys
	from := nodeKey{d.peer, child(d.key().path, req.OldName)}
	if err := checkNames(req.OldName, req.NewName); err != nil {
		return f.done("rename", from.peer, from.path, err)
	}
	var err error
	switch nd := newDir.(type) {
	case *dir:
		to := nodeKey{nd.peer, child(nd.key().path, req.NewName)}
		switch {
		case f.readOnly:
			err = syscall.EROFS
		case to.peer != from.peer:
			err = syscall.EXDEV
		default:
			if err = f.store.Rename(ctx, from.peer, from.path, to.path); err == nil {
				moved := f.names.lookupNode(from)
				f.names.renamed(from, to)
				if moved != nil {
					f.siblingsChanged(from.peer, moved.peerInode(), moved) // their ctime
				}
				f.dirChanged(d, false)
				f.dirChanged(nd, false)
			}
		}
	case *root:
		err = syscall.EACCES
	default:
		err = syscall.EXDEV
	}
	return f.done("rename", from.peer, from.path, err)
}

// Fsync implements bfs.NodeFsyncer: fsync of a directory runs the
// Store's SYNC round.
func (d *dir) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	return d.fsys.done("fsyncdir", d.peer, d.key().path, d.fsys.store.Sync(uninterruptible(ctx)))
}
