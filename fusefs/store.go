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
// Store uses only standard types so that its implementation need not import
// this package. Errors should satisfy errors.Is against the io/fs sentinels,
// or carry an errno (a syscall.Errno in the chain, or a value with an
// Errno() syscall.Errno method); errno.go maps them at the FUSE edge.
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

	// Stat returns one entry's attributes (including unflushed local writes).
	Stat(ctx context.Context, peer, path string) (fs.FileInfo, error)
	// List returns a directory's entries with attributes, in one round trip.
	List(ctx context.Context, peer, dir string) ([]fs.FileInfo, error)
	// Mkdir creates a directory.
	Mkdir(ctx context.Context, peer, path string, mode fs.FileMode) (fs.FileInfo, error)
	// Remove deletes a file.
	Remove(ctx context.Context, peer, path string) error
	// Rmdir deletes an empty directory.
	Rmdir(ctx context.Context, peer, path string) error
	// Rename renames within one peer, atomically replacing a target file.
	Rename(ctx context.Context, peer, from, to string) error
	// Truncate sets a file's size (applied to an open dirty copy too).
	Truncate(ctx context.Context, peer, path string, size int64) (fs.FileInfo, error)
	// Chmod sets permission bits.
	Chmod(ctx context.Context, peer, path string, mode fs.FileMode) (fs.FileInfo, error)
	// Chtimes sets the modification time.
	Chtimes(ctx context.Context, peer, path string, mtime time.Time) (fs.FileInfo, error)
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
	// Release closes the handle.
	Release(fh uint64) error
}
