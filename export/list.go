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
)

// list sends a directory's entries with their attributes in one reply:
// "LIST OK <count>" and count entry lines, sorted by name. Symbolic links
// that resolve inside the export are reported as their targets; links
// that escape or dangle, special files and temporary files are left out.
func (c *conn) list(m peerproto.List) error {
	const verb = peerproto.VerbList
	j := c.s.jail
	p, err := j.Clean(m.Dir)
	if err != nil {
		return c.refuse(verb, err, m.Dir)
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

// stat answers "STAT <name>" with the attributes of a file or directory.
func (c *conn) stat(m peerproto.Stat) error {
	const verb = peerproto.VerbStat
	p, err := c.s.jail.Clean(m.Name)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	fi, err := c.s.jail.Visible(p)
	if err != nil {
		return c.refuse(verb, err, jail.Display(m.Name))
	}
	e, _ := entryOf("", fi)
	c.setVer(&e, fi, pathSource(c.s.jail, p))
	return c.send(peerproto.StatOK{Entry: e})
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
