package export

import (
	"io/fs"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// modeBits converts a FileMode to the Unix permission bits (07777) the
// protocol carries.
func modeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// fileMode converts protocol permission bits to a FileMode.
func fileMode(b uint32) fs.FileMode {
	m := fs.FileMode(b & 0o777)
	if b&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if b&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if b&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// entryOf converts attributes to a protocol entry; ok is false for
// anything but a regular file or a directory.
func entryOf(name string, fi fs.FileInfo) (e peerproto.Entry, ok bool) {
	switch {
	case fi.Mode().IsRegular():
		e.Type = peerproto.TypeFile
	case fi.IsDir():
		e.Type = peerproto.TypeDir
	default:
		return e, false
	}
	e.Name = name
	e.Mode = modeBits(fi.Mode())
	e.Size = fi.Size()
	e.Mtime = fi.ModTime().UnixNano()
	return e, true
}

// statEntry converts fstat's attributes to a protocol entry; ok is
// false for anything but a regular file or a directory.
func statEntry(st *unix.Stat_t) (e peerproto.Entry, ok bool) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type = peerproto.TypeFile
	case unix.S_IFDIR:
		e.Type = peerproto.TypeDir
	default:
		return e, false
	}
	e.Mode = st.Mode & 0o7777
	e.Size = st.Size
	e.Mtime = st.Mtim.Nano()
	return e, true
}
