package fusefs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"

	"bazil.org/fuse"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
	"github.com/rs/zerolog"
)

// errnoer is implemented by errors that carry their own errno.
type errnoer interface {
	Errno() syscall.Errno
}

// toErrno maps an error of a Store, a node or the request server to the
// errno the kernel gets (0 for nil); bazil itself does not unwrap. It is
// the only place that decides an errno: the nodes call it through
// filesys.done, the request server through its Options.Errno. Unexpected
// errors are logged here, once, and become EIO.
func toErrno(log *zerolog.Logger, err error) fuse.Errno {
	if err == nil {
		return 0
	}
	var (
		errno       syscall.Errno
		carry       errnoer
		ferr        fuse.Errno
		unsupported *fuseserve.UnsupportedError
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

	// The request server's own answers, as bazil's fs.Server gives them.
	case errors.Is(err, fuseserve.ErrStale):
		return fuse.Errno(syscall.ESTALE)
	case errors.Is(err, fuseserve.ErrNotImplemented):
		return fuse.Errno(syscall.ENOSYS) // the kernel stops asking
	case errors.Is(err, fuseserve.ErrNotInFlight):
		return fuse.Errno(syscall.EAGAIN) // the kernel sends the INTERRUPT again
	case errors.Is(err, fuseserve.ErrXattrTooLarge):
		return fuse.Errno(syscall.ERANGE)
	case errors.Is(err, fuseserve.ErrPanic):
		return fuse.Errno(syscall.EIO) // logged by the server, with the stack
	case errors.Is(err, fuseserve.ErrMalformed):
		log.Error().Err(err).Msg("malformed FUSE request; returning EIO")
		return fuse.Errno(syscall.EIO)
	case errors.As(err, &unsupported):
		switch unsupported.Op {
		case "create", "mkdir":
			// Not ENOSYS, which would make the kernel try mknod and open.
			return fuse.Errno(syscall.EPERM)
		case "getxattr", "listxattr", "setxattr", "removexattr":
			return fuse.Errno(syscall.ENOTSUP)
		}
		return fuse.Errno(syscall.EIO)

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
	case errors.Is(err, ErrNotPermitted):
		return fuse.Errno(syscall.EPERM)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		log.Warn().Err(err).Msg("store operation timed out; returning EIO")
		return fuse.Errno(syscall.EIO)
	default:
		log.Error().Err(err).Msg("unexpected store error; returning EIO")
		return fuse.Errno(syscall.EIO)
	}
}
