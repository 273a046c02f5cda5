package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"bazil.org/fuse"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
	"github.com/rs/zerolog"
)

func TestToErrno(t *testing.T) {
	log := zerolog.Nop()
	for _, tc := range []struct {
		err  error
		want fuse.Errno
	}{
		{nil, 0},
		{context.Canceled, fuse.Errno(syscall.EINTR)},
		{fmt.Errorf("get: %w", context.Canceled), fuse.Errno(syscall.EINTR)},
		{syscall.ENOSPC, fuse.Errno(syscall.ENOSPC)},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.ENOTDIR}, fuse.Errno(syscall.ENOTDIR)},
		{fmt.Errorf("peer: %w", carrier{syscall.EROFS}), fuse.Errno(syscall.EROFS)},
		{fuse.Errno(syscall.EXDEV), fuse.Errno(syscall.EXDEV)},
		{fmt.Errorf("peer: get %q from bob: %w", "a", fs.ErrNotExist), fuse.Errno(syscall.ENOENT)},
		{fs.ErrExist, fuse.Errno(syscall.EEXIST)},
		{fs.ErrPermission, fuse.Errno(syscall.EACCES)},
		{os.ErrDeadlineExceeded, fuse.Errno(syscall.EIO)},
		{context.DeadlineExceeded, fuse.Errno(syscall.EIO)},
		{errors.New("something odd"), fuse.Errno(syscall.EIO)},
		{fmt.Errorf("remote: chown on bob: %w", ErrNotPermitted), fuse.Errno(syscall.EPERM)},
		// The request server's own answers.
		{fuseserve.ErrStale, fuse.Errno(syscall.ESTALE)},
		{fuseserve.ErrNotImplemented, fuse.Errno(syscall.ENOSYS)},
		{fuseserve.ErrNotInFlight, fuse.Errno(syscall.EAGAIN)},
		{fuseserve.ErrXattrTooLarge, fuse.Errno(syscall.ERANGE)},
		{fmt.Errorf("%w: boom", fuseserve.ErrPanic), fuse.Errno(syscall.EIO)},
		{fmt.Errorf("%w: short read_in", fuseserve.ErrMalformed), fuse.Errno(syscall.EIO)},
		{&fuseserve.UnsupportedError{Op: "create"}, fuse.Errno(syscall.EPERM)},
		{&fuseserve.UnsupportedError{Op: "mkdir"}, fuse.Errno(syscall.EPERM)},
		{&fuseserve.UnsupportedError{Op: "getxattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "listxattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "setxattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "removexattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "symlink"}, fuse.Errno(syscall.EIO)},
		{&fuseserve.UnsupportedError{Op: "remove"}, fuse.Errno(syscall.EIO)},
		{&fuseserve.UnsupportedError{Op: "read"}, fuse.Errno(syscall.EIO)},
	} {
		if got := toErrno(&log, tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %#v, want %#v", tc.err, got, tc.want)
		}
	}
	f, _ := newTestFS(t)
	if err := f.done("op", "peer", "path", nil); err != nil {
		t.Errorf("done(nil) = %#v, want nil", err)
	}
	if err := f.done("op", "peer", "path", fs.ErrNotExist); err != fuse.Errno(syscall.ENOENT) {
		t.Errorf("done(fs.ErrNotExist) = %#v, want ENOENT", err)
	}
}

// carrier is an error with an Errno method, as a Store may return.
type carrier struct{ errno syscall.Errno }

func (c carrier) Error() string { return "carrier: " + c.errno.Error() }

func (c carrier) Errno() syscall.Errno { return c.errno }
