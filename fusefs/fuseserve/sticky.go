package fuseserve

// bazil.org/fuse's Attr cannot carry the sticky bit (S_ISVTX): it sends
// a mode's permission, setuid and setgid bits only. A directory's sticky
// bit is what makes the kernel refuse to let one user delete another's
// files in it (as in /tmp), so the server writes the few answers whose
// attributes have it itself, in the kernel's layout (linux/fuse.h, the
// protocol 7.17 and later that bazil negotiates: fuse_out_header, then
// fuse_entry_out or fuse_attr_out, and for CREATE fuse_open_out), on
// the device the connection reads (Options.Device). Every other answer
// goes through bazil, as before.

import (
	"encoding/binary"
	"os"
	"syscall"
	"time"

	"bazil.org/fuse"
)

// Sizes of the kernel's structures.
const (
	outHeaderSize = 16 // fuse_out_header: len, error, unique
	attrSize      = 88 // fuse_attr
	entryOutSize  = 40 + attrSize
	attrOutSize   = 16 + attrSize
	openOutSize   = 16
)

// stickyReply returns the whole answer to req, whose response is resp,
// if its attributes have the sticky bit; ok is false for every other
// answer (bazil's Respond sends those).
func stickyReply(req fuse.Request, resp any) (msg []byte, ok bool) {
	var entry *fuse.LookupResponse
	var attr *fuse.Attr
	var open *fuse.OpenResponse
	switch r := resp.(type) {
	case *fuse.LookupResponse: // LOOKUP, MKNOD, LINK
		entry = r
	case *fuse.MkdirResponse:
		entry = &r.LookupResponse
	case *fuse.CreateResponse:
		entry, open = &r.LookupResponse, &r.OpenResponse
	case *fuse.GetattrResponse:
		attr = &r.Attr
	case *fuse.SetattrResponse:
		attr = &r.Attr
	default:
		return nil, false
	}
	if entry != nil {
		attr = &entry.Attr
	}
	if attr.Mode&os.ModeSticky == 0 {
		return nil, false
	}
	ne := binary.NativeEndian
	b := make([]byte, outHeaderSize, outHeaderSize+entryOutSize+openOutSize)
	ne.PutUint64(b[8:], uint64(req.Hdr().ID))
	if entry != nil {
		b = ne.AppendUint64(b, uint64(entry.Node))
		b = ne.AppendUint64(b, entry.Generation)
		b = ne.AppendUint64(b, uint64(entry.EntryValid/time.Second))
		b = ne.AppendUint64(b, uint64(attr.Valid/time.Second))
		b = ne.AppendUint32(b, uint32(entry.EntryValid%time.Second))
		b = ne.AppendUint32(b, uint32(attr.Valid%time.Second))
	} else {
		b = ne.AppendUint64(b, uint64(attr.Valid/time.Second))
		b = ne.AppendUint32(b, uint32(attr.Valid%time.Second))
		b = ne.AppendUint32(b, 0)
	}
	b = appendAttr(b, attr)
	if open != nil {
		b = ne.AppendUint64(b, uint64(open.Handle))
		b = ne.AppendUint32(b, uint32(open.Flags))
		b = ne.AppendUint32(b, 0)
	}
	ne.PutUint32(b[0:], uint32(len(b)))
	return b, true
}

// appendAttr appends a's fuse_attr, the sticky bit included.
func appendAttr(b []byte, a *fuse.Attr) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint64(b, a.Inode)
	b = ne.AppendUint64(b, a.Size)
	b = ne.AppendUint64(b, a.Blocks)
	var nsecs [3]uint32
	for i, t := range []time.Time{a.Atime, a.Mtime, a.Ctime} {
		sec, nsec := t.Unix(), t.Nanosecond() // nsec in [0, 1e9), also before 1970
		b = ne.AppendUint64(b, uint64(sec))
		nsecs[i] = uint32(nsec)
	}
	for _, n := range nsecs {
		b = ne.AppendUint32(b, n)
	}
	b = ne.AppendUint32(b, unixMode(a.Mode))
	b = ne.AppendUint32(b, a.Nlink)
	b = ne.AppendUint32(b, a.Uid)
	b = ne.AppendUint32(b, a.Gid)
	b = ne.AppendUint32(b, a.Rdev)
	b = ne.AppendUint32(b, a.BlockSize)
	return ne.AppendUint32(b, 0) // flags
}

// unixMode is m as st_mode: type, permissions, setuid, setgid, sticky.
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	switch {
	case m&os.ModeDir != 0:
		u |= syscall.S_IFDIR
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice != 0:
		u |= syscall.S_IFCHR
	case m&os.ModeDevice != 0:
		u |= syscall.S_IFBLK
	case m&os.ModeNamedPipe != 0:
		u |= syscall.S_IFIFO
	case m&os.ModeSymlink != 0:
		u |= syscall.S_IFLNK
	case m&os.ModeSocket != 0:
		u |= syscall.S_IFSOCK
	default:
		u |= syscall.S_IFREG
	}
	if m&os.ModeSetuid != 0 {
		u |= syscall.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		u |= syscall.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		u |= syscall.S_ISVTX
	}
	return u
}
