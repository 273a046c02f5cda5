package fusefs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"

	"bazil.org/fuse"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// errnoer is implemented by errors that carry their own errno.
type errnoer interface {
	Errno() syscall.Errno
}

// toErrno maps a Store (or fusefs) error to the bare fuse.Errno that bazil
// sends to the kernel; bazil itself does not unwrap. It is the only place
// that decides an errno. Unexpected errors are logged here, once, and
// become EIO.
func toErrno(log *zerolog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var (
		errno syscall.Errno
		carry errnoer
		ferr  fuse.Errno
	)
	switch {
	case errors.Is(err, context.Canceled):
		// The kernel interrupted the request (or we are shutting down).
		return fuse.Errno(syscall.EINTR)
	case errors.As(err, &errno) && errno != 0:
		return fuse.Errno(errno)
	case errors.As(err, &carry) && carry.Errno() != 0:
		return fuse.Errno(carry.Errno())
	case errors.As(err, &ferr) && ferr != 0:
		return ferr
	case errors.Is(err, fs.ErrNotExist):
		return fuse.Errno(syscall.ENOENT)
	case errors.Is(err, fs.ErrExist):
		return fuse.Errno(syscall.EEXIST)
	case errors.Is(err, fs.ErrPermission):
		return fuse.Errno(syscall.EACCES)
	case errors.Is(err, fs.ErrInvalid):
		return fuse.Errno(syscall.EINVAL)
	case errors.Is(err, fs.ErrClosed):
		return fuse.Errno(syscall.EBADF)
	case errors.Is(err, errors.ErrUnsupported):
		return fuse.Errno(syscall.ENOTSUP)
	case errors.Is(err, ErrUnavailable):
		return fuse.Errno(syscall.EIO)
	case errors.Is(err, ErrConflict):
		return fuse.Errno(syscall.ESTALE)
	case errors.Is(err, ErrIsDir):
		return fuse.Errno(syscall.EISDIR)
	case errors.Is(err, ErrNotEmpty):
		return fuse.Errno(syscall.ENOTEMPTY)
	case errors.Is(err, ErrBadHandle):
		return fuse.Errno(syscall.EBADF)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		log.Warn().Err(err).Msg("store operation timed out; returning EIO")
		return fuse.Errno(syscall.EIO)
	default:
		log.Error().Err(err).Msg("unexpected store error; returning EIO")
		return fuse.Errno(syscall.EIO)
	}
}

// errnoName names an answered errno for Options.Observe: "ENOENT",
// "ENODATA", "ENOTEMPTY"... (bazil's ErrnoName knows a few names and
// gives the others' messages, which make poor metric labels).
func errnoName(e fuse.Errno) string {
	if n := unix.ErrnoName(syscall.Errno(e)); n != "" {
		return n
	}
	return e.ErrnoName()
}
