package fusefs

import (
	"context"
	"io/fs"
	"time"
)

// Store is everything the filesystem needs from the network side. The
// mount's root lists Peers(); every other path is (peer, path) where path is
// slash-separated and relative to that peer's export ("" is its root).
//
// Store uses only standard types and the few of this file so that its
// implementation need not import bazil. Errors should satisfy errors.Is
// against the io/fs sentinels or this package's (errors.go), or carry an
// errno (a syscall.Errno in the chain, or a value with an Errno()
// syscall.Errno method); errno.go maps them at the FUSE edge.
//
// Entries: a FileInfo's Mode carries the entry's type (fs.ModeDir,
// fs.ModeSymlink, fs.ModeNamedPipe, fs.ModeSocket, fs.ModeDevice with
// fs.ModeCharDevice for a character device) and its 07777 bits
// (fs.ModePerm, fs.ModeSetuid, fs.ModeSetgid, fs.ModeSticky); its Sys()
// may return a *Stat with what fs.FileInfo has no method for (nil: the
// Store knows nothing more, and the mount makes up the rest as for a
// plain file tree). Modes given to the Store carry the same bits.
//
// Requests that create an entry (Open with os.O_CREATE, Mkdir, Symlink,
// Mknod, Link) run with the calling process in their context: CallerOf.
//
// Open returns a handle number; the handle methods (ReadAt ... Release)
// take it. A Store must be safe for concurrent use.
type Store interface {
	// Peers returns the names of the connected peers, sorted.
	Peers() []string
	// Watch registers fn, called (from any goroutine, never under a
	// Store lock) when the kernel's view must be refreshed: peer == ""
	// means the peer list changed; dir == "" with a peer means anything
	// under that peer may have changed; otherwise the listing of dir did.
	Watch(fn func(peer, dir string))

	// Stat returns one entry's attributes (including unflushed local
	// writes), without following a symbolic link.
	Stat(ctx context.Context, peer, path string) (fs.FileInfo, error)
	// List returns a directory's entries with attributes, in one round trip.
	List(ctx context.Context, peer, dir string) ([]fs.FileInfo, error)
	// Mkdir creates a directory with mode's permission bits, exactly.
	Mkdir(ctx context.Context, peer, path string, mode fs.FileMode) (fs.FileInfo, error)
	// Remove deletes anything but a directory.
	Remove(ctx context.Context, peer, path string) error
	// Rmdir deletes an empty directory.
	Rmdir(ctx context.Context, peer, path string) error
	// Rename renames within one peer, atomically replacing a target file.
	Rename(ctx context.Context, peer, from, to string) error
	// Truncate sets a file's size (applied to an open dirty copy too).
	Truncate(ctx context.Context, peer, path string, size int64) (fs.FileInfo, error)
	// Chmod sets the permission bits, setuid, setgid and sticky included.
	Chmod(ctx context.Context, peer, path string, mode fs.FileMode) (fs.FileInfo, error)
	// Chown sets the owner and the group; -1 leaves one as it is. The
	// mount calls it only for entries whose Stat has Owners; of a
	// symbolic link it changes the link's own.
	Chown(ctx context.Context, peer, path string, uid, gid int) (fs.FileInfo, error)
	// Chtimes sets the access and modification times as atime and mtime
	// say; of a symbolic link it changes the link's own.
	Chtimes(ctx context.Context, peer, path string, atime, mtime TimeChange) (fs.FileInfo, error)
	// Symlink creates a symbolic link at path holding target, which is
	// data: never resolved by the Store.
	Symlink(ctx context.Context, peer, path, target string) (fs.FileInfo, error)
	// Readlink returns the target of the symbolic link at path.
	Readlink(ctx context.Context, peer, path string) (string, error)
	// Link makes newPath another name of the entry at oldPath (a hard
	// link; a symbolic link is linked itself) and returns the entry's
	// attributes.
	Link(ctx context.Context, peer, oldPath, newPath string) (fs.FileInfo, error)
	// Mknod creates a FIFO (fs.ModeNamedPipe), a socket (fs.ModeSocket)
	// or a device (fs.ModeDevice, with fs.ModeCharDevice for a character
	// device, numbered major, minor) with mode's permission bits.
	Mknod(ctx context.Context, peer, path string, mode fs.FileMode, major, minor uint32) (fs.FileInfo, error)
	// Statfs reports the peer's space in bytes.
	Statfs(ctx context.Context, peer string) (total, free, avail uint64, err error)
	// Sync runs the SYNC write-token round: it returns once every dirty
	// file of this client is stored on its peer.
	Sync(ctx context.Context) error

	// Open opens a file. flags are os.O_* bits (O_WRONLY, O_RDWR, O_CREAT,
	// O_EXCL, O_TRUNC, O_APPEND); mode applies when O_CREAT creates it.
	Open(ctx context.Context, peer, path string, flags int, mode fs.FileMode) (fh uint64, info fs.FileInfo, err error)
	// ReadAt reads from an open file; a short count means end of file.
	ReadAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error)
	// WriteAt writes to an open file's local copy.
	WriteAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error)
	// Flush uploads the file if it is dirty and reports the upload's error.
	Flush(ctx context.Context, fh uint64) error
	// Fsync makes the file durable on its peer through the SYNC round.
	Fsync(ctx context.Context, fh uint64) error
	// StatHandle returns the attributes of the file open as fh, whose
	// name may be gone: a file unlinked while open stays readable and
	// writable through its descriptors, as on a local disk.
	StatHandle(ctx context.Context, fh uint64) (fs.FileInfo, error)
	// TruncateHandle sets the size of the file open for writing as fh
	// (ftruncate), its name gone or not.
	TruncateHandle(ctx context.Context, fh uint64, size int64) (fs.FileInfo, error)
	// Release closes the handle.
	Release(fh uint64) error
}

// EntryWatcher is an optional interface of a Store that hears of other
// writers' changes (a peer's reports): the mount then has the kernel drop
// what it caches of each name changed as soon as the Store hears of it,
// rather than when the attribute timeout ends, and only of that name.
type EntryWatcher interface {
	// WatchEntries registers fn, called (from any goroutine, never
	// under a Store lock) for each change another writer made.
	WatchEntries(fn func(EntryChange))
}

// StoredWatcher is an optional interface of a Store whose files show
// this machine's times while they have local changes (Stat.Local): it
// tells the mount when it stored such a file, also by other means than
// the file's own flush or fsync (another file's SYNC turn, a retry after
// a failure), and the mount has the kernel drop what it was shown of the
// local copy's attributes, which give way to the peer's.
type StoredWatcher interface {
	// WatchStored registers fn, called (from any goroutine, never
	// under a Store lock) with a file's peer and path once stored.
	WatchStored(fn func(peer, path string))
}

// EntryChange is a change another writer made to one name, as an
// EntryWatcher reports it.
type EntryChange struct {
	Peer, Path string
	// Gone reports that the name no longer exists; else Type is what
	// it is now (a mode's type bits, 0 for a regular file).
	Gone bool
	Type fs.FileMode
	// Ino is its inode number on its peer now, 0 if unknown or gone.
	Ino uint64
	// Replaced reports that the name was made, or now holds another
	// file or directory than the Store last said (for a directory the
	// Store does not hear of changes in: one whose entries may have
	// changed): the kernel's entry for it goes. Otherwise its
	// attributes or content changed, or the Store knew nothing of it,
	// and the mount goes by what the kernel may hold of it.
	Replaced bool
}

// Stat is what a Store knows of an entry beyond fs.FileInfo, returned
// by the FileInfo's Sys(). A zero field is unknown (Blocks: negative),
// and the mount then shows what it showed before peers had them: the
// mounting user as owner, one link (a directory two), the modification
// time for the other times, blocks counted from the size.
type Stat struct {
	// Ino is the entry's inode number on its peer: hard links share it.
	// The mount shows its own numbers, one per (peer, Ino).
	Ino   uint64
	Nlink uint32 // link count (a directory: 2 + its subdirectories)
	// Owners says that Uid and Gid are the entry's real owners, which
	// the peer keeps and lets the mount change (Chown); otherwise the
	// mount shows every entry as its own user's.
	Owners       bool
	Uid, Gid     uint32
	Atime, Ctime time.Time // access time; change time, the peer's own
	Blocks       int64     // 512-byte blocks allocated; negative if unknown
	Major, Minor uint32    // a device's numbers
	// Local says these are the attributes of a copy changed here and not
	// stored on the peer yet, whose times are this machine's: they give
	// way to the peer's once it is, so the mount has the kernel drop them
	// after the flush or fsync that stores it.
	Local bool
}

// StatOf returns info's Stat, or nil if its Store gave none.
func StatOf(info fs.FileInfo) *Stat {
	if info == nil {
		return nil
	}
	st, _ := info.Sys().(*Stat)
	return st
}

// TimeChange is what Chtimes does to one of an entry's times: nothing,
// set it to T, or (Now) set it to the current time of the peer's clock,
// as utimensat's UTIME_NOW.
type TimeChange struct {
	Set bool
	Now bool // with Set: the peer's clock, not T
	T   time.Time
}

// Caller is the process a request came from, as the kernel names it.
type Caller struct {
	Uid, Gid uint32
}

type callerKey struct{}

// CallerOf returns the process whose request ctx belongs to, for a Store
// that gives new entries the creating process's owner; ok is false
// outside such a request.
func CallerOf(ctx context.Context) (c Caller, ok bool) {
	c, ok = ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// WithCaller returns ctx carrying c (CallerOf): the mount's requests to
// its Store, and tests of a Store.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}
