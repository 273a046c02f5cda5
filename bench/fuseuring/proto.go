package main

// The FUSE protocol as far as this experiment needs it: a root directory
// and nothing in it. Layouts are those of include/uapi/linux/fuse.h
// (checked against the kernel source, see README.md).

import (
	"encoding/binary"
	"syscall"
)

var ne = binary.NativeEndian

const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opStatfs      = 17
	opInit        = 26
	opOpendir     = 27
	opReaddir     = 28
	opReleasedir  = 29
	opInterrupt   = 36
	opDestroy     = 38
	opBatchForget = 42
	opReaddirplus = 44

	inHeaderSize  = 40 // fuse_in_header
	outHeaderSize = 16 // fuse_out_header

	// INIT flags (fuse_init_in.flags / flags2).
	initBigWrites = 1 << 5
	initExt       = 1 << 30 // FUSE_INIT_EXT: flags2 is meaningful
	// FUSE_OVER_IO_URING is 1ULL<<41: bit 9 of flags2.
	init2OverIOUring = 1 << (41 - 32)

	maxWrite = 128 << 10
)

// Precomputed answers (the file system never changes).
var (
	rootAttrOut = func() []byte { // fuse_attr_out: 16 + fuse_attr(88)
		b := make([]byte, 104)
		ne.PutUint64(b[0:], 60) // attr_valid (s)
		a := b[16:]
		ne.PutUint64(a[0:], 1)                      // ino
		ne.PutUint32(a[60:], syscall.S_IFDIR|0o755) // mode
		ne.PutUint32(a[64:], 2)                     // nlink
		ne.PutUint32(a[80:], 4096)                  // blksize
		return b
	}()
	statfsOut = func() []byte { // fuse_statfs_out (fuse_kstatfs)
		b := make([]byte, 80)
		ne.PutUint32(b[40:], 4096) // bsize
		ne.PutUint32(b[44:], 255)  // namelen
		ne.PutUint32(b[48:], 4096) // frsize
		return b
	}()
	openOut = make([]byte, 16) // fuse_open_out: fh 0
)

// handle answers one request: the errno (negative, or 0) and the payload
// after the out header. noReply is true for the requests the kernel
// expects no answer to.
func handle(opcode uint32, nodeid uint64) (errno int32, out []byte, noReply bool) {
	switch opcode {
	case opLookup:
		return -int32(syscall.ENOENT), nil, false
	case opGetattr:
		if nodeid == 1 {
			return 0, rootAttrOut, false
		}
		return -int32(syscall.ENOENT), nil, false
	case opStatfs:
		return 0, statfsOut, false
	case opOpendir:
		return 0, openOut, false
	case opReaddir, opReaddirplus:
		return 0, nil, false // an empty listing: end of directory
	case opReleasedir:
		return 0, nil, false
	case opForget, opBatchForget, opInterrupt:
		return 0, nil, true
	case opDestroy:
		return 0, nil, false
	}
	return -int32(syscall.ENOSYS), nil, false
}
