package export

// The namespace requests: DELETE, RMDIR, MKDIR, RENAME, STATFS, FSYNC.

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"syscall"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// delete removes a file (or a symbolic link to one): "DELETE <name>".
// A regular file costs a stat and an unlink relative to its directory;
// links and anything unusual take the general path, through the jail.
// On a posix connection anything but a directory goes the first way.
func (c *conn) delete(m peerproto.Delete) error {
	const verb = peerproto.VerbDelete
	j := c.jail()
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	c.staleAfter(p)
	if c.posix {
		return c.deleteStrict(m, p)
	}
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

// deleteStrict is DELETE on a posix connection: anything but a
// directory, by its name in its directory, which is opened through no
// symbolic link.
func (c *conn) deleteStrict(m peerproto.Delete, p string) error {
	const verb = peerproto.VerbDelete
	if p == "" {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "the export root is a directory (use RMDIR)"))
	}
	j := c.jail()
	dir, base := jail.Split(p)
	dfd, err := j.OpenDir(dir, false)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	defer j.CloseDir(dfd)
	st, err := jail.StatAt(dfd, base, p)
	switch {
	case err != nil:
		return c.refuse(verb, err, m.Name)
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "%q is a directory (use RMDIR)", m.Name))
	}
	if err := unix.Unlinkat(dfd, base, 0); err != nil {
		return c.refuse(verb, &fs.PathError{Op: "unlink", Path: p, Err: err}, m.Name)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		c.s.vers.forget(verStatOf(&st)) // its inode number may come back
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
	if c.posix {
		return c.rmdirStrict(m, p)
	}
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

// rmdirStrict is RMDIR on a posix connection: by its name in its
// directory, which is opened through no symbolic link.
func (c *conn) rmdirStrict(m peerproto.Rmdir, p string) error {
	const verb = peerproto.VerbRmdir
	j := c.jail()
	dir, base := jail.Split(p)
	dfd, err := j.OpenDir(dir, false)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	defer j.CloseDir(dfd)
	st, err := jail.StatAt(dfd, base, p)
	switch {
	case err != nil:
		return c.refuse(verb, err, m.Name)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotDir, "%q is not a directory (use DELETE)", m.Name))
	}
	if err := unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR); err != nil {
		if err == unix.EEXIST {
			err = unix.ENOTEMPTY
		}
		return c.refuse(verb, &fs.PathError{Op: "rmdir", Path: p, Err: err}, m.Name)
	}
	return c.send(peerproto.OK{Of: verb})
}

// mkdir creates a directory: "MKDIR <name> [<mode>]", mode 0755 by
// default. The mode arrives exactly: bits the peer's umask took are
// given back with a chmod, as are setuid, setgid and sticky bits, which
// mkdir(2) does not take (setuid and setgid only with AllowSetuid). A
// setgid bit the new directory inherits from a setgid parent stays: that
// is the export owner's choice, as with a local mkdir.
func (c *conn) mkdir(m peerproto.Mkdir) error {
	const verb = peerproto.VerbMkdir
	j := c.jail()
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	if p == "" {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeExists, "the export root already exists"))
	}
	if m.HasOwner && !c.s.opts.Owners {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeDenied,
			"this peer does not store owners (it runs without --owners): cannot make %q with an owner", jail.Display(m.Name)))
	}
	mode := c.s.clientMode(m.Mode)
	if m.Mode == 0 {
		mode = 0o755
	}
	c.staleAfter(p)
	dir, base := jail.Split(p)
	if c.posix {
		dfd, err := j.OpenDir(dir, false)
		if err != nil {
			return c.refuse(verb, err, m.Name)
		}
		defer j.CloseDir(dfd)
		if err := unix.Mkdirat(dfd, base, mode&0o777); err != nil {
			return c.refuse(verb, &fs.PathError{Op: "mkdir", Path: p, Err: err}, m.Name)
		}
		if m.HasOwner {
			if err := ownNewDir(m, dfd, dir, base, p); err != nil {
				return c.refuse(verb, err, m.Name)
			}
		}
		if err := exactMode(dfd, base, p, mode); err != nil {
			return c.refuse(verb, err, m.Name)
		}
		return c.send(peerproto.OK{Of: verb})
	}
	if err := j.Root().Mkdir(p, fs.FileMode(mode&0o777)); err != nil {
		return c.refuse(verb, err, m.Name)
	}
	if m.HasOwner {
		d, err := j.Root().Open(cmp.Or(dir, "."))
		if err == nil {
			err = ownNewDir(m, int(d.Fd()), dir, base, p)
			d.Close()
		}
		if err != nil {
			return c.refuse(verb, err, m.Name)
		}
	}
	fi, err := j.Root().Lstat(p)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	if want := mode | peerproto.UnixBits(fi.Mode())&unix.S_ISGID; peerproto.UnixBits(fi.Mode()) != want {
		if err := j.Root().Chmod(p, peerproto.FileMode(want)); err != nil {
			return c.refuse(verb, err, m.Name)
		}
	}
	return c.send(peerproto.OK{Of: verb})
}

// ownNewDir gives base in directory dfd (dir; path p), a directory just
// made for m (m.HasOwner), the owner m names, and m's group unless dir is
// setgid: then it keeps dir's, which mkdir(2) gave it, as on a local
// disk. If it cannot, it removes the directory again (rmdir: never a
// file put at the name meanwhile): not made.
func ownNewDir(m peerproto.Mkdir, dfd int, dir, base, p string) error {
	st, err := jail.Fstat(dfd, dir)
	if err == nil {
		gid := int(m.Gid)
		if st.Mode&unix.S_ISGID != 0 {
			gid = -1
		}
		if err = unix.Fchownat(dfd, base, int(m.Uid), gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			err = &fs.PathError{Op: "chown", Path: p, Err: err}
		}
	}
	if err != nil {
		unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR)
	}
	return err
}

// exactMode gives base in directory dfd (path p), just created with
// permission bits mode, exactly those bits if the umask took some or
// mode has bits the creating call ignores; a directory keeps a setgid
// bit it inherited. It never follows a symbolic link: the chmod goes
// through an O_PATH descriptor of what the name holds.
func exactMode(dfd int, base, p string, mode uint32) error {
	fd, err := unix.Openat(dfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	st, err := jail.Fstat(fd, p)
	if err != nil {
		return err
	}
	want := mode
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return nil // replaced meanwhile: not ours to change
	case unix.S_IFDIR:
		want |= st.Mode & unix.S_ISGID
	}
	if st.Mode&0o7777 == want {
		return nil
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, fdPath(fd, ""), want, 0); err != nil {
		return &fs.PathError{Op: "chmod", Path: p, Err: err}
	}
	return nil
}

// rename renames a file or directory, atomically replacing an existing
// target file: "RENAME <from> <to>".
func (c *conn) rename(m peerproto.Rename) error {
	const verb = peerproto.VerbRename
	if ok, err := c.writable(verb); !ok {
		return err
	}
	j := c.jail()
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
	pre := c.versionBefore(from)
	done, err := j.RenameAt(from, to)
	switch {
	case done:
		c.renamed(to, pre)
		return c.send(peerproto.OK{Of: verb})
	case c.posix:
		// The Strict view's answer is final: there is no general path
		// that would follow links.
		name := m.From
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) && pe.Path == path.Dir(to) {
			name = m.To // its directory could not be reached
		}
		code, text, _ := jail.Explain(name, err)
		if !errors.Is(err, jail.ErrSymlink) {
			text = fmt.Sprintf("cannot rename %q to %q: %v", m.From, m.To, jail.BareError(err))
		}
		return c.refuse(verb, &peerproto.FailError{Verb: verb, Code: code, Text: text})
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
	c.renamed(to, pre)
	return c.send(peerproto.OK{Of: verb})
}

// versionBefore returns the attributes of the regular file at from (zero
// if it is none), having made sure the version table knows its token: a
// RENAME keeps it (renamed), so that what a client knew of the file
// before holds after, and its next conditional upload is not refused.
func (c *conn) versionBefore(from string) verStat {
	st, err := c.jail().StatLink(from)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return verStat{}
	}
	vs := verStatOf(&st)
	c.s.vers.of(vs, pathSource(c.jail(), from))
	return vs
}

// renamed records that this server just renamed the file now at to,
// whose attributes before were pre: the rename changed its ctime only, so
// its token still holds (versions.moved), whether the server gave it
// (without extended attributes nothing else could confirm it, and an
// editor's save, a new file renamed over the old, would end with a token
// its writer never saw: a conflict with itself at its next save) or
// derived it from the attributes (a file the peer's owner put there: its
// derived token would change with the ctime, and a client that renamed
// it would find its next upload refused as a conflict).
func (c *conn) renamed(to string, pre verStat) {
	if st, err := c.jail().StatLink(to); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		c.s.vers.moved(verStatOf(&st), pre)
	}
}

// fsync makes everything stored in the export durable (syncfs(2) on the
// export's filesystem): "FSYNC OK". It is how an async PUT becomes as
// durable as the seed's PUT.
func (c *conn) fsync(m peerproto.Fsync) error {
	const verb = peerproto.VerbFsync
	j := c.jail()
	all := len(m.Names) == 0
	dirs := map[string]bool{}
	// Files first, their data written out before any fsync, then
	// directories: the first fsync then commits every file's data and
	// every pending change of the filesystem's journal (ext4, xfs:
	// renames and new entries included) at once, and the fsyncs after it
	// find nothing left to commit. Otherwise each could cost a commit of
	// its own: a directory named first (they sort before the files in
	// them), or a file whose delayed allocation happens only at its own
	// fsync, after a commit that another file's fsync forced.
	type opened struct {
		fd      int
		p, name string
	}
	var files, named []opened // named directories: synced after the files
	var ids []verID           // the files and directories named
	defer func() {
		for _, o := range append(files, named...) {
			unix.Close(o.fd)
		}
	}()
	for _, name := range m.Names {
		p, err := j.Clean(name)
		if err != nil {
			return c.refuse(verb, err, name)
		}
		// O_NOFOLLOW: a PUT through a symbolic link stored the file in
		// the link's target's directory, which this would not sync. The
		// Strict view opens no device or FIFO a client may have made.
		var fd int
		if c.posix {
			fd, _, err = j.OpenFile(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
		} else {
			fd, err = j.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_NOFOLLOW)
		}
		if err != nil {
			// Renamed or removed since it was stored, a link, or not
			// readable by this peer (mode 0200): wherever its bytes are
			// now, syncfs reaches them.
			all = true
			continue
		}
		st, err := jail.Fstat(fd, p)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(fd) // a FIFO or device now: nothing of ours to fsync by name
			all = true
			continue
		}
		ids = append(ids, verID{uint64(st.Dev), st.Ino})
		dir, _ := jail.Split(p)
		dirs[dir] = true // the directory entry must be durable too
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			named = append(named, opened{fd, p, name})
		} else {
			files = append(files, opened{fd, p, name})
		}
	}
	for _, o := range files {
		// Only a head start: the fsync below reports what fails.
		_ = unix.SyncFileRange(o.fd, 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	}
	for _, o := range append(files, named...) {
		if err := unix.Fsync(o.fd); err != nil {
			return c.refuse(verb, &fs.PathError{Op: "fsync", Path: o.p, Err: err}, o.name)
		}
	}
	for _, o := range named {
		// Synced already: an fsync even of nothing may cost the disk a
		// cache flush (ext4 issues one when the commit was earlier).
		delete(dirs, o.p)
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
	// A change in place ends after its PUT DONE (endInPlace): waited
	// for, and its failure answered here if this FSYNC covers its file.
	if err := c.s.settled(ids, all); err != nil {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIO, "%v", err))
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
