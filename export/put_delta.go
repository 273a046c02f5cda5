package export

// A delta PUT (peerproto.Put.Delta, FEATURES delta): the client sends only
// the ranges it changed, and the new content is the version it names with
// those ranges written in. The old file is cloned into the upload's
// temporary file (a reflink where the filesystem shares blocks between
// files, else a copy), resized, and the ranges written at their offsets;
// from there it is stored as any PUT is (settle, then the conditional
// rename), so a cut transfer or a refusal leaves the old file as it was.
// A file with other hard links, on a posix connection, is changed in place
// instead (patch), as put_inplace.go does for whole uploads.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// How cloneBase copied the old content, for the request's log line.
const (
	copiedReflink = "reflink" // FICLONE: the blocks are shared, nothing is copied
	copiedCopy    = "copy"    // copy_file_range(2), or read and write
)

// openBase opens the existing file of t for reading, after checking that
// it is still the regular file checkBase saw (same inode, size and mtime):
// a delta applies to that version and no other. The caller closes it.
func (c *conn) openBase(m peerproto.Put, p string, t *putTarget) (int, unix.Stat_t, error) {
	if !t.exists || t.st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, unix.Stat_t{}, peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q is not a regular file: no version to apply a delta to", m.Name)
	}
	// O_PATH first, then the very file reopened: whatever took the name
	// meanwhile (a FIFO, say) is never opened for reading.
	pfd, err := unix.Openat(t.dfd, t.base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, unix.Stat_t{}, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(pfd)
	st, err := jail.Fstat(pfd, p)
	if err != nil {
		return -1, st, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != t.st.Ino || st.Dev != t.st.Dev ||
		st.Size != t.st.Size || st.Mtim != t.st.Mtim {
		return -1, st, peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q changed meanwhile", m.Name)
	}
	fd, err := unix.Open(fdPath(pfd, ""), unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, st, nil
}

// cloneBase fills fd, the upload's empty temporary file, with the content
// of t's existing file (the version delta PUT m applies to) and resizes it
// to m.NewSize. It returns how the content got there (copiedReflink or
// copiedCopy), or copiedInPlace, with fd left empty: the delta is to be
// applied to the file itself (put_undo.go). A copy needs the space of the
// new file, checked first; a reflink needs next to none.
func (c *conn) cloneBase(m peerproto.Put, p string, t *putTarget, fd int) (string, error) {
	src, st, err := c.openBase(m, p, t)
	if err != nil {
		return "", err
	}
	defer unix.Close(src)
	how := copiedCopy
	err = unix.EOPNOTSUPP
	switch {
	case c.s.opts.cloneErr != nil:
		err = c.s.opts.cloneErr
	case !c.s.opts.noReflink:
		err = unix.IoctlFileClone(fd, src)
	}
	if err != nil {
		c.s.noteNoClone(st.Dev, err)
	}
	switch {
	case err == nil:
		how = copiedReflink
	case !noClone(err):
		return "", &fs.PathError{Op: "clone", Path: p, Err: err}
	case c.s.undoFits(m, &st) && writable(src) && cleanRecordName(t.target):
		// The undo record's old bytes, and what the file grows by.
		need := totalLen(undoSaved(m, st.Size)) + max(0, m.NewSize-st.Size)
		if err := c.s.checkSpace(t.dfd, m.Size+need); err != nil {
			return "", err
		}
		return copiedInPlace, nil
	default:
		if err := c.s.checkSpace(t.dfd, m.NewSize); err != nil {
			return "", err
		}
		// Apart from a change in place (readFenced): never a copy of one
		// half done.
		c.s.patchMu.RLock()
		err := c.copyFile(fd, src, min(st.Size, m.NewSize))
		c.s.patchMu.RUnlock()
		if err != nil {
			return "", fmt.Errorf("copy %q: %w", m.Name, err)
		}
	}
	if err := unix.Ftruncate(fd, m.NewSize); err != nil {
		return "", &fs.PathError{Op: "truncate", Path: p, Err: err}
	}
	// The copy moved fd's offset; the payload's ranges start from 0.
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return "", &fs.PathError{Op: "seek", Path: p, Err: err}
	}
	return how, nil
}

// noClone reports whether err from FICLONE means the filesystem cannot
// share blocks between these files (ext4, tmpfs; another filesystem), so
// that the content must be copied instead.
func noClone(err error) bool {
	for _, e := range []error{unix.EOPNOTSUPP, unix.ENOTSUP, unix.EXDEV, unix.EINVAL, unix.ENOTTY, unix.ENOSYS, unix.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// patch stores delta PUT m into t's existing file in place (a file with
// other hard links, on a posix connection: see overwrite), from tmp, the
// temporary file (in t's directory) that holds its payload: the file is
// resized to m.NewSize and each range copied into it. Like a local write,
// a reader may see it half-written meanwhile. It returns the stored file's
// attributes and new version token; the caller removes tmp.
func (c *conn) patch(m peerproto.Put, p string, t *putTarget, tmp string) (unix.Stat_t, string, error) {
	src, err := unix.Openat(t.dfd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return unix.Stat_t{}, "", &fs.PathError{Op: "open", Path: tmp, Err: err}
	}
	defer unix.Close(src)
	// As for a rename: the version is checked again right before the
	// content changes, under the lock of conditional PUTs.
	c.s.patchMu.RLock()
	defer c.s.patchMu.RUnlock()
	c.s.putMu.Lock()
	defer c.s.putMu.Unlock()
	if err := c.recheckBase(m, t); err != nil {
		return unix.Stat_t{}, "", err
	}
	dst, err := c.openInPlace(m, p, t, unix.O_WRONLY)
	if err != nil {
		return unix.Stat_t{}, "", err
	}
	defer unix.Close(dst)
	defer c.s.files.invalidate(p)
	if err := c.killPriv(p, t, dst); err != nil {
		return unix.Stat_t{}, "", err
	}
	if err := unix.Ftruncate(dst, m.NewSize); err != nil {
		return unix.Stat_t{}, "", &fs.PathError{Op: "truncate", Path: p, Err: err}
	}
	var from int64
	for _, r := range m.Ranges {
		if err := copyRange(dst, src, from, r); err != nil {
			return unix.Stat_t{}, "", fmt.Errorf("%w (%q is left with part of its new content)", err, m.Name)
		}
		from += r.Len
	}
	if err := c.s.patchHook("written"); err != nil {
		return unix.Stat_t{}, "", err
	}
	return c.finishInPlace(m, p, t, dst, !m.Async)
}

// copyRange copies r.Len bytes from offset from of src to offset r.Off of
// dst: copy_file_range(2) where the filesystem takes it, else pread and
// pwrite.
func copyRange(dst, src int, from int64, r peerproto.Range) error {
	in, out, end := from, r.Off, from+r.Len
	for in < end {
		n, err := unix.CopyFileRange(src, &in, dst, &out, int(min(end-in, 1<<30)), 0)
		switch {
		case err == unix.EINTR:
		case err == nil && n == 0:
			return &fs.PathError{Op: "copy", Err: io.ErrUnexpectedEOF}
		case err == nil:
		case errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
			return copyRangeBuffered(dst, src, in, out, end-in)
		default:
			return &fs.PathError{Op: "copy", Err: err}
		}
	}
	return nil
}

// copyRangeBuffered is copyRange by pread and pwrite.
func copyRangeBuffered(dst, src int, in, out, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k, err := pread(src, buf[:min(int64(len(buf)), n)], in)
		if k > 0 {
			if _, werr := pwriteFull(dst, buf[:k], out); werr != nil {
				return werr
			}
			in, out, n = in+int64(k), out+int64(k), n-int64(k)
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return &fs.PathError{Op: "copy", Err: io.ErrUnexpectedEOF}
		}
	}
	return nil
}

// pwriteFull writes all of b to fd at off.
func pwriteFull(fd int, b []byte, off int64) (int64, error) {
	var done int64
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off+done)
		if n > 0 {
			done += int64(n)
			b = b[n:]
		}
		switch {
		case err == unix.EINTR:
		case err != nil:
			return done, &fs.PathError{Op: "write", Path: "", Err: err}
		case n == 0:
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}
