package export

import (
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// list sends a directory's entries with their attributes in one reply:
// "LIST OK <count>" and count entry lines, sorted by name. Symbolic links
// that resolve inside the export are reported as their targets; links
// that escape or dangle, special files and temporary files are left out.
// A posix connection gets every entry but the reserved ones, as it is
// (listStrict).
func (c *conn) list(m peerproto.List) error {
	const verb = peerproto.VerbList
	j := c.s.jail
	p, err := j.Clean(m.Dir)
	if err != nil {
		return c.refuse(verb, err, m.Dir)
	}
	if c.posix {
		return c.listStrict(m, p)
	}
	// O_DIRECTORY: fail on a FIFO instead of blocking on it.
	d, err := j.Root().OpenFile(jail.Rel(p), os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Dir))
	}
	dirents, err := d.ReadDir(-1)
	if err != nil {
		d.Close()
		return c.refuse(verb, err, jail.Display(m.Dir))
	}
	// Kept open while the entries' version tokens are read (their
	// extended attributes, by name relative to it).
	defer d.Close()
	dfd := int(d.Fd())
	entries := make([]peerproto.Entry, 0, len(dirents))
	for _, de := range dirents {
		name := de.Name()
		if jail.Reserved(name) {
			continue
		}
		var fi fs.FileInfo
		src := fdSource(dfd, name)
		if de.Type()&fs.ModeSymlink != 0 {
			fi, err = j.Stat(path.Join(p, name))
			src = pathSource(j, path.Join(p, name))
		} else {
			fi, err = de.Info()
		}
		if err != nil {
			continue // gone since ReadDir, dangling, or escaping
		}
		if e, ok := entryOf(name, fi); ok {
			c.setVer(&e, fi, src)
			entries = append(entries, e)
		}
	}
	return c.sendEntries(m, entries)
}

// listStrict is LIST on a posix connection: the directory is opened
// through no symbolic link, and every entry but the reserved ones is
// listed as lstat(2) sees it, links with their targets.
func (c *conn) listStrict(m peerproto.List, p string) error {
	const verb = peerproto.VerbList
	// O_DIRECTORY: fail on a FIFO instead of blocking on it.
	fd, err := c.jail().Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Dir))
	}
	d := os.NewFile(uintptr(fd), jail.Display(p))
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Dir))
	}
	entries := make([]peerproto.Entry, 0, len(names))
	for _, name := range names {
		if jail.Reserved(name) {
			continue
		}
		e, err := c.entryAt(fd, name, path.Join(p, name))
		if err != nil {
			continue // gone since it was read
		}
		entries = append(entries, e)
	}
	return c.sendEntries(m, entries)
}

// entryAt returns the entry of name in directory dfd, whose path is p,
// as a posix connection sees it: not following a link, with its target.
func (c *conn) entryAt(dfd int, name, p string) (peerproto.Entry, error) {
	return c.s.posixEntryAt(dfd, name, p)
}

// posixEntryAt returns the entry of name in directory dfd, whose path is
// p, as a posix connection sees it: not following a link, with its
// target, and a regular file with its version token.
func (s *Server) posixEntryAt(dfd int, name, p string) (peerproto.Entry, error) {
	st, err := jail.StatAt(dfd, name, p)
	if err != nil {
		return peerproto.Entry{}, err
	}
	e := posixEntry(name, &st)
	switch e.Type {
	case peerproto.TypeSymlink:
		if e.Target, err = jail.ReadlinkAt(dfd, name, p); err != nil {
			return e, err
		}
		e.Has |= peerproto.AttrLink
	case peerproto.TypeFile:
		e.Ver = s.vers.of(verStatOf(&st), fdSource(dfd, name))
	}
	return e, nil
}

// sendEntries answers LIST m with entries.
func (c *conn) sendEntries(m peerproto.List, entries []peerproto.Entry) error {
	const verb = peerproto.VerbList
	// File.ReadDir returns directory order; the protocol promises names
	// sorted bytewise.
	slices.SortFunc(entries, func(a, b peerproto.Entry) int { return strings.Compare(a.Name, b.Name) })
	if len(entries) > peerproto.MaxListEntries {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeTooLarge,
			"directory %q has %d entries, more than the protocol's limit %d", jail.Display(m.Dir), len(entries), peerproto.MaxListEntries))
	}
	c.result = "ok"
	c.bytes = int64(len(entries))
	if err := peerproto.WriteMessage(c.w, peerproto.ListOK{Count: len(entries)}); err != nil {
		return err
	}
	var line []byte
	for _, e := range entries {
		line = append(peerproto.AppendEntry(line[:0], e), '\n')
		if _, err := c.w.Write(line); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// stat answers "STAT <name>" with the attributes of a file or directory;
// on a posix connection, of anything, not following a link.
func (c *conn) stat(m peerproto.Stat) error {
	const verb = peerproto.VerbStat
	p, err := c.s.jail.Clean(m.Name)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	if c.posix {
		e, err := c.entryOf(p)
		if err != nil {
			return c.refuse(verb, err, jail.Display(m.Name))
		}
		return c.send(peerproto.StatOK{Entry: e})
	}
	fi, err := c.s.jail.Visible(p)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Name))
	}
	e, _ := entryOf("", fi)
	c.setVer(&e, fi, pathSource(c.s.jail, p))
	return c.send(peerproto.StatOK{Entry: e})
}

// entryOf returns the entry (without its name) of clean path p as a
// posix connection sees it (the only kind that asks).
func (c *conn) entryOf(p string) (peerproto.Entry, error) {
	return c.s.posixEntryOf(p)
}

// setVer fills in e.Ver, the version token of the file with attributes fi
// (src gives it for reading its extended attribute), if the client asked
// for attribute words and it is a regular file.
func (c *conn) setVer(e *peerproto.Entry, fi fs.FileInfo, src xattrSource) {
	if !c.attrs || !fi.Mode().IsRegular() {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Ver = c.s.vers.of(verStatOfSys(st), src)
	}
}
