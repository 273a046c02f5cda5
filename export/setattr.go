package export

// SETATTR: size, owners, permission bits and times, through a descriptor
// of the file where one can be had, else by name.

import (
	"fmt"
	"io/fs"
	"time"
	"unsafe"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// setattr changes a file's size, owners, permission bits and times, in
// that order (so that an explicit mtime survives the truncation, and a
// mode survives the chown, which may clear setuid), and answers with the
// attributes after: "SETATTR <name> [size=N] [mode=OOOO] [mtime=NS|now]
// [atime=NS|now] [uid=N] [gid=N]". It opens the file once and does
// everything through that descriptor; anything unusual (a refusal to
// come, a FIFO, a file it cannot open) takes the general path,
// setattrByName. A posix connection takes setattrStrict.
func (c *conn) setattr(m peerproto.Setattr) error {
	const verb = peerproto.VerbSetattr
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	if (m.HasUid || m.HasGid) && !c.s.opts.Owners {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeDenied,
			"this peer does not store owners (it runs without --owners): cannot change the owner of %q", jail.Display(m.Name)))
	}
	c.staleAfter(p)
	if c.posix {
		return c.setattrStrict(m, p)
	}
	fd, err := c.s.jail.Open(p, setattrFlags(m)|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return c.setattrByName(m, p)
	}
	defer unix.Close(fd)
	return c.setattrFD(m, p, fd)
}

// setattrFlags are the open(2) flags of the descriptor a SETATTR works
// through: writable for a truncation.
func setattrFlags(m peerproto.Setattr) int {
	if m.HasSize {
		return unix.O_WRONLY
	}
	return unix.O_RDONLY
}

// setattrFD is SETATTR through fd, an open descriptor of p.
func (c *conn) setattrFD(m peerproto.Setattr, p string, fd int) error {
	const verb = peerproto.VerbSetattr
	name := jail.Display(m.Name)
	st, err := jail.Fstat(fd, p)
	if err != nil {
		return c.refuse(verb, err, name)
	}
	if _, ok := statEntry(&st); !ok {
		if c.posix {
			// setattrStrict sends only files and directories here.
			return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIO, "%q changed meanwhile", name))
		}
		return c.setattrByName(m, p)
	}
	e, err := c.changeFD(m, p, fd, st)
	if err != nil {
		return c.refuse(verb, err, name)
	}
	return c.send(peerproto.SetattrOK{Entry: e})
}

// changeFD applies m to p through fd, its open descriptor with attributes
// st, and returns its entry after. A new mtime of a regular file keeps
// its content's version token, taken before the change and recorded
// after it; putMu is held in between, so that no PUT in place (which
// holds it while it writes) stores new content under the old token.
func (c *conn) changeFD(m peerproto.Setattr, p string, fd int, st unix.Stat_t) (peerproto.Entry, error) {
	const verb = peerproto.VerbSetattr
	regular := st.Mode&unix.S_IFMT == unix.S_IFREG
	var ver string // the content's version token before the change
	if regular && m.HasMtime && !m.HasSize {
		c.s.putMu.Lock()
		defer c.s.putMu.Unlock()
		ver = c.s.vers.of(verStatOf(&st), fdSource(fd, ""))
	}
	if m.HasSize {
		if err := unix.Ftruncate(fd, m.Size); err != nil {
			return peerproto.Entry{}, &fs.PathError{Op: "truncate", Path: p, Err: err}
		}
	}
	if uid, gid, ok := owners(m); ok {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return peerproto.Entry{}, &fs.PathError{Op: "chown", Path: p, Err: err}
		}
	}
	if mode, ok := c.setattrMode(m, st.Mode); ok {
		if err := unix.Fchmod(fd, mode); err != nil {
			return peerproto.Entry{}, &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	if ts, ok := setattrTimes(m); ok {
		if err := futimens(fd, &ts); err != nil {
			return peerproto.Entry{}, &fs.PathError{Op: "utimes", Path: p, Err: err}
		}
	}
	if m.HasSize || m.HasMode || m.HasMtime || m.HasAtime || m.HasUid || m.HasGid {
		var err error
		if st, err = jail.Fstat(fd, p); err != nil {
			return peerproto.Entry{}, err
		}
	}
	e, ok := c.statEntry(&st)
	if !ok {
		return peerproto.Entry{}, peerproto.Fail(verb, peerproto.CodeNotFound, "%q is not a regular file or directory", jail.Display(m.Name))
	}
	if regular {
		recorded := true
		switch {
		case m.HasSize:
			ver = c.s.vers.assign(fd, &st) // new content
		case m.HasMtime:
			c.s.vers.keep(fd, &st, ver) // the same content at another mtime
		default:
			c.s.vers.moved(verStatOf(&st), verStat{}) // ctime only
			ver = c.s.vers.of(verStatOf(&st), fdSource(fd, ""))
			recorded = false
		}
		if recorded && c.posix {
			// Recording the token (an extended attribute) moved the
			// ctime: the reply gives the one the file keeps, or a
			// client would see it move later with nothing changed.
			var now unix.Stat_t
			if err := unix.Fstat(fd, &now); err == nil && now.Ino == st.Ino && now.Size == st.Size && now.Mtim == st.Mtim {
				e.Ctime = now.Ctim.Nano()
			}
		}
		if c.attrs {
			e.Ver = ver
		}
	}
	return e, nil
}

// statEntry is the entry of fstat's attributes as this connection sees
// it; ok is false for what a plain connection does not see.
func (c *conn) statEntry(st *unix.Stat_t) (peerproto.Entry, bool) {
	if c.posix {
		return posixEntry("", st), true
	}
	return statEntry(st)
}

// setattrStrict is SETATTR on a posix connection: p is opened O_PATH
// through no symbolic link, and not followed if it is one, so that times
// and owners of a link are the link's. A file or directory is then
// reopened through that descriptor and takes setattrFD; anything else
// (a link, a FIFO, a socket, a device, or a file this peer may not open)
// takes setattrPath, which never opens it for I/O.
func (c *conn) setattrStrict(m peerproto.Setattr, p string) error {
	const verb = peerproto.VerbSetattr
	pfd, err := c.jail().Open(p, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Name))
	}
	defer unix.Close(pfd)
	st, err := jail.Fstat(pfd, p)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Name))
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFREG || t == unix.S_IFDIR {
		// Through /proc: the very inode pfd is, whatever the name
		// holds by now.
		fd, err := unix.Open(fdPath(pfd, ""), setattrFlags(m)|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err == nil {
			defer unix.Close(fd)
			return c.setattrFD(m, p, fd)
		}
	}
	return c.setattrPath(m, p, pfd, &st)
}

// setattrPath is SETATTR of p, a posix connection's, through pfd, its
// O_PATH descriptor (of the link itself, for a link), with attributes st.
func (c *conn) setattrPath(m peerproto.Setattr, p string, pfd int, st *unix.Stat_t) error {
	const verb = peerproto.VerbSetattr
	name := jail.Display(m.Name)
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	switch {
	case m.HasSize && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "cannot set the size of directory %q", name))
	case m.HasSize && st.Mode&unix.S_IFMT != unix.S_IFREG:
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeInvalid, "cannot set the size of %q: not a regular file", name))
	case m.HasSize:
		// A regular file setattrStrict could not open for writing.
		return c.refuse(verb, &fs.PathError{Op: "truncate", Path: p, Err: unix.EACCES}, name)
	case m.HasMode && isLink:
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeUnsupported, "cannot change the mode of symbolic link %q", name))
	}
	if uid, gid, ok := owners(m); ok {
		if err := unix.Fchownat(pfd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return c.refuse(verb, &fs.PathError{Op: "chown", Path: p, Err: err}, name)
		}
	}
	if mode, ok := c.setattrMode(m, st.Mode); ok {
		if err := unix.Fchmodat(unix.AT_FDCWD, fdPath(pfd, ""), mode, 0); err != nil {
			return c.refuse(verb, &fs.PathError{Op: "chmod", Path: p, Err: err}, name)
		}
	}
	if ts, ok := setattrTimes(m); ok {
		if err := c.utimesLink(p, pfd, isLink, ts); err != nil {
			return c.refuse(verb, err, name)
		}
	}
	after, err := jail.Fstat(pfd, p)
	if err != nil {
		return c.refuse(verb, err, name)
	}
	e := posixEntry("", &after)
	if isLink {
		if e.Target, err = jail.ReadlinkAt(pfd, "", p); err != nil {
			return c.refuse(verb, err, name)
		}
		e.Has |= peerproto.AttrLink
	}
	if after.Mode&unix.S_IFMT == unix.S_IFREG {
		c.s.vers.moved(verStatOf(&after), verStat{})
		e.Ver = c.s.vers.of(verStatOf(&after), fdSource(pfd, ""))
	}
	return c.send(peerproto.SetattrOK{Entry: e})
}

// utimesLink sets the times of p, open as O_PATH descriptor pfd: through
// /proc for anything but a link (the very inode), by name relative to its
// directory without following for a link (utimensat takes no O_PATH
// descriptor of one).
func (c *conn) utimesLink(p string, pfd int, isLink bool, ts [2]unix.Timespec) error {
	if !isLink {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(pfd, ""), ts[:], 0); err != nil {
			return &fs.PathError{Op: "utimes", Path: p, Err: err}
		}
		return nil
	}
	j := c.jail()
	dir, base := jail.Split(p)
	dfd, err := j.OpenDir(dir, false)
	if err != nil {
		return err
	}
	defer j.CloseDir(dfd)
	if err := unix.UtimesNanoAt(dfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimes", Path: p, Err: err}
	}
	return nil
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

// owners returns the uid and gid of a SETATTR for chown(2) (-1: leave
// as it is), and whether it changes either.
func owners(m peerproto.Setattr) (uid, gid int, ok bool) {
	uid, gid = -1, -1
	if m.HasUid {
		uid = int(m.Uid)
	}
	if m.HasGid {
		gid = int(m.Gid)
	}
	return uid, gid, m.HasUid || m.HasGid
}

// setattrTimes returns the times of a SETATTR for utimensat(2), and
// whether it changes either: UTIME_OMIT for a time not given, UTIME_NOW
// for "now" (the peer's clock).
func setattrTimes(m peerproto.Setattr) (ts [2]unix.Timespec, ok bool) {
	set := func(has, now bool, ns int64) unix.Timespec {
		switch {
		case !has:
			return unix.Timespec{Nsec: unix.UTIME_OMIT}
		case now:
			return unix.Timespec{Nsec: unix.UTIME_NOW}
		}
		return unix.NsecToTimespec(ns)
	}
	ts[0] = set(m.HasAtime, m.AtimeNow, m.Atime)
	ts[1] = set(m.HasMtime, m.MtimeNow, m.Mtime)
	return ts, m.HasAtime || m.HasMtime
}

// futimens sets the times of open file fd: utimensat(fd, NULL, ts, 0),
// which x/sys/unix does not wrap.
func futimens(fd int, ts *[2]unix.Timespec) error {
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
// attribute, on a plain connection.
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
	if uid, gid, ok := owners(m); ok {
		if err := j.Root().Chown(jail.Rel(p), uid, gid); err != nil {
			return c.refuse(verb, err, name)
		}
	}
	if mode, ok := c.setattrMode(m, peerproto.UnixBits(fi.Mode())); ok {
		if err := j.Root().Chmod(jail.Rel(p), peerproto.FileMode(mode)); err != nil {
			return c.refuse(verb, err, name)
		}
	}
	if m.HasMtime || m.HasAtime {
		// A zero time leaves that time as it is.
		if err := j.Root().Chtimes(jail.Rel(p), byNameTime(m.HasAtime, m.AtimeNow, m.Atime), byNameTime(m.HasMtime, m.MtimeNow, m.Mtime)); err != nil {
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

// byNameTime is a SETATTR time for os.Root.Chtimes: zero to leave it.
func byNameTime(has, now bool, ns int64) time.Time {
	switch {
	case !has:
		return time.Time{}
	case now:
		return time.Now()
	}
	return time.Unix(0, ns)
}
