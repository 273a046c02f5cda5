package jail

// Opening paths in the jail: openat2 beneath the export where the kernel
// has it, os.Root where not, in segments for paths longer than one
// system call takes.

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"syscall"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// Open opens p (relative to the export; "" is the export) with open(2)
// flags and returns the descriptor, close-on-exec, which the caller must
// close. Symbolic links are followed while they stay inside the export;
// one that leads out is an error Escapes recognises. In the Strict view
// none is followed: a link in the path, or as its last element unless
// flags has O_PATH and O_NOFOLLOW (which open the link itself), is an
// error matching ErrSymlink.
func (j *Jail) Open(p string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	switch {
	case j.noFollow && !j.beneath:
		return j.openWalk(p, flags)
	case !j.beneath:
		return j.openViaRoot(p, flags)
	}
	resolve := uint64(resolveBeneath)
	if j.noFollow {
		resolve = resolveNoSymlinks
	}
	// A path longer than one call takes: its leading segments, each of
	// whole elements and as long as a call takes, are opened in turn,
	// each beneath the last by the same rules.
	base, rest := j.fd, p
	defer func() {
		if base != j.fd {
			unix.Close(base)
		}
	}()
	for len(rest) > maxArg {
		i := strings.LastIndexByte(rest[:maxArg+1], '/')
		if i <= 0 {
			return -1, &fs.PathError{Op: "open", Path: p, Err: syscall.ENAMETOOLONG}
		}
		fd, err := j.openat2(base, rest[:i], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, resolve)
		if err != nil {
			return -1, j.openError(p, err)
		}
		if base != j.fd {
			unix.Close(base)
		}
		base, rest = fd, rest[i+1:]
	}
	fd, err := j.openat2(base, Rel(rest), flags, resolve)
	if err != nil {
		return -1, j.openError(p, err)
	}
	return fd, nil
}

// openat2 is openat2(2) of p beneath directory dfd, retried where the
// kernel asks.
func (j *Jail) openat2(dfd int, p string, flags int, resolve uint64) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Resolve: resolve}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dfd, p, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR, err == unix.EAGAIN && try < 16:
			// EAGAIN: a rename raced with a ".." in a link; the kernel
			// asks for a retry rather than risk an escape.
			continue
		}
		return -1, err
	}
}

// openError words an error of opening p: EXDEV is an escape, and in the
// Strict view ELOOP is a link in the path (it follows none, so it meets
// no loop).
func (j *Jail) openError(p string, err error) error {
	switch {
	case err == unix.EXDEV:
		err = errEscape
	case err == unix.ELOOP && j.noFollow:
		err = ErrSymlink
	}
	return &fs.PathError{Op: "open", Path: p, Err: err}
}

// openWalk is Open in the Strict view without openat2: one element at a
// time, each opened O_PATH|O_NOFOLLOW relative to the last and checked
// with fstat before the next (a link, or anything but a directory, ends
// the walk), then the last element with flags and O_NOFOLLOW. Elements are
// never ".." (Clean refuses them), so nothing above the export is reached.
func (j *Jail) openWalk(p string, flags int) (int, error) {
	if p == "" {
		fd, err := unix.Openat(j.fd, ".", flags, 0)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
	elems := strings.Split(p, "/")
	dfd := j.fd
	defer func() {
		if dfd != j.fd {
			unix.Close(dfd)
		}
	}()
	for _, e := range elems[:len(elems)-1] {
		fd, err := openatRetry(dfd, e, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return -1, j.openError(p, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		switch {
		case err != nil:
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			err = unix.ELOOP
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			err = unix.ENOTDIR
		}
		if dfd != j.fd {
			unix.Close(dfd)
		}
		dfd = fd
		if err != nil {
			return -1, j.openError(p, err)
		}
	}
	last := elems[len(elems)-1]
	fd, err := openatRetry(dfd, last, flags|unix.O_NOFOLLOW)
	if err == unix.ENOTDIR || err == unix.ENXIO {
		// O_DIRECTORY or O_NOFOLLOW on a link (or a socket's ENXIO) say
		// other things than openat2 with RESOLVE_NO_SYMLINKS would: a
		// link is ELOOP.
		var st unix.Stat_t
		if unix.Fstatat(dfd, last, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP
		}
	}
	if err != nil {
		return -1, j.openError(p, err)
	}
	if flags&unix.O_PATH != 0 && flags&unix.O_NOFOLLOW == 0 {
		// O_PATH|O_NOFOLLOW opened a link itself; the caller did not ask
		// for that, and openat2 would refuse it.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(fd)
			if err == nil {
				err = unix.ELOOP
			}
			return -1, j.openError(p, err)
		}
	}
	return fd, nil
}

// openatRetry is openat(2), retried on EINTR.
func openatRetry(dfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// OpenFile opens p with open(2) flags if it is a regular file or a
// directory, and returns the descriptor with its attributes. Anything
// else is refused (a *Refusal, invalid) without being opened for I/O:
// opening a device or a FIFO has effects of its own. In the Strict view
// that includes a link as p's last element; otherwise links are followed
// as Open follows them. p is first opened O_PATH, checked, then reopened
// through /proc: the very file checked.
func (j *Jail) OpenFile(p string, flags int) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	pflags := unix.O_PATH
	if j.noFollow {
		pflags |= unix.O_NOFOLLOW
	}
	pfd, err := j.Open(p, pflags)
	if err != nil {
		return -1, st, err
	}
	defer unix.Close(pfd)
	if st, err = Fstat(pfd, p); err != nil {
		return -1, st, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
	case unix.S_IFLNK:
		return -1, st, &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("%q is a symbolic link, not a regular file (read it with READLINK)", Display(p))}
	default:
		return -1, st, &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("%q is not a regular file", Display(p))}
	}
	fd, err := openatRetry(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(pfd), flags|unix.O_CLOEXEC)
	if err != nil {
		return -1, st, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, st, nil
}

// openViaRoot is Open through os.Root, for kernels without openat2. The
// *os.File is traded for a bare duplicate of its descriptor.
func (j *Jail) openViaRoot(p string, flags int) (int, error) {
	f, err := j.root.OpenFile(Rel(p), flags&^unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	sc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := sc.Control(func(raw uintptr) { fd, derr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, &fs.PathError{Op: "dup", Path: p, Err: derr}
	}
	return fd, nil
}

// OpenDir opens directory dir ("" for the export) for use as the dirfd of
// *at calls on its entries and for fstatfs, and for fsync too if sync.
// Close it with CloseDir: without sync, for the export, it is the Jail's
// own descriptor.
func (j *Jail) OpenDir(dir string, sync bool) (int, error) {
	switch {
	case !j.beneath && !j.noFollow || sync:
		// os.Root does not follow links with O_PATH; fsync needs a
		// descriptor open for reading.
		return j.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	case dir == "":
		return j.fd, nil
	}
	// O_PATH: no read permission needed, nothing but a handle.
	return j.Open(dir, unix.O_PATH|unix.O_DIRECTORY)
}

// CloseDir closes a descriptor from OpenDir.
func (j *Jail) CloseDir(fd int) {
	if fd != j.fd {
		unix.Close(fd)
	}
}
