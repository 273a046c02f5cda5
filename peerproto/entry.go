package peerproto

// A file's attributes as LIST and STAT carry them, and the versions that
// tell its contents apart.

import "strconv"

// Entry type letters. A plain connection sees files and directories
// only; one that turned on FeaturePosix sees every kind.
const (
	TypeFile        = 'f'
	TypeDir         = 'd'
	TypeSymlink     = 'l' // a symbolic link (FeaturePosix)
	TypeFIFO        = 'p' // a named pipe (FeaturePosix)
	TypeSocket      = 's' // a UNIX socket (FeaturePosix)
	TypeCharDevice  = 'c' // a character device (FeaturePosix)
	TypeBlockDevice = 'b' // a block device (FeaturePosix)
)

// ValidType reports whether c is one of the entry type letters.
func ValidType(c byte) bool {
	switch c {
	case TypeFile, TypeDir, TypeSymlink, TypeFIFO, TypeSocket, TypeCharDevice, TypeBlockDevice:
		return true
	}
	return false
}

// Entry is a file's attributes, as carried by LIST and STAT. In a LIST it
// travels as its own line: "<type> <mode> <size> <mtime> <name>",
// followed by attribute words ("ver=<token>", and on a FeaturePosix
// connection "ino=<n>" and the others of Attr) on a connection that
// turned on FeatureAttrs.
type Entry struct {
	Name  string // base name in a LIST; empty in STAT
	Type  byte   // one of the Type letters: TypeFile or TypeDir unless FeaturePosix
	Mode  uint32 // permission bits (07777)
	Size  int64
	Mtime int64 // nanoseconds since the Unix epoch
	// Ver is the peer's version token of a regular file's content
	// (FeatureAttrs): two different contents of a file never share one,
	// even where the filesystem keeps whole-second times. Empty if the
	// peer did not say.
	Ver string

	// Has says which of the attributes below the peer gave (the
	// attribute words of a FeaturePosix connection): a field whose bit
	// is clear is unknown, not zero.
	Has    Attr
	Ino    uint64 // inode number on the peer (AttrIno): hard links share it
	Nlink  uint64 // link count (AttrNlink)
	Uid    uint32 // owner (AttrUid)
	Gid    uint32 // group (AttrGid)
	Atime  int64  // access time, ns since the Unix epoch (AttrAtime)
	Ctime  int64  // change time, ns since the Unix epoch (AttrCtime)
	Blocks int64  // 512-byte blocks allocated (AttrBlocks)
	// Target is a symbolic link's target (AttrLink), as the link holds
	// it: bytes, not a path of the export.
	Target string
	// RdevMajor and RdevMinor name the device of a TypeCharDevice or
	// TypeBlockDevice (AttrRdev).
	RdevMajor, RdevMinor uint32
}

// Attr is a set of Entry's whole-filesystem attributes, one bit per
// attribute word.
type Attr uint16

// Entry attributes, each carried by one attribute word.
const (
	AttrIno    Attr = 1 << iota // ino=<n>
	AttrNlink                   // nlink=<n>
	AttrUid                     // uid=<n>
	AttrGid                     // gid=<n>
	AttrAtime                   // atime=<ns>
	AttrCtime                   // ctime=<ns>
	AttrBlocks                  // blocks=<n>
	AttrLink                    // link=<encoded target>
	AttrRdev                    // rdev=<major>,<minor>
)

// IsDir reports whether e is a directory.
func (e Entry) IsDir() bool { return e.Type == TypeDir }

// IsRegular reports whether e is a regular file.
func (e Entry) IsRegular() bool { return e.Type == TypeFile }

// Version returns the version of e's content: its token if the peer gave
// one, else its modification time.
func (e Entry) Version() Version { return versionOf(e.Ver, e.Mtime) }

// Version names one content of a file on its peer, as a writer's
// condition (Put.SetCond) and as the validator of a cached copy: "v" and
// the peer's token (Entry.Ver), or, from a peer that gives no tokens,
// "m" and the modification time in ns. NoVersion is unknown (no
// condition), VersionNone "no file".
type Version string

// Versions with a meaning of their own.
const (
	NoVersion   Version = ""
	VersionNone Version = "none"
)

func versionOf(token string, mtime int64) Version {
	if token != "" {
		return Version("v" + token)
	}
	return MtimeVersion(mtime)
}

// MtimeVersion is the version of a file known only by its modification
// time (ns).
func MtimeVersion(mtime int64) Version {
	return Version("m" + strconv.FormatInt(mtime, 10))
}

// IsToken reports whether v is a peer's version token.
func (v Version) IsToken() bool { return len(v) > 1 && v[0] == 'v' }

// Token returns v's token, or "".
func (v Version) Token() string {
	if v.IsToken() {
		return string(v[1:])
	}
	return ""
}

// Mtime returns the modification time v is, if it is one.
func (v Version) Mtime() (int64, bool) {
	if len(v) < 2 || v[0] != 'm' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v[1:]), 10, 64)
	return n, err == nil
}

// ValidVersionToken reports whether s may be a version token on the wire:
// 1 to 64 lower-case hex digits.
func ValidVersionToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
