package peerproto

// A file's attributes as LIST and STAT carry them, and the versions that
// tell its contents apart.

import "strconv"

// Entry type letters.
const (
	TypeFile = 'f'
	TypeDir  = 'd'
)

// Entry is a file or directory's attributes, as carried by LIST and STAT.
// In a LIST it travels as its own line: "<type> <mode> <size> <mtime> <name>",
// followed by attribute words ("ver=<token>") on a connection that turned
// on FeatureAttrs.
type Entry struct {
	Name  string // base name in a LIST; empty in STAT
	Type  byte   // TypeFile or TypeDir
	Mode  uint32 // permission bits (07777)
	Size  int64
	Mtime int64 // nanoseconds since the Unix epoch
	// Ver is the peer's version token of a regular file's content
	// (FeatureAttrs): two different contents of a file never share one,
	// even where the filesystem keeps whole-second times. Empty if the
	// peer did not say.
	Ver string
}

// IsDir reports whether e is a directory.
func (e Entry) IsDir() bool { return e.Type == TypeDir }

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
