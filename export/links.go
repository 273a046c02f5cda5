package export

// The requests of whole-filesystem mode: SYMLINK, READLINK, LINK, MKNOD.
// Each works on its last element by name, relative to its directory,
// without following it: only the directories above it resolve by the
// connection's rules (through no link at all on a posix connection).

import (
	"io/fs"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// parent runs the checks of a request that creates name (writePath),
// then opens its directory. refused reports that a refusal was sent (err
// is then the send's error); otherwise the caller closes dfd with
// CloseDir.
func (c *conn) parent(verb, name string) (p string, dfd int, base string, refused bool, err error) {
	p, refused, err = c.writePath(verb, name)
	if refused {
		return "", -1, "", true, err
	}
	if p == "" {
		return "", -1, "", true, c.refuse(verb, peerproto.Fail(verb, peerproto.CodeExists, "the export root already exists"))
	}
	c.staleAfter(p)
	dir, base := jail.Split(p)
	dfd, err = c.jail().OpenDir(dir, false)
	if err != nil {
		return "", -1, "", true, c.refuse(verb, err, name)
	}
	return p, dfd, base, false, nil
}

// symlink creates a symbolic link: "SYMLINK <name> <target>". The target
// is stored as it is: the peer never resolves it.
func (c *conn) symlink(m peerproto.Symlink) error {
	const verb = peerproto.VerbSymlink
	p, dfd, base, refused, err := c.parent(verb, m.Name)
	if refused {
		return err
	}
	defer c.jail().CloseDir(dfd)
	if err := unix.Symlinkat(m.Target, dfd, base); err != nil {
		return c.refuse(verb, &fs.PathError{Op: "symlink", Path: p, Err: err}, m.Name)
	}
	return c.send(peerproto.OK{Of: verb})
}

// readlink answers "READLINK <name>" with the link's target.
func (c *conn) readlink(m peerproto.Readlink) error {
	const verb = peerproto.VerbReadlink
	j := c.jail()
	p, err := j.Clean(m.Name)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	target, err := j.Readlink(p)
	switch {
	case err == nil:
		return c.send(peerproto.ReadlinkOK{Target: target})
	case jail.BareError(err) == unix.EINVAL:
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeInvalid, "%q is not a symbolic link", jail.Display(m.Name)))
	}
	return c.refuse(verb, err, jail.Display(m.Name))
}

// link makes a hard link: "LINK <old> <new>". A symbolic link named by
// old is linked itself (linkat without AT_SYMLINK_FOLLOW).
func (c *conn) link(m peerproto.Link) error {
	const verb = peerproto.VerbLink
	j := c.jail()
	old, err := j.Clean(m.Old)
	if err != nil {
		return c.refuse(verb, err, m.Old)
	}
	if old == "" {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeDenied, "cannot link the export root"))
	}
	p, ndfd, nbase, refused, err := c.parent(verb, m.New)
	if refused {
		return err
	}
	defer j.CloseDir(ndfd)
	odir, obase := jail.Split(old)
	odfd, err := j.OpenDir(odir, false)
	if err != nil {
		return c.refuse(verb, err, m.Old)
	}
	defer j.CloseDir(odfd)
	pre := c.versionBefore(old) // its token, kept across the link
	for {
		err = unix.Linkat(odfd, obase, ndfd, nbase, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		if err == unix.ENOENT {
			if _, serr := jail.StatAt(odfd, obase, old); serr != nil {
				return c.refuse(verb, serr, m.Old)
			}
		}
		return c.refuse(verb, &fs.PathError{Op: "link", Path: p, Err: err}, m.New)
	}
	if st, err := jail.StatAt(ndfd, nbase, p); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		// Only its ctime moved: the content keeps its version token,
		// a derived one too (as after a RENAME, renamed).
		c.s.vers.moved(verStatOf(&st), pre)
	}
	return c.send(peerproto.OK{Of: verb})
}

// mknod creates a special file: "MKNOD <name> p|s <mode>", or a device
// "MKNOD <name> c|b <mode> <major> <minor>" if the peer allows them
// (AllowDevices). The mode arrives exactly, as MKDIR's does.
func (c *conn) mknod(m peerproto.Mknod) error {
	const verb = peerproto.VerbMknod
	if m.IsDevice() && !c.s.opts.AllowDevices {
		if ok, err := c.writable(verb); !ok {
			return err
		}
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeDenied,
			"this peer does not create device nodes (it runs without --allow-devices): %q", m.Name))
	}
	p, dfd, base, refused, err := c.parent(verb, m.Name)
	if refused {
		return err
	}
	defer c.jail().CloseDir(dfd)
	mode := c.s.clientMode(m.Mode)
	var dev uint64
	switch m.Type {
	case peerproto.TypeFIFO:
		mode |= unix.S_IFIFO
	case peerproto.TypeSocket:
		mode |= unix.S_IFSOCK
	case peerproto.TypeCharDevice:
		mode |= unix.S_IFCHR
		dev = unix.Mkdev(m.Major, m.Minor)
	case peerproto.TypeBlockDevice:
		mode |= unix.S_IFBLK
		dev = unix.Mkdev(m.Major, m.Minor)
	default:
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeInvalid, "type %q is not p, s, c or b", m.Type))
	}
	if err := unix.Mknodat(dfd, base, mode&^0o7000, int(dev)); err != nil {
		return c.refuse(verb, &fs.PathError{Op: "mknod", Path: p, Err: err}, m.Name)
	}
	if err := exactMode(dfd, base, p, mode&0o7777); err != nil {
		return c.refuse(verb, err, m.Name)
	}
	return c.send(peerproto.OK{Of: verb})
}
