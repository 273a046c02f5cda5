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
// Its fields are set by newFilesys (kernel and killPriv by Mount, before
// serving) and read-only after.
type filesys struct {
	store        Store
	kernel       kernelCache // the request server's invalidations; nil in tests without a kernel
	log          zerolog.Logger
	attrTimeout  time.Duration
	entryTimeout time.Duration
	readOnly     bool
	// killPriv: the kernel took fusedev.Config.KillPriv, so the mount
	// clears setuid and setgid bits where writes, truncations and chowns
	// must (killSuidgid), and the kernel asks for security.capability
	// once per file rather than before every write.
	killPriv bool
	uid, gid uint32
	root     *root
	control  *controlDir // the .peerfs folder; nil unless the Store is a Controller
	names    *nameTable  // has its own lock
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

// typeBits are the bits of an fs.FileMode that say what kind of entry it
// is; modeBits its permissions, setuid, setgid and sticky bits.
const (
	typeBits = fs.ModeDir | fs.ModeSymlink | fs.ModeNamedPipe | fs.ModeSocket | fs.ModeDevice | fs.ModeCharDevice
	modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
)

// kindOf returns the kind of entry info is: its mode's type bits.
func kindOf(info fs.FileInfo) fs.FileMode { return info.Mode() & typeBits }

// groupOf returns the group the mount shows as info's (fillAttr).
func (f *filesys) groupOf(info fs.FileInfo) uint32 {
	if st := StatOf(info); st != nil && st.Owners {
		return st.Gid
	}
	return f.gid
}

// fillAttr converts a Store entry to FUSE attributes. What the Store does
// not know (no Stat) is made up as for a plain file tree: the mounting
// user as owner, one link (a directory two), the modification time for
// the other times.
func (f *filesys) fillAttr(a *fuse.Attr, ino uint64, info fs.FileInfo) {
	a.Valid = f.attrTimeout
	a.Inode = ino
	a.Size = uint64(max(info.Size(), 0))
	a.Blocks = (a.Size + 511) / 512
	a.Mtime = info.ModTime()
	a.Atime, a.Ctime = a.Mtime, a.Mtime
	a.Mode = info.Mode() & (typeBits | modeBits)
	a.Nlink = 1
	if a.Mode.IsDir() {
		a.Nlink = 2
	}
	a.Uid, a.Gid = f.uid, f.groupOf(info)
	a.BlockSize = blockSize
	st := StatOf(info)
	if st == nil {
		return
	}
	if st.Nlink > 0 {
		a.Nlink = st.Nlink
	}
	if st.Owners {
		a.Uid = st.Uid
	}
	if !st.Atime.IsZero() {
		a.Atime = st.Atime
	}
	if !st.Ctime.IsZero() {
		a.Ctime = st.Ctime
	}
	if st.Blocks >= 0 {
		a.Blocks = uint64(st.Blocks)
	}
	if a.Mode&fs.ModeDevice != 0 {
		a.Rdev = encodeDev(st.Major, st.Minor)
	}
}

// encodeDev and decodeDev convert a device's numbers to and from the
// 32-bit form of FUSE's rdev (the kernel's new_encode_dev).
func encodeDev(major, minor uint32) uint32 {
	return minor&0xff | (major&0xfff)<<8 | (minor&^0xff)<<12
}

func decodeDev(dev uint32) (major, minor uint32) {
	return (dev & 0xfff00) >> 8, dev&0xff | (dev>>12)&0xfff00
}

// blockSize is the preferred I/O size reported in st_blksize; tools like
// cp use it as their buffer size, and bigger requests suit a network.
const blockSize = 128 << 10

// nodeFor returns the node for (peer, path), creating it if needed, and
// primes it with info. The same name yields the same node for as long as
// the kernel holds it, unless the entry changed kind.
func (f *filesys) nodeFor(peer, path string, info fs.FileInfo) bfs.Node {
	return f.nodeOf(peer, path, info).self
}

// nodeOf is nodeFor, returning the node itself.
func (f *filesys) nodeOf(peer, path string, info fs.FileInfo) *node {
	kind := kindOf(info)
	if path == "" {
		kind = fs.ModeDir
	}
	var pino uint64
	if st := StatOf(info); st != nil {
		pino = st.Ino
	}
	n := f.names.node(nodeKey{peer, path}, kind, pino, func(ino uint64) *node {
		n := &node{fsys: f, peer: peer, path: path, kind: kind, ino: ino, peerIno: pino}
		switch kind {
		case fs.ModeDir:
			n.self = &dir{node: n}
		case 0:
			n.self = &file{node: n}
		case fs.ModeSymlink:
			n.self = &symlink{node: n}
		default:
			n.self = &special{node: n}
		}
		return n
	})
	n.prime(info)
	n.learn(info) // a node the kernel holds: its peer inode may be new
	return n
}

// siblingsChanged drops what the mount and the kernel cache of the other
// names of peer inode pino (its hard links, but n), after a change to
// the entry through n: the kernel keeps an inode per name here, and
// shares no attributes between them. The invalidations are sent at once,
// from the request that made the change, so that the program that made
// it sees them (attributes only: the kernel waits on nothing for them).
func (f *filesys) siblingsChanged(peer string, pino uint64, n *node) {
	if pino == 0 {
		return
	}
	for _, s := range f.names.siblings(peer, pino, n) {
		s.forgetAttrs()
		f.names.dropListing(s.key())
		if f.kernel != nil {
			if err := f.kernel.InvalidateNodeAttr(s.self); err != nil {
				f.log.Debug().Err(err).Str("peer", peer).Str("path", s.key().path).Msg("invalidate the attributes of a hard link")
			}
		}
	}
}

// dirChanged drops what the mount caches of directory d's attributes after
// an entry was made or removed in it (its times and link count changed),
// and the kernel's with sync (the kernel drops them itself when the
// request that changed it was its own: create, mkdir, unlink...; not when
// the change reached the peer later, as a created file's upload).
func (f *filesys) dirChanged(d *dir, sync bool) {
	d.unprime()
	f.names.dropListing(d.key())
	if sync && f.kernel != nil {
		if err := f.kernel.InvalidateNodeAttr(d.self); err != nil {
			f.log.Debug().Err(err).Str("peer", d.peer).Str("path", d.key().path).Msg("invalidate the attributes of a directory")
		}
	}
}
