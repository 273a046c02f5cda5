package export

// A PUT to a file with other hard links, on a posix connection: its new
// content goes into the file itself, so that every name of it sees it.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// overwrite stores the payload received in temporary file tmp (in t's
// directory) into t's existing file in place: truncated, then copied
// into, then (unless async) fsynced. Replacing it by a rename, as other
// PUTs do, would leave its other hard links with the old content, where
// a local write changes what every name shows. Like a local write, and
// unlike a rename, a reader may see the file half-written meanwhile. It
// returns the stored file's attributes and new version token; the
// caller removes tmp.
func (c *conn) overwrite(m peerproto.Put, p string, t *putTarget, tmp string) (unix.Stat_t, string, error) {
	src, err := unix.Openat(t.dfd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return unix.Stat_t{}, "", &fs.PathError{Op: "open", Path: tmp, Err: err}
	}
	defer unix.Close(src)
	c.s.patchMu.RLock()
	defer c.s.patchMu.RUnlock()
	if m.Base != peerproto.BaseAny || m.Ver != "" {
		// As for a rename: the condition is checked again right before
		// the content changes, under the lock of conditional PUTs.
		c.s.putMu.Lock()
		defer c.s.putMu.Unlock()
		if err := c.recheckBase(m, t); err != nil {
			return unix.Stat_t{}, "", err
		}
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
	if err := unix.Ftruncate(dst, 0); err != nil {
		return unix.Stat_t{}, "", &fs.PathError{Op: "truncate", Path: p, Err: err}
	}
	if err := c.copyFile(dst, src, m.Size); err != nil {
		return unix.Stat_t{}, "", fmt.Errorf("%w (%q is left with part of its new content)", err, m.Name)
	}
	if err := c.s.patchHook("written"); err != nil {
		return unix.Stat_t{}, "", err
	}
	return c.finishInPlace(m, p, t, dst, !m.Async)
}

// openInPlace opens t's existing file with access mode flags (O_WRONLY,
// O_RDWR), after checking that it is still the file findTarget found. The
// caller closes it.
func (c *conn) openInPlace(m peerproto.Put, p string, t *putTarget, flags int) (int, error) {
	// O_PATH first, then the very file reopened: whatever took the name
	// meanwhile (a device, say) is never opened for writing.
	pfd, err := unix.Openat(t.dfd, t.base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(pfd)
	st, err := jail.Fstat(pfd, p)
	if err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != t.st.Ino || st.Dev != t.st.Dev {
		return -1, peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was replaced meanwhile", m.Name)
	}
	dst, err := unix.Open(fdPath(pfd, ""), flags|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	// The mode the file ends with is its mode now, less setuid and
	// setgid unless the writer may keep them (m.Setid, where the export
	// allows them): a chmod or chown made on the peer while the payload
	// came is not undone.
	t.st.Mode, t.mode = st.Mode, contentMode(st.Mode)
	if m.Setid && c.s.opts.AllowSetuid {
		t.mode |= st.Mode & privBits
	}
	return dst, nil
}

// killPriv drops the setuid and setgid bits of t's file, open as dst,
// before new content goes into it in place (as the kernel does before a
// write by a process without CAP_FSETID): no byte of it is ever part of a
// program that runs with the owner's rights. openInPlace saw its mode.
//
// A peer that may not chmod the file (not its owner, not root) leaves it
// to the kernel, which clears them at the first write of a process
// without CAP_FSETID, as before.
func (c *conn) killPriv(p string, t *putTarget, dst int) error {
	if t.st.Mode&privBits == t.mode&privBits {
		return nil // none, or kept (peerproto.Put.Setid)
	}
	if err := unix.Fchmod(dst, t.mode); err != nil && !errors.Is(err, unix.EPERM) {
		return &fs.PathError{Op: "chmod", Path: p, Err: err}
	}
	return nil
}

// finishInPlace completes PUT m written in place into dst, t's file: it
// gives it the mode openInPlace chose (killPriv did, unless it changed
// since), its new version token and, if sync,
// makes both durable with the content; it returns its attributes and the
// token.
func (c *conn) finishInPlace(m peerproto.Put, p string, t *putTarget, dst int, sync bool) (unix.Stat_t, string, error) {
	st, err := jail.Fstat(dst, p)
	if err != nil {
		return st, "", err
	}
	if st.Mode&0o7777 != t.mode {
		// New content has no setuid or setgid (contentMode), unless its
		// writer may keep them (setid). A peer that may not chmod the
		// file (not its owner, not root) had the kernel clear them at
		// its write, and cannot put them back: the safe way to differ.
		err := unix.Fchmod(dst, t.mode)
		if errors.Is(err, unix.EPERM) && (st.Mode^t.mode)&0o7777&^privBits == 0 && st.Mode&privBits&^t.mode == 0 {
			err = nil
		}
		if err != nil {
			return st, "", &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
		if st, err = jail.Fstat(dst, p); err != nil {
			return st, "", err
		}
	}
	ver := c.s.vers.assign(dst, &st)
	if sync {
		if err := unix.Fsync(dst); err != nil {
			return st, "", &fs.PathError{Op: "fsync", Path: p, Err: err}
		}
	}
	return st, ver, nil
}

// copyFile copies n bytes from the start of src to the start of dst:
// copy_file_range(2) where the filesystem takes it, else through a pooled
// buffer.
func (c *conn) copyFile(dst, src int, n int64) error {
	var off int64
	for off < n {
		k, err := unix.CopyFileRange(src, &off, dst, nil, int(min(n-off, 1<<30)), 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == nil && k == 0:
			return &fs.PathError{Op: "copy", Err: io.ErrUnexpectedEOF}
		case err == nil:
			continue
		case off == 0 && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)):
			return c.copyBuffered(dst, src, n)
		}
		return &fs.PathError{Op: "copy", Err: err}
	}
	return nil
}

// copyBuffered is copyFile by read and write.
func (c *conn) copyBuffered(dst, src int, n int64) error {
	bp := c.s.bufs.Get().(*[]byte)
	defer c.s.bufs.Put(bp)
	buf := *bp
	for off := int64(0); off < n; {
		k, err := pread(src, buf[:min(int64(len(buf)), n-off)], off)
		if k > 0 {
			if _, werr := writeFull(dst, buf[:k]); werr != nil {
				return werr
			}
			off += int64(k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
