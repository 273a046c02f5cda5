package fusedev

// The kernel's side of the protocol: opcodes, flags and the sizes of its
// structures at protocol 7.33 (linux/fuse.h). Every structure is read and
// written field by field in native byte order, at the offsets its comment
// gives.

// Protocol versions.
const (
	protoMajor    = 7
	protoMinor    = 33 // what this package speaks
	protoMinMinor = 31 // the oldest kernel it accepts: same layouts
)

// Opcodes (enum fuse_opcode).
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opSetattr     = 4
	opReadlink    = 5
	opSymlink     = 6
	opMknod       = 8
	opMkdir       = 9
	opUnlink      = 10
	opRmdir       = 11
	opRename      = 12
	opLink        = 13
	opOpen        = 14
	opRead        = 15
	opWrite       = 16
	opStatfs      = 17
	opRelease     = 18
	opFsync       = 20
	opSetxattr    = 21
	opGetxattr    = 22
	opListxattr   = 23
	opRemovexattr = 24
	opFlush       = 25
	opInit        = 26
	opOpendir     = 27
	opReaddir     = 28
	opReleasedir  = 29
	opFsyncdir    = 30
	opAccess      = 34
	opCreate      = 35
	opInterrupt   = 36
	opDestroy     = 38
	opPoll        = 40
	opNotifyReply = 41
	opBatchForget = 42
	opReaddirplus = 44
)

// INIT flags (FUSE_*), the ones this package knows.
const (
	initAsyncRead       = 1 << 0
	initAtomicOTrunc    = 1 << 3
	initBigWrites       = 1 << 5
	initDoReaddirplus   = 1 << 13
	initReaddirplusAuto = 1 << 14
	initAsyncDIO        = 1 << 15 // not asked for: see Conn.init
	initParallelDirops  = 1 << 18
	initMaxPages        = 1 << 22
	initKillprivV2      = 1 << 28 // FUSE_HANDLE_KILLPRIV_V2: see Config.KillPriv
	initSetxattrExt     = 1 << 29
)

// Notification codes (enum fuse_notify_code).
const (
	notifyInvalInode = 2
	notifyInvalEntry = 3
	// expireOnly is FUSE_EXPIRE_ONLY, a flag of notifyInvalEntry: the
	// entry is marked out of date, not dropped.
	expireOnly = 1
)

// Sizes of the structures, in bytes.
const (
	inHeaderSize     = 40 // len u32, opcode u32, unique u64, nodeid u64, uid, gid, pid u32, total_extlen u16, padding u16
	outHeaderSize    = 16 // len u32, error i32, unique u64
	attrSize         = 88 // fuse_attr
	entryOutSize     = 40 + attrSize
	attrOutSize      = 16 + attrSize
	openOutSize      = 16 // fh u64, open_flags u32, padding u32
	writeOutSize     = 8
	statfsOutSize    = 80
	getxattrOutSize  = 8
	initOutSize      = 64
	initInSize       = 16 // major, minor, max_readahead, flags (u32 each); more follows with FUSE_INIT_EXT
	direntSize       = 24 // ino u64, off u64, namelen u32, type u32, then the name
	forgetInSize     = 8
	getattrInSize    = 16
	setattrInSize    = 88
	mknodInSize      = 16
	mkdirInSize      = 8
	renameInSize     = 8
	linkInSize       = 8
	openInSize       = 8
	readInSize       = 40
	writeInSize      = 40
	releaseInSize    = 24
	fsyncInSize      = 16
	setxattrInSize   = 8
	setxattrExtSize  = 16 // with FUSE_SETXATTR_EXT
	getxattrInSize   = 8
	flushInSize      = 24
	accessInSize     = 8
	createInSize     = 16
	interruptInSize  = 8
	batchForgetSize  = 8
	forgetOneSize    = 16
	invalInodeSize   = 24
	invalEntrySize   = 16 // parent, namelen, flags (padding before 7.38)
	maxWriteDefault  = 128 << 10
	bufferOverhead   = 4096 // a request's header and fixed part, beyond its data
	maxNameLen       = 1024 // FUSE_NAME_MAX
	fattrSubmount    = 1 << 0
	pageSize         = 4096
	maxKernelPages   = 256
	alignDirentEntry = 8
)
