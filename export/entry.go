package export

import (
	"io/fs"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

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
	e.Mode = peerproto.UnixBits(fi.Mode())
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

// posixEntry converts lstat's attributes to a protocol entry of a posix
// connection: any kind of file, with every attribute word but the link's
// target (which takes a readlink: see linkEntry) and the version token.
func posixEntry(name string, st *unix.Stat_t) peerproto.Entry {
	e := peerproto.Entry{
		Name:  name,
		Type:  typeOf(st.Mode),
		Mode:  st.Mode & 0o7777,
		Size:  st.Size,
		Mtime: st.Mtim.Nano(),
		Has: peerproto.AttrIno | peerproto.AttrNlink | peerproto.AttrUid | peerproto.AttrGid |
			peerproto.AttrAtime | peerproto.AttrCtime | peerproto.AttrBlocks,
		Ino:    st.Ino,
		Nlink:  uint64(st.Nlink),
		Uid:    st.Uid,
		Gid:    st.Gid,
		Atime:  st.Atim.Nano(),
		Ctime:  st.Ctim.Nano(),
		Blocks: st.Blocks,
	}
	if e.Type == peerproto.TypeCharDevice || e.Type == peerproto.TypeBlockDevice {
		e.Has |= peerproto.AttrRdev
		e.RdevMajor, e.RdevMinor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	}
	return e
}

// typeOf returns the entry type letter of a stat mode.
func typeOf(mode uint32) byte {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return peerproto.TypeDir
	case unix.S_IFLNK:
		return peerproto.TypeSymlink
	case unix.S_IFIFO:
		return peerproto.TypeFIFO
	case unix.S_IFSOCK:
		return peerproto.TypeSocket
	case unix.S_IFCHR:
		return peerproto.TypeCharDevice
	case unix.S_IFBLK:
		return peerproto.TypeBlockDevice
	}
	return peerproto.TypeFile
}
