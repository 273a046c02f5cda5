package peerproto

// Limits every implementation enforces. A line, name or size beyond them is a
// protocol error; nothing is ever allocated in proportion to a size that the
// other side merely announced.
const (
	// MaxLine is the longest line accepted, terminator included: room
	// for two names of MaxName bytes, each escaped in full (RENAME, LINK).
	MaxLine = 128 << 10
	// MaxName is the longest decoded path, in bytes. It is four times
	// Linux's PATH_MAX: that limit is per system call, not per depth, and
	// a mount hands a peer paths from its export root, which may lie
	// deeper than PATH_MAX below it.
	MaxName = 16384
	// MaxComponent is the longest single path element, in bytes.
	MaxComponent = 255
	// MaxTarget is the longest decoded symbolic link target, in bytes
	// (Linux PATH_MAX less its NUL).
	MaxTarget = 4095
	// MaxSize is the largest file size or byte count a message may carry.
	MaxSize = 1 << 50
	// MaxPeerName is the longest peer name.
	MaxPeerName = 64
	// MaxListEntries is the largest entry count a LIST reply may announce.
	MaxListEntries = 1 << 20
	// MaxPeers is the most peers a cluster has: the most registrations
	// a tracker admits and the most entries of an UPDATE or a PEERS
	// list (an UPDATE is bounded by MaxLine first).
	MaxPeers = 10000
	// MaxRanges is the most ranges a delta PUT may carry: with the
	// longest offsets and lengths (34 bytes each) and the longest name
	// escaped in full, the line stays below MaxLine.
	MaxRanges = 1024
)
