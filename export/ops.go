package export

// The namespace requests: DELETE, RMDIR, MKDIR, RENAME, SETATTR, STATFS,
// FSYNC.

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"
	"unsafe"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// delete removes a file (or a symbolic link to one): "DELETE <name>".
// A regular file costs a stat and an unlink relative to its directory;
// links and anything unusual take the general path, through the jail.
func (c *conn) delete(m peerproto.Delete) error {
	const verb = peerproto.VerbDelete
	j := c.s.jail
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	c.staleAfter(p)
	if p != "" {
		dir, base := jail.Split(p)
		if dfd, err := j.OpenDir(dir, false); err == nil {
			st, err := jail.StatAt(dfd, base, p)
			switch {
			case err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG:
				err = unix.Unlinkat(dfd, base, 0)
				j.CloseDir(dfd)
				if err != nil {
					return c.refuse(verb, &fs.PathError{Op: "unlink", Path: p, Err: err}, m.Name)
				}
				c.s.vers.forget(verStatOf(&st)) // its inode number may come back
				return c.send(peerproto.OK{Of: verb})
			case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
				j.CloseDir(dfd)
				return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "%q is a directory (use RMDIR)", m.Name))
			}
			j.CloseDir(dfd)
		}
	}
	// visible also refuses links that escape or dangle, which LIST hides.
	fi, err := j.Visible(p)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Name))
	}
	if fi.IsDir() {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "%q is a directory (use RMDIR)", jail.Display(m.Name)))
	}
	if err := j.Root().Remove(p); err != nil {
		return c.refuse(verb, err, m.Name)
	}
	return c.send(peerproto.OK{Of: verb})
}

// rmdir removes an empty directory: "RMDIR <name>".
func (c *conn) rmdir(m peerproto.Rmdir) error {
	const verb = peerproto.VerbRmdir
	j := c.s.jail
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	if p == "" {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeDenied, "cannot remove the export root"))
	}
	c.staleAfter(p)
	// Lstat, like rmdir(2): a link to a directory is not a directory.
	fi, err := j.Lstat(p)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	if !fi.IsDir() {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotDir, "%q is not a directory (use DELETE)", m.Name))
	}
	if err := j.Root().Remove(p); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			err = &fs.PathError{Op: "rmdir", Path: p, Err: syscall.ENOTEMPTY}
		}
		return c.refuse(verb, err, m.Name)
	}
	return c.send(peerproto.OK{Of: verb})
}

// mkdir creates a directory: "MKDIR <name> [<mode>]", mode 0755 by default.
func (c *conn) mkdir(m peerproto.Mkdir) error {
	const verb = peerproto.VerbMkdir
	j := c.s.jail
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	if p == "" {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeExists, "the export root already exists"))
	}
	mode := c.s.clientMode(m.Mode)
	if m.Mode == 0 {
		mode = 0o755
	}
	// os.Root.Mkdir takes permission bits only; setuid, setgid and sticky
	// bits follow with a chmod. (A setgid bit the new directory inherits
	// from a setgid parent stays: that is the export owner's choice, as
	// with a local mkdir.)
	if err := j.Root().Mkdir(p, fs.FileMode(mode&0o777)); err != nil {
		return c.refuse(verb, err, m.Name)
	}
	if mode&^0o777 != 0 {
		if err := j.Root().Chmod(p, fileMode(mode)); err != nil {
			return c.refuse(verb, err, m.Name)
		}
	}
	return c.send(peerproto.OK{Of: verb})
}

// rename renames a file or directory, atomically replacing an existing
// target file: "RENAME <from> <to>".
func (c *conn) rename(m peerproto.Rename) error {
	const verb = peerproto.VerbRename
	if ok, err := c.writable(verb); !ok {
		return err
	}
	j := c.s.jail
	from, err := j.Clean(m.From)
	if err != nil {
		return c.refuse(verb, err, m.From)
	}
	to, err := j.Clean(m.To)
	if err != nil {
		return c.refuse(verb, err, m.To)
	}
	if from == "" || to == "" {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeDenied, "cannot rename the export root"))
	}
	c.staleAfter(from)
	c.staleAfter(to)
	done, err := j.RenameAt(from, to)
	if done {
		return c.send(peerproto.OK{Of: verb})
	}
	switch {
	case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EINVAL):
		// rename(2)'s own answer, as a local rename gives it: a
		// non-empty target directory, a file over a directory or the
		// other way, a directory into itself.
		return c.refuse(verb, &peerproto.FailError{Verb: verb, Code: peerproto.CodeOf(err),
			Text: fmt.Sprintf("cannot rename %q to %q: %v", m.From, m.To, err)})
	}
	// Anything unusual (a refusal to come, a missing parent) takes the
	// general path, which words the refusal.
	if err := j.Root().Rename(from, to); err != nil {
		err = j.RenameError(from, to, err)
		code, _, hostile := jail.Explain(m.From, err)
		text := fmt.Sprintf("cannot rename %q to %q: %v", m.From, m.To, jail.BareError(err))
		if hostile {
			text = fmt.Sprintf("path escapes the export: %q or %q leads outside through a symbolic link", m.From, m.To)
			c.log.Warn().Str("verb", verb).Str("from", m.From).Str("to", m.To).Msg("refused a path that escapes the export")
		}
		return c.refuse(verb, &peerproto.FailError{Verb: verb, Code: code, Text: text})
	}
	return c.send(peerproto.OK{Of: verb})
}

// setattr changes a file's size, permission bits or modification time, in
// that order (so that an explicit mtime survives the truncation), and
// answers with the attributes after: "SETATTR <name> [size=N] [mode=OOOO]
// [mtime=NS]". It opens the file once and does everything through that
// descriptor; anything unusual (a refusal to come, a FIFO, a file it
// cannot open) takes the general path, setattrByName.
func (c *conn) setattr(m peerproto.Setattr) error {
	const verb = peerproto.VerbSetattr
	j := c.s.jail
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	c.staleAfter(p)
	flags := unix.O_RDONLY
	if m.HasSize {
		flags = unix.O_WRONLY
	}
	fd, err := j.Open(p, flags|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return c.setattrByName(m, p)
	}
	defer unix.Close(fd)
	name := jail.Display(m.Name)
	st, err := jail.Fstat(fd, p)
	if err != nil {
		return c.refuse(verb, err, name)
	}
	if _, ok := statEntry(&st); !ok {
		return c.setattrByName(m, p)
	}
	regular := st.Mode&unix.S_IFMT == unix.S_IFREG
	var ver string // the content's version token before the change
	if regular && m.HasMtime && !m.HasSize {
		ver = c.s.vers.of(verStatOf(&st), fdSource(fd, ""))
	}
	if m.HasSize {
		if err := unix.Ftruncate(fd, m.Size); err != nil {
			return c.refuse(verb, &fs.PathError{Op: "truncate", Path: p, Err: err}, name)
		}
	}
	if mode, ok := c.setattrMode(m, st.Mode); ok {
		if err := unix.Fchmod(fd, mode); err != nil {
			return c.refuse(verb, &fs.PathError{Op: "chmod", Path: p, Err: err}, name)
		}
	}
	if m.HasMtime {
		if err := futimens(fd, m.Mtime); err != nil {
			return c.refuse(verb, &fs.PathError{Op: "utimes", Path: p, Err: err}, name)
		}
	}
	if m.HasSize || m.HasMode || m.HasMtime {
		if st, err = jail.Fstat(fd, p); err != nil {
			return c.refuse(verb, err, name)
		}
	}
	e, ok := statEntry(&st)
	if !ok {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotFound, "%q is not a regular file or directory", name))
	}
	if regular {
		switch {
		case m.HasSize:
			ver = c.s.vers.assign(fd, &st) // new content
		case m.HasMtime:
			c.s.vers.keep(fd, &st, ver) // the same content at another mtime
		default:
			c.s.vers.moved(verStatOf(&st)) // ctime only
			ver = c.s.vers.of(verStatOf(&st), fdSource(fd, ""))
		}
		if c.attrs {
			e.Ver = ver
		}
	}
	return c.send(peerproto.SetattrOK{Entry: e})
}

// setattrMode returns the permission bits a SETATTR gives a file whose
// mode is cur, and whether to chmod at all: mode= without setuid and
// setgid (Server.clientMode), and for size= alone on a setuid or setgid
// file, its mode without them, since the content changed (as a write by a
// process without CAP_FSETID clears them).
func (c *conn) setattrMode(m peerproto.Setattr, cur uint32) (uint32, bool) {
	switch {
	case m.HasMode:
		return c.s.clientMode(m.Mode), true
	case m.HasSize && cur&privBits != 0 && c.s.clientMode(cur) != cur&0o7777:
		return c.s.clientMode(cur), true
	}
	return 0, false
}

// futimens sets the modification time of open file fd to mtime (ns),
// leaving its access time: utimensat(fd, NULL, ...), which x/sys/unix
// does not wrap.
func futimens(fd int, mtime int64) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.NsecToTimespec(mtime)}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// setattrByName is SETATTR through the jail by name, one call per
// attribute.
func (c *conn) setattrByName(m peerproto.Setattr, p string) error {
	const verb = peerproto.VerbSetattr
	j := c.s.jail
	name := jail.Display(m.Name)
	fi, err := j.Visible(p)
	if err != nil {
		return c.refuse(verb, err, name)
	}
	if m.HasSize {
		if fi.IsDir() {
			return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "cannot set the size of directory %q", name))
		}
		fd, err := j.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
		if err != nil {
			return c.refuse(verb, err, name)
		}
		st, err := jail.Fstat(fd, p)
		switch {
		case err != nil:
		case st.Mode&unix.S_IFMT != unix.S_IFREG:
			err = &jail.Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("%q is not a regular file", p)}
		default:
			if terr := unix.Ftruncate(fd, m.Size); terr != nil {
				err = &fs.PathError{Op: "truncate", Path: p, Err: terr}
			}
		}
		unix.Close(fd)
		if err != nil {
			return c.refuse(verb, err, name)
		}
	}
	if mode, ok := c.setattrMode(m, modeBits(fi.Mode())); ok {
		if err := j.Root().Chmod(jail.Rel(p), fileMode(mode)); err != nil {
			return c.refuse(verb, err, name)
		}
	}
	if m.HasMtime {
		// A zero atime leaves the access time as it is.
		if err := j.Root().Chtimes(jail.Rel(p), time.Time{}, time.Unix(0, m.Mtime)); err != nil {
			return c.refuse(verb, err, name)
		}
	}
	if fi, err = j.Visible(p); err != nil {
		return c.refuse(verb, err, name)
	}
	e, _ := entryOf("", fi)
	c.setVer(&e, fi, pathSource(j, p))
	return c.send(peerproto.SetattrOK{Entry: e})
}

// fsync makes everything stored in the export durable (syncfs(2) on the
// export's filesystem): "FSYNC OK". It is how an async PUT becomes as
// durable as the seed's PUT.
func (c *conn) fsync(m peerproto.Fsync) error {
	const verb = peerproto.VerbFsync
	j := c.s.jail
	all := len(m.Names) == 0
	dirs := map[string]bool{}
	for _, name := range m.Names {
		p, err := j.Clean(name)
		if err != nil {
			return c.refuse(verb, err, name)
		}
		// O_NOFOLLOW: a PUT through a symbolic link stored the file in
		// the link's target's directory, which this would not sync.
		fd, err := j.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_NOFOLLOW)
		if err != nil {
			// Renamed or removed since it was stored, a link, or not
			// readable by this peer (mode 0200): wherever its bytes are
			// now, syncfs reaches them.
			all = true
			continue
		}
		if st, err := jail.Fstat(fd, p); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(fd) // a FIFO or device now: nothing of ours to fsync by name
			all = true
			continue
		}
		err = unix.Fsync(fd)
		unix.Close(fd)
		if err != nil {
			return c.refuse(verb, &fs.PathError{Op: "fsync", Path: p, Err: err}, name)
		}
		dir, _ := jail.Split(p)
		dirs[dir] = true // the directory entry must be durable too
	}
	for dir := range dirs {
		fd, err := j.OpenDir(dir, true)
		if err != nil {
			all = true // as above
			continue
		}
		err = unix.Fsync(fd)
		j.CloseDir(fd)
		if err != nil {
			return c.refuse(verb, &fs.PathError{Op: "fsync", Path: dir, Err: err}, dir)
		}
	}
	if all {
		if err := j.Syncfs(); err != nil {
			return c.refuse(verb, err, ".")
		}
	}
	return c.send(peerproto.OK{Of: verb})
}

// statfs reports the export filesystem's space: "STATFS OK <total> <free>
// <avail>" in bytes.
func (c *conn) statfs() error {
	total, free, avail, err := c.s.jail.Statfs()
	if err != nil {
		return c.refuse(peerproto.VerbStatfs, err, ".")
	}
	return c.send(peerproto.StatfsOK{Total: total, Free: free, Avail: avail})
}
