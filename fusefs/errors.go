package fusefs

import (
	"errors"
	"syscall"

	"github.com/rs/zerolog"
)

// Errors a Store returns for what io/fs has no sentinel for. A Store
// wraps them (%w) with its own words; toErrno, at the FUSE edge, turns
// them into errnos.
var (
	// ErrUnavailable: the peer cannot be reached, or what the Store
	// holds cannot go to it (EIO). It must never read as "no such file".
	ErrUnavailable = errors.New("peer unavailable")
	// ErrConflict: another writer replaced the file since this one
	// opened it; this writer's data was kept elsewhere (ESTALE).
	ErrConflict = errors.New("changed by another writer")
	// ErrIsDir: the operation needs a file (EISDIR).
	ErrIsDir = errors.New("is a directory")
	// ErrNotEmpty: the directory is not empty (ENOTEMPTY).
	ErrNotEmpty = errors.New("directory not empty")
	// ErrBadHandle: no such open file (EBADF).
	ErrBadHandle = errors.New("no such open file")
	// ErrNotPermitted: the peer does not do this at all, for anyone
	// (EPERM): a symbolic link on a peer that predates them, chown on
	// a peer that keeps no owners, a device node on one that allows
	// none.
	ErrNotPermitted = errors.New("operation not permitted")
)

// Errno returns the errno a program gets for err, as the FUSE edge maps
// it (toErrno), without logging: for tests of a Store, and reports.
func Errno(err error) syscall.Errno {
	nop := zerolog.Nop()
	return syscall.Errno(toErrno(&nop, err))
}
