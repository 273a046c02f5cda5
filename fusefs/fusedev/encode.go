package fusedev

import (
	"time"

	"bazil.org/fuse"
)

// appendEntry appends fuse_entry_out for r.
func appendEntry(b []byte, r *fuse.LookupResponse) []byte {
	var e [entryOutSize]byte
	ne.PutUint64(e[0:], uint64(r.Node))
	ne.PutUint64(e[8:], r.Generation)
	es, ens := validity(r.EntryValid)
	as, ans := validity(r.Attr.Valid)
	ne.PutUint64(e[16:], es)
	ne.PutUint64(e[24:], as)
	ne.PutUint32(e[32:], ens)
	ne.PutUint32(e[36:], ans)
	putAttr(e[40:], &r.Attr)
	return append(b, e[:]...)
}

// appendAttrOut appends fuse_attr_out for a.
func appendAttrOut(b []byte, a *fuse.Attr) []byte {
	var o [attrOutSize]byte
	s, ns := validity(a.Valid)
	ne.PutUint64(o[0:], s)
	ne.PutUint32(o[8:], ns)
	putAttr(o[16:], a)
	return append(b, o[:]...)
}

// appendOpen appends fuse_open_out for r.
func appendOpen(b []byte, r *fuse.OpenResponse) []byte {
	var o [openOutSize]byte
	ne.PutUint64(o[0:], uint64(r.Handle))
	ne.PutUint32(o[8:], uint32(r.Flags))
	return append(b, o[:]...)
}

// appendStatfs appends fuse_statfs_out for r.
func appendStatfs(b []byte, r *fuse.StatfsResponse) []byte {
	var o [statfsOutSize]byte
	ne.PutUint64(o[0:], r.Blocks)
	ne.PutUint64(o[8:], r.Bfree)
	ne.PutUint64(o[16:], r.Bavail)
	ne.PutUint64(o[24:], r.Files)
	ne.PutUint64(o[32:], r.Ffree)
	ne.PutUint32(o[40:], r.Bsize)
	ne.PutUint32(o[44:], r.Namelen)
	ne.PutUint32(o[48:], r.Frsize)
	return append(b, o[:]...)
}

// validity is a cache timeout as the kernel takes it: seconds and
// nanoseconds. A negative one is none.
func validity(d time.Duration) (uint64, uint32) {
	if d <= 0 {
		return 0, 0
	}
	return uint64(d / time.Second), uint32(d % time.Second)
}

// putAttr writes fuse_attr for a into b (attrSize bytes).
func putAttr(b []byte, a *fuse.Attr) {
	ne.PutUint64(b[0:], a.Inode)
	ne.PutUint64(b[8:], a.Size)
	ne.PutUint64(b[16:], a.Blocks)
	ne.PutUint64(b[24:], uint64(a.Atime.Unix()))
	ne.PutUint64(b[32:], uint64(a.Mtime.Unix()))
	ne.PutUint64(b[40:], uint64(a.Ctime.Unix()))
	ne.PutUint32(b[48:], uint32(a.Atime.Nanosecond()))
	ne.PutUint32(b[52:], uint32(a.Mtime.Nanosecond()))
	ne.PutUint32(b[56:], uint32(a.Ctime.Nanosecond()))
	ne.PutUint32(b[60:], kernelMode(a.Mode))
	ne.PutUint32(b[64:], a.Nlink)
	ne.PutUint32(b[68:], a.Uid)
	ne.PutUint32(b[72:], a.Gid)
	ne.PutUint32(b[76:], a.Rdev)
	ne.PutUint32(b[80:], a.BlockSize)
	ne.PutUint32(b[84:], uint32(a.Flags)&fattrSubmount)
}

// DirentplusSize is how many bytes AppendDirentplus appends for an entry
// named name.
func DirentplusSize(name string) int {
	return entryOutSize + direntSize + (len(name)+alignDirentEntry-1)&^(alignDirentEntry-1)
}

// AppendDirentplus appends one entry of a READDIRPLUS answer: what a
// LOOKUP of d.Name would answer (entry; nil for none: the kernel then
// looks the name up itself when it needs it, as it must for "." and
// "..", which it never counts as lookups), then the entry itself with
// off, the offset the kernel sends back to continue after it.
//
// Every entry answered with a NodeID counts as one lookup of that node,
// as a LOOKUP's answer does, whether or not it fitted in the caller's
// buffer: the kernel takes them all.
func AppendDirentplus(b []byte, entry *fuse.LookupResponse, d fuse.Dirent, off uint64) []byte {
	if entry != nil {
		b = appendEntry(b, entry)
	} else {
		var none [entryOutSize]byte
		b = append(b, none[:]...)
	}
	var h [direntSize]byte
	ne.PutUint64(h[0:], d.Inode)
	ne.PutUint64(h[8:], off)
	ne.PutUint32(h[16:], uint32(len(d.Name)))
	ne.PutUint32(h[20:], uint32(d.Type))
	b = append(b, h[:]...)
	b = append(b, d.Name...)
	if pad := (alignDirentEntry - len(d.Name)%alignDirentEntry) % alignDirentEntry; pad > 0 {
		var zeros [alignDirentEntry]byte
		b = append(b, zeros[:pad]...)
	}
	return b
}
