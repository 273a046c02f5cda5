package fusedev

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"

	"bazil.org/fuse"
)

// ne is the byte order of every structure: the machine's own.
var ne = binary.NativeEndian

// inHeader is fuse_in_header.
type inHeader struct {
	length   uint32
	opcode   uint32
	unique   uint64
	nodeid   uint64
	uid, gid uint32
	pid      uint32
}

// header decodes the header msg starts with (at least inHeaderSize bytes).
func header(msg []byte) inHeader {
	return inHeader{
		length: ne.Uint32(msg[0:]),
		opcode: ne.Uint32(msg[4:]),
		unique: ne.Uint64(msg[8:]),
		nodeid: ne.Uint64(msg[16:]),
		uid:    ne.Uint32(msg[24:]),
		gid:    ne.Uint32(msg[28:]),
		pid:    ne.Uint32(msg[32:]),
	}
}

func (h inHeader) bazil() fuse.Header {
	return fuse.Header{ID: fuse.RequestID(h.unique), Node: fuse.NodeID(h.nodeid), Uid: h.uid, Gid: h.gid, Pid: h.pid}
}

// ReaddirplusRequest is a READDIRPLUS: a READ of a directory whose answer
// carries, for each entry, what a LOOKUP of it would answer (see
// AppendDirentplus). Offset is the Offset of the last entry the kernel
// took from the previous answer (0 for the first).
type ReaddirplusRequest struct {
	fuse.ReadRequest
}

// String describes the request, for logs.
func (r *ReaddirplusRequest) String() string {
	return fmt.Sprintf("Readdirplus [%s] %v %d @%d", &r.Header, r.Handle, r.Size, r.Offset)
}

// BadRequest is a request this package could not decode: its fixed part
// is shorter than its opcode's, or a name lacks its terminating NUL.
// Answer it with an error (EIO).
type BadRequest struct {
	fuse.Header
	Opcode uint32
	Reason string
}

var _ fuse.Request = (*BadRequest)(nil)

// String describes the request and what is wrong with it, for logs.
func (r *BadRequest) String() string {
	return fmt.Sprintf("BadRequest [%s] opcode %d: %s", &r.Header, r.Opcode, r.Reason)
}

// RespondError does nothing: answer through Conn.ReplyError.
func (r *BadRequest) RespondError(error) {}

// decode turns the body b of a request with header h into a request. The
// request may keep b (a WRITE's Data does) and nothing else of it.
func (c *Conn) decode(h inHeader, b []byte) fuse.Request {
	hdr := h.bazil()
	bad := func(reason string) fuse.Request {
		return &BadRequest{Header: hdr, Opcode: h.opcode, Reason: reason}
	}
	short := func(size int) bool { return len(b) < size }
	switch h.opcode {
	case opLookup:
		name, ok := cstring(b)
		if !ok {
			return bad("name not terminated")
		}
		return &fuse.LookupRequest{Header: hdr, Name: name}
	case opForget:
		if short(forgetInSize) {
			return bad("short forget_in")
		}
		return &fuse.ForgetRequest{Header: hdr, N: ne.Uint64(b)}
	case opBatchForget:
		if short(batchForgetSize) {
			return bad("short batch_forget_in")
		}
		count := int(ne.Uint32(b))
		b = b[batchForgetSize:]
		if len(b) < count*forgetOneSize {
			return bad("short batch_forget_in list")
		}
		items := make([]fuse.BatchForgetItem, count)
		for i := range items {
			one := b[i*forgetOneSize:]
			items[i] = fuse.BatchForgetItem{NodeID: fuse.NodeID(ne.Uint64(one)), N: ne.Uint64(one[8:])}
		}
		return &fuse.BatchForgetRequest{Header: hdr, Forget: items}
	case opGetattr:
		if short(getattrInSize) {
			return bad("short getattr_in")
		}
		return &fuse.GetattrRequest{Header: hdr, Flags: fuse.GetattrFlags(ne.Uint32(b)), Handle: fuse.HandleID(ne.Uint64(b[8:]))}
	case opSetattr:
		if short(setattrInSize) {
			return bad("short setattr_in")
		}
		return &fuse.SetattrRequest{
			Header: hdr,
			Valid:  fuse.SetattrValid(ne.Uint32(b[0:])),
			Handle: fuse.HandleID(ne.Uint64(b[8:])),
			Size:   ne.Uint64(b[16:]),
			Atime:  time.Unix(int64(ne.Uint64(b[32:])), int64(ne.Uint32(b[56:]))),
			Mtime:  time.Unix(int64(ne.Uint64(b[40:])), int64(ne.Uint32(b[60:]))),
			Ctime:  time.Unix(int64(ne.Uint64(b[48:])), int64(ne.Uint32(b[64:]))),
			Mode:   fileMode(ne.Uint32(b[68:])),
			Uid:    ne.Uint32(b[76:]),
			Gid:    ne.Uint32(b[80:]),
		}
	case opReadlink:
		return &fuse.ReadlinkRequest{Header: hdr}
	case opSymlink:
		name, rest, ok := cstring2(b)
		if !ok {
			return bad("names not terminated")
		}
		return &fuse.SymlinkRequest{Header: hdr, NewName: name, Target: rest}
	case opLink:
		if short(linkInSize) {
			return bad("short link_in")
		}
		name, ok := cstring(b[linkInSize:])
		if !ok {
			return bad("name not terminated")
		}
		return &fuse.LinkRequest{Header: hdr, OldNode: fuse.NodeID(ne.Uint64(b)), NewName: name}
	case opMknod:
		if short(mknodInSize) {
			return bad("short mknod_in")
		}
		name, ok := cstring(b[mknodInSize:])
		if !ok {
			return bad("name not terminated")
		}
		return &fuse.MknodRequest{Header: hdr, Name: name, Mode: fileMode(ne.Uint32(b)), Rdev: ne.Uint32(b[4:]),
			Umask: fileMode(ne.Uint32(b[8:])) & os.ModePerm}
	case opMkdir:
		if short(mkdirInSize) {
			return bad("short mkdir_in")
		}
		name, ok := cstring(b[mkdirInSize:])
		if !ok {
			return bad("name not terminated")
		}
		// The kernel sends the mode without its type.
		mode := ne.Uint32(b)&^syscall.S_IFMT | syscall.S_IFDIR
		return &fuse.MkdirRequest{Header: hdr, Name: name, Mode: fileMode(mode), Umask: fileMode(ne.Uint32(b[4:])) & os.ModePerm}
	case opUnlink, opRmdir:
		name, ok := cstring(b)
		if !ok {
			return bad("name not terminated")
		}
		return &fuse.RemoveRequest{Header: hdr, Name: name, Dir: h.opcode == opRmdir}
	case opRename:
		if short(renameInSize) {
			return bad("short rename_in")
		}
		oldName, newName, ok := cstring2(b[renameInSize:])
		if !ok {
			return bad("names not terminated")
		}
		return &fuse.RenameRequest{Header: hdr, NewDir: fuse.NodeID(ne.Uint64(b)), OldName: oldName, NewName: newName}
	case opOpen, opOpendir:
		if short(openInSize) {
			return bad("short open_in")
		}
		return &fuse.OpenRequest{Header: hdr, Dir: h.opcode == opOpendir, Flags: openFlags(ne.Uint32(b)),
			OpenFlags: fuse.OpenRequestFlags(ne.Uint32(b[4:]))}
	case opRead, opReaddir, opReaddirplus:
		if short(readInSize) {
			return bad("short read_in")
		}
		r := fuse.ReadRequest{
			Header:    hdr,
			Dir:       h.opcode != opRead,
			Handle:    fuse.HandleID(ne.Uint64(b[0:])),
			Offset:    int64(ne.Uint64(b[8:])),
			Size:      int(ne.Uint32(b[16:])),
			Flags:     fuse.ReadFlags(ne.Uint32(b[20:])),
			LockOwner: fuse.LockOwner(ne.Uint64(b[24:])),
			FileFlags: openFlags(ne.Uint32(b[32:])),
		}
		if h.opcode == opReaddirplus {
			return &ReaddirplusRequest{ReadRequest: r}
		}
		return &r
	case opWrite:
		if short(writeInSize) {
			return bad("short write_in")
		}
		size := ne.Uint32(b[16:])
		data := b[writeInSize:]
		if uint64(len(data)) < uint64(size) {
			return bad("write data shorter than its size")
		}
		return &fuse.WriteRequest{
			Header:    hdr,
			Handle:    fuse.HandleID(ne.Uint64(b[0:])),
			Offset:    int64(ne.Uint64(b[8:])),
			Data:      data[:size],
			Flags:     fuse.WriteFlags(ne.Uint32(b[20:])),
			LockOwner: fuse.LockOwner(ne.Uint64(b[24:])),
			FileFlags: openFlags(ne.Uint32(b[32:])),
		}
	case opStatfs:
		return &fuse.StatfsRequest{Header: hdr}
	case opRelease, opReleasedir:
		if short(releaseInSize) {
			return bad("short release_in")
		}
		return &fuse.ReleaseRequest{Header: hdr, Dir: h.opcode == opReleasedir, Handle: fuse.HandleID(ne.Uint64(b)),
			Flags: openFlags(ne.Uint32(b[8:])), ReleaseFlags: fuse.ReleaseFlags(ne.Uint32(b[12:])),
			LockOwner: fuse.LockOwner(ne.Uint64(b[16:]))}
	case opFsync, opFsyncdir:
		if short(fsyncInSize) {
			return bad("short fsync_in")
		}
		return &fuse.FsyncRequest{Header: hdr, Dir: h.opcode == opFsyncdir, Handle: fuse.HandleID(ne.Uint64(b)), Flags: ne.Uint32(b[8:])}
	case opSetxattr:
		size := setxattrInSize
		if c.flags&initSetxattrExt != 0 {
			size = setxattrExtSize
		}
		if short(size) {
			return bad("short setxattr_in")
		}
		name, rest, ok := cstringRest(b[size:])
		vlen := ne.Uint32(b)
		if !ok || uint64(len(rest)) < uint64(vlen) {
			return bad("name not terminated or value short")
		}
		r := &fuse.SetxattrRequest{Header: hdr, Name: name, Flags: ne.Uint32(b[4:]), Xattr: bytes.Clone(rest[:vlen])}
		if size == setxattrExtSize {
			r.SetxattrFlags = fuse.SetxattrFlags(ne.Uint32(b[8:]))
		}
		return r
	case opGetxattr:
		if short(getxattrInSize) {
			return bad("short getxattr_in")
		}
		name, ok := cstring(b[getxattrInSize:])
		if !ok {
			return bad("name not terminated")
		}
		return &fuse.GetxattrRequest{Header: hdr, Name: name, Size: ne.Uint32(b)}
	case opListxattr:
		if short(getxattrInSize) {
			return bad("short getxattr_in")
		}
		return &fuse.ListxattrRequest{Header: hdr, Size: ne.Uint32(b)}
	case opRemovexattr:
		name, ok := cstring(b)
		if !ok {
			return bad("name not terminated")
		}
		return &fuse.RemovexattrRequest{Header: hdr, Name: name}
	case opFlush:
		if short(flushInSize) {
			return bad("short flush_in")
		}
		return &fuse.FlushRequest{Header: hdr, Handle: fuse.HandleID(ne.Uint64(b)), LockOwner: fuse.LockOwner(ne.Uint64(b[16:]))}
	case opAccess:
		if short(accessInSize) {
			return bad("short access_in")
		}
		return &fuse.AccessRequest{Header: hdr, Mask: ne.Uint32(b)}
	case opCreate:
		if short(createInSize) {
			return bad("short create_in")
		}
		name, ok := cstring(b[createInSize:])
		if !ok {
			return bad("name not terminated")
		}
		return &fuse.CreateRequest{Header: hdr, Name: name, Flags: openFlags(ne.Uint32(b)), Mode: fileMode(ne.Uint32(b[4:])),
			Umask: fileMode(ne.Uint32(b[8:])) & os.ModePerm}
	case opInterrupt:
		if short(interruptInSize) {
			return bad("short interrupt_in")
		}
		return &fuse.InterruptRequest{Header: hdr, IntrID: fuse.RequestID(ne.Uint64(b))}
	case opDestroy:
		return &fuse.DestroyRequest{Header: hdr}
	case opNotifyReply:
		return &fuse.NotifyReply{Header: hdr}
	case opPoll:
		return &fuse.PollRequest{Header: hdr}
	}
	return &fuse.UnrecognizedRequest{Header: hdr, Opcode: h.opcode}
}

// cstring is the NUL-terminated string b holds, with nothing after it.
func cstring(b []byte) (string, bool) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return "", false
	}
	i := bytes.IndexByte(b, 0)
	return string(b[:i]), true
}

// cstringRest is the NUL-terminated string b starts with, and the rest.
func cstringRest(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// cstring2 is the two NUL-terminated strings b holds.
func cstring2(b []byte) (string, string, bool) {
	first, rest, ok := cstringRest(b)
	if !ok {
		return "", "", false
	}
	second, ok := cstring(rest)
	return first, second, ok
}

// openFlags is the open(2) flags of a request, without O_LARGEFILE, which
// the kernel adds on 64-bit machines and means nothing to a filesystem.
func openFlags(f uint32) fuse.OpenFlags {
	return fuse.OpenFlags(f &^ oLargefile)
}

// modePair is a bit (or bits) of os.FileMode and the kernel's mode bits
// for the same thing.
type modePair struct {
	fs os.FileMode
	k  uint32
}

// modeTypes pairs the file types of os.FileMode with the kernel's, in
// the order kernelMode tries them (a character device is a device too).
// A regular file has no bits in os.FileMode.
var modeTypes = []modePair{
	{os.ModeDir, syscall.S_IFDIR},
	{os.ModeSymlink, syscall.S_IFLNK},
	{os.ModeNamedPipe, syscall.S_IFIFO},
	{os.ModeSocket, syscall.S_IFSOCK},
	{os.ModeDevice | os.ModeCharDevice, syscall.S_IFCHR},
	{os.ModeDevice, syscall.S_IFBLK},
}

// modeBits pairs the setuid, setgid and sticky bits of both.
var modeBits = []modePair{
	{os.ModeSetuid, syscall.S_ISUID},
	{os.ModeSetgid, syscall.S_ISGID},
	{os.ModeSticky, syscall.S_ISVTX},
}

// fileMode is a kernel mode (type and permission bits) as an os.FileMode.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if t := m & syscall.S_IFMT; t != syscall.S_IFREG {
		typ := os.ModeIrregular // no type given (SETATTR's mode, often), or one unknown
		for _, mt := range modeTypes {
			if mt.k == t {
				typ = mt.fs
				break
			}
		}
		mode |= typ
	}
	for _, b := range modeBits {
		if m&b.k != 0 {
			mode |= b.fs
		}
	}
	return mode
}

// kernelMode is m as the kernel's mode: type, permission, setuid, setgid
// and sticky bits.
func kernelMode(m os.FileMode) uint32 {
	typ := uint32(syscall.S_IFREG)
	for _, mt := range modeTypes {
		if m&mt.fs == mt.fs {
			typ = mt.k
			break
		}
	}
	k := typ | uint32(m.Perm())
	for _, b := range modeBits {
		if m&b.fs != 0 {
			k |= b.k
		}
	}
	return k
}
