package fusefs

import (
	"context"
	"io/fs"
	"os"
	"strings"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/rs/zerolog"
)

var (
	_ bfs.FS          = (*filesys)(nil)
	_ bfs.FSStatfser  = (*filesys)(nil)
	_ bfs.FSDestroyer = (*filesys)(nil)
)

// filesys is the bazil FS: the Store, configuration, and the name table.
// Its fields are set by newFilesys and read-only after.
type filesys struct {
	store        Store
	log          zerolog.Logger
	attrTimeout  time.Duration
	entryTimeout time.Duration
	readOnly     bool
	uid, gid     uint32
	root         *root
	control      *controlDir // the .peerfs folder; nil unless the Store is a Controller
	names        *nameTable  // has its own lock
}

func newFilesys(store Store, opts Options, log zerolog.Logger) *filesys {
	opts.setDefaults()
	f := &filesys{
		store:        store,
		log:          log,
		attrTimeout:  opts.AttrTimeout,
		entryTimeout: opts.EntryTimeout,
		readOnly:     opts.ReadOnly,
		uid:          uint32(os.Getuid()),
		gid:          uint32(os.Getgid()),
		names:        newNameTable(opts.EntryTimeout),
	}
	f.root = &root{fsys: f, mtime: time.Now()}
	f.control = newControlDir(f)
	return f
}

// Root implements bfs.FS.
func (f *filesys) Root() (bfs.Node, error) { return f.root, nil }

// Destroy implements bfs.FSDestroyer.
func (f *filesys) Destroy() { f.log.Debug().Str("op", "destroy").Msg("fuse op") }

// Statfs implements bfs.FSStatfser: the sum over all peers, for the
// root and the control folder (a peer's folder and what is in it answer
// for their peer: node.Statfs). A peer that fails is left out.
func (f *filesys) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	return f.statfs(ctx, f.store.Peers(), false, resp)
}

// statfs fills resp with the space of peers; strict makes a peer's
// failure the error.
func (f *filesys) statfs(ctx context.Context, peers []string, strict bool, resp *fuse.StatfsResponse) error {
	var total, free, avail uint64
	var err error
	for _, p := range peers {
		t, fr, av, perr := f.store.Statfs(ctx, p)
		if perr != nil {
			if strict {
				err = perr
			}
			f.log.Debug().Str("peer", p).Err(perr).Msg("statfs of one peer")
			continue
		}
		total, free, avail = total+t, free+fr, avail+av
	}
	const bsize = 4096
	resp.Bsize, resp.Frsize = bsize, bsize
	resp.Blocks, resp.Bfree, resp.Bavail = total/bsize, free/bsize, avail/bsize
	resp.Namelen = maxNameLen
	return f.done("statfs", strings.Join(peers, ","), "", err)
}

// done logs a finished operation at debug level and maps its error.
func (f *filesys) done(op, peer, path string, err error) error {
	errno := toErrno(&f.log, err)
	ev := f.log.Debug()
	if ev.Enabled() {
		ev = ev.Str("op", op).Str("peer", peer).Str("path", path)
		if err != nil {
			ev = ev.AnErr("error", err).Stringer("errno", errno)
		}
		ev.Msg("fuse op")
	}
	if err == nil {
		return nil
	}
	return errno
}

// errno maps an error for the request server (fuseserve.Options.Errno).
func (f *filesys) errno(err error) fuse.Errno { return toErrno(&f.log, err) }

// fillAttr converts a Store entry to FUSE attributes.
func (f *filesys) fillAttr(a *fuse.Attr, ino uint64, isDir bool, info fs.FileInfo) {
	a.Valid = f.attrTimeout
	a.Inode = ino
	size := info.Size()
	if size < 0 {
		size = 0
	}
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512
	a.Mtime = info.ModTime()
	a.Atime = a.Mtime
	a.Ctime = a.Mtime
	a.Mode = info.Mode() & os.ModePerm
	a.Nlink = 1
	if isDir {
		a.Mode |= os.ModeDir
		a.Nlink = 2
	}
	a.Uid, a.Gid = f.uid, f.gid
	a.BlockSize = blockSize
}

// blockSize is the preferred I/O size reported in st_blksize; tools like
// cp use it as their buffer size, and bigger requests suit a network.
const blockSize = 128 << 10

// nodeFor returns the node for (peer, path), creating it if needed, and
// primes it with info. The same name yields the same node for as long as
// the kernel holds it, unless the entry changed kind.
func (f *filesys) nodeFor(peer, path string, info fs.FileInfo) bfs.Node {
	isDir := path == "" || info.IsDir()
	n := f.names.node(nodeKey{peer, path}, isDir, func(ino uint64) *node {
		n := &node{fsys: f, peer: peer, path: path, isDir: isDir, ino: ino}
		if isDir {
			n.self = &dir{node: n}
		} else {
			n.self = &file{node: n}
		}
		return n
	})
	n.prime(info)
	return n.self
}
