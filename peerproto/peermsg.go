package peerproto

// The messages of a peer connection: a client's requests and the peer's
// replies.

import (
	"errors"
	"fmt"
	"strings"
)

// ---- peer <-> peer requests ----

// Put announces an upload of Size bytes that follow the "PUT OK" reply:
// "PUT <name> <size>" (the seed's form: the file is fsynced before it is
// renamed into place) or "PUT <name> <size> async" (renamed into place
// without waiting for the disk; a later FSYNC makes it durable).
//
// "base=<mtime>" makes the PUT conditional: the peer stores it only if
// the file it replaces still has that modification time (ns), and
// "base=none" only if there is no file yet; otherwise it refuses with
// "PUT FAIL conflict". A writer uses it so that it never silently
// replaces a version it has not seen.
//
// "inline" (Inline) sends the payload right after the request line,
// without waiting for "PUT OK": one round trip instead of two. The peer
// then answers only "PUT DONE" or "PUT FAIL", and reads (and drops) the
// payload even when it refuses, so the connection stays in step. A peer
// that predates inline refuses the line as invalid and would read the
// payload as requests: after any "PUT FAIL invalid" to an inline PUT the
// client closes the connection.
//
// "ver=<token>" (Ver) makes it conditional on the peer's version token
// instead (see Entry.Ver): the file must still be that version. At most
// one of base= and ver= is given.
//
// "delta=<size> [ranges=<off>:<len>,...]" (Delta, with FeatureDelta)
// sends only what changed: the new content is the version named by ver=
// (required) resized to NewSize, zero-filled where it grows, with the
// bytes of Ranges written in. The payload is those bytes, range after
// range, so Size is the sum of their lengths. Ranges are in increasing
// order, apart (no overlap, none touching the next), non-empty, within
// NewSize, and at most MaxRanges of them; with none it is a pure resize.
//
// "stream" (Stream, with FeatureStream) sends the content in DATA chunks
// ended by END, its size unknown when it starts (stream.go).
//
// The new content keeps the mode of the file it replaces (0644 for a new
// file) but never its setuid and setgid bits, as a write by a process
// without CAP_FSETID leaves them, unless "setid" (Setid, with
// FeatureSetid) says the writer may keep them and the peer allows them
// (--allow-setuid): then they are those of the file when the content is
// complete, set before it takes the name.
type Put struct {
	Name   string
	Size   int64
	Async  bool
	Inline bool   // the payload follows the request line at once; no PUT OK
	Base   int64  // BaseAny (no condition), BaseNone, or the expected mtime
	Ver    string // the expected version token; "" for none (then Base applies)

	Delta   bool    // the payload is Ranges of the new content (FeatureDelta)
	NewSize int64   // with Delta: the size of the new content
	Ranges  []Range // with Delta: where the payload's bytes go

	// Stream: the payload's size is not known yet; it comes in DATA
	// chunks ended by END (FeatureStream, stream.go). Size is then an
	// estimate the peer checks free space for up front (0: none).
	// Neither Inline nor Delta.
	Stream bool

	// Setid (FeatureSetid): the writer may keep the setuid and setgid
	// bits of the file the content replaces (it has CAP_FSETID: root on
	// the client); honoured where the peer allows them (--allow-setuid).
	Setid bool
}

// Range is Len bytes of a file from offset Off.
type Range struct {
	Off, Len int64
}

// End returns the offset just past r.
func (r Range) End() int64 { return r.Off + r.Len }

// CheckDelta reports what is wrong with m's delta form, if anything: the
// rules of Put's delta= and ranges= (ParsePeerRequest applies them).
func (m Put) CheckDelta() error {
	if !m.Delta {
		return nil
	}
	if m.Ver == "" {
		return errors.New("delta= needs ver=<token>, the version it applies to")
	}
	if m.NewSize < 0 || m.NewSize > MaxSize {
		return fmt.Errorf("delta size %d is not within 0 and %d", m.NewSize, int64(MaxSize))
	}
	if len(m.Ranges) > MaxRanges {
		return fmt.Errorf("%d ranges, more than %d", len(m.Ranges), MaxRanges)
	}
	var sum, end int64
	for i, r := range m.Ranges {
		switch {
		case r.Len <= 0 || r.Off < 0:
			return fmt.Errorf("range %d:%d is empty or negative", r.Off, r.Len)
		case i > 0 && r.Off <= end:
			return fmt.Errorf("range %d:%d does not start after the one before it ends (%d)", r.Off, r.Len, end)
		case r.Len > m.NewSize || r.Off > m.NewSize-r.Len:
			return fmt.Errorf("range %d:%d ends past the new size %d", r.Off, r.Len, m.NewSize)
		}
		end = r.End()
		sum += r.Len
	}
	if sum != m.Size {
		return fmt.Errorf("the ranges hold %d bytes, the payload is %d", sum, m.Size)
	}
	return nil
}

// SetCond makes m conditional on v, the version the writer started from:
// NoVersion (unconditional), VersionNone (only create), or a version
// read from an Entry.
func (m *Put) SetCond(v Version) {
	m.Base, m.Ver = BaseAny, ""
	switch {
	case v == VersionNone:
		m.Base = BaseNone
	case v.IsToken():
		m.Ver = v.Token()
	default:
		if mt, ok := v.Mtime(); ok && mt > 0 {
			m.Base = mt
		}
	}
}

// Conditions of a Put.
const (
	BaseAny  int64 = 0  // replace whatever is there
	BaseNone int64 = -1 // only create: refuse if the file exists
)

// Fsync asks the peer to make files it stored durable: "FSYNC" for
// everything on its filesystem (syncfs), "FSYNC <name>..." for the named
// files and their directories; answered "FSYNC OK".
type Fsync struct {
	Names []string
}

// Get asks for a file: "GET <name>" for the whole file, or
// "GET <name> <offset> <length>" for a range. The seed's two-argument form
// "GET <name> <length>" reads length bytes from offset 0.
type Get struct {
	Name   string
	Offset int64
	Length int64 // -1: to end of file
}

// List asks for a directory's entries with attributes: "LIST [<dir>]".
type List struct {
	Dir string
}

// Stat asks for one entry's attributes: "STAT <name>".
type Stat struct {
	Name string
}

// Delete removes a file: "DELETE <name>".
type Delete struct {
	Name string
}

// Rename renames a file or directory, atomically replacing an existing
// target file: "RENAME <from> <to>".
type Rename struct {
	From, To string
}

// Mkdir creates a directory: "MKDIR <name> [<mode>] [uid=N gid=N]".
// With uid= and gid= (a peer that advertises FeatureMkdirOwner) the
// directory is made with that owner, and with that group unless its
// parent is setgid (then the parent's, as mkdir(2) gives it); if the
// owner cannot be set, the directory is not made.
type Mkdir struct {
	Name     string
	Mode     uint32 // permission bits; 0 means the server default (0755)
	HasOwner bool   // Uid and Gid are given
	Uid, Gid uint32
}

// Rmdir removes an empty directory: "RMDIR <name>".
type Rmdir struct {
	Name string
}

// Setattr changes attributes: "SETATTR <name> [size=N] [mode=OOOO]
// [mtime=NS|now] [atime=NS|now] [uid=N] [gid=N]". "now" is the peer's
// clock (utimensat's UTIME_NOW). uid= and gid= are served only by a peer
// that advertises FeatureOwners. On a FeaturePosix connection, times and
// owners of a symbolic link apply to the link itself.
type Setattr struct {
	Name     string
	HasSize  bool
	Size     int64
	HasMode  bool
	Mode     uint32
	HasMtime bool
	Mtime    int64 // nanoseconds since the Unix epoch
	MtimeNow bool  // mtime=now (HasMtime is set too; Mtime is 0)
	HasAtime bool
	Atime    int64 // nanoseconds since the Unix epoch
	AtimeNow bool  // atime=now (HasAtime is set too; Atime is 0)
	HasUid   bool
	Uid      uint32
	HasGid   bool
	Gid      uint32
}

// Verbs of the whole-filesystem requests (FeaturePosix), served on every
// peer connection.
const (
	VerbSymlink  = "SYMLINK"
	VerbReadlink = "READLINK"
	VerbLink     = "LINK"
	VerbMknod    = "MKNOD"
)

// Symlink creates a symbolic link: "SYMLINK <name> <target>", answered
// "SYMLINK OK". Target is encoded like a name but is not a path of the
// export: any bytes but NUL, 1 to MaxTarget of them, never resolved by
// the peer.
type Symlink struct {
	Name, Target string
}

// Readlink asks for a symbolic link's target: "READLINK <name>",
// answered by ReadlinkOK.
type Readlink struct {
	Name string
}

// Link makes New a hard link to Old, both in the export: "LINK <old>
// <new>", answered "LINK OK". A link named by Old is linked itself, not
// followed.
type Link struct {
	Old, New string
}

// Mknod creates a special file: "MKNOD <name> <type> <mode>" for a FIFO
// (TypeFIFO) or a socket (TypeSocket), "MKNOD <name> <type> <mode>
// <major> <minor>" for a device (TypeCharDevice, TypeBlockDevice, served
// only by a peer that advertises FeatureDevices); answered "MKNOD OK".
type Mknod struct {
	Name         string
	Type         byte   // TypeFIFO, TypeSocket, TypeCharDevice or TypeBlockDevice
	Mode         uint32 // permission bits (07777)
	Major, Minor uint32 // devices only
}

// IsDevice reports whether m creates a device node.
func (m Mknod) IsDevice() bool { return m.Type == TypeCharDevice || m.Type == TypeBlockDevice }

// Statfs asks for the export's space: "STATFS".
type Statfs struct{}

// Features asks which protocol extensions the other side serves.
//
// On a peer connection it is the bare "FEATURES", answered by FeaturesOK
// with every extension the peer serves; a peer that predates it answers
// "FEATURES FAIL unsupported ...": no extensions beyond the verbs.
//
// "FEATURES <word>..." also names extensions the sender wants on this
// connection. On a peer connection, those that change the peer's replies
// (FeatureAttrs) are turned on for the rest of the connection; a peer
// that predates the words refuses them with "FEATURES FAIL invalid": to
// the client, no extensions. On the tracker connection the tracker
// answers with FeaturesOK naming those it will use; a tracker that
// predates it answers "FEATURES FAIL invalid ...": none. Nothing changes
// for a sender that does not ask.
type Features struct {
	Words []string
}

// Ping is a keepalive, answered by Pong: "PING".
type Ping struct{}

// Pong answers Ping: "PONG".
type Pong struct{}

// Quit ends the session politely: "QUIT".
type Quit struct{}

// ---- peer <-> peer replies ----

// ReadlinkOK carries a symbolic link's target: "READLINK OK <target>",
// the target encoded as in Symlink.
type ReadlinkOK struct {
	Target string
}

// FeaturesOK lists the extensions a peer serves: "FEATURES OK [<word>...]",
// e.g. "FEATURES OK inline" (PUT ... inline). To a client that turned on
// FeatureAttrs it ends in attribute words too: "id=<hex>", the identity
// of the peer's export.
type FeaturesOK struct {
	Words []string
	ID    string // the export's identity (1-64 lower-case hex digits); "" if not told
}

// Has reports whether the list names word.
func (m FeaturesOK) Has(word string) bool {
	for _, w := range m.Words {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

// FeatureInline is the FeaturesOK word of PUT's inline option.
const FeatureInline = "inline"

// FeatureDelta is the FeaturesOK word of PUT's delta= form (Put.Delta):
// only the changed ranges of a file cross the wire.
const FeatureDelta = "delta"

// FeatureFsyncFiles is the FeaturesOK word of FSYNC with names.
const FeatureFsyncFiles = "fsync-files"

// FeatureAttrs is the FeaturesOK word of attribute words: once a client
// sent "FEATURES attrs", the peer's STAT OK, SETATTR OK, PUT DONE and LIST
// entry lines on that connection end in "<key>=<value>" words
// ("ver=<token>": Entry.Ver; with FeaturePosix, those of Attr too).
// Receivers ignore keys they do not know.
const FeatureAttrs = "attrs"

// FeaturePosix is the FeaturesOK word of whole-filesystem mode: once a
// client sent "FEATURES posix" (which implies FeatureAttrs), the peer
// follows no symbolic link in any element of a path on that connection
// (a path through one is refused with CodeLoop), lists and stats every
// kind of entry (Entry.Type) as lstat(2) sees it, and ends entries in the
// attribute words of Attr. Nothing changes for a connection that does not
// ask.
const FeaturePosix = "posix"

// FeatureOwners is the FeaturesOK word of a peer that stores and reports
// owners as they are: SETATTR uid= and gid= are served (lchown). Without
// it they are refused with CodeDenied.
const FeatureOwners = "owners"

// FeatureMkdirOwner is the FeaturesOK word of MKDIR's uid= and gid=
// (Mkdir.HasOwner), served by a peer that keeps owners (FeatureOwners):
// a directory made with its creator's owner in one request, not a MKDIR
// and a SETATTR that could leave it the peer's own.
const FeatureMkdirOwner = "mkdir-owner"

// FeatureSetid is the FeaturesOK word of a peer that keeps setuid and
// setgid bits (--allow-setuid) and takes PUT's "setid" (Put.Setid): a
// PUT's new content keeps those of the file it replaces only with it. (A
// peer that does not say it stores a PUT's new content without them,
// "setid" or not, unless it predates the word.)
const FeatureSetid = "setid"

// FeatureKeepOwner is the FeaturesOK word of a peer that keeps owners
// (FeatureOwners) and gives new content that a PUT stores over a regular
// file the owner and group of the file it replaces, before the content
// takes the name: as a write to the file on a local disk leaves them. A
// client then sends no SETATTR uid= gid= after the PUT to give the file
// its owner back (which would leave the file the peer's own for a moment,
// and for good if it never arrives, and clear its setuid bits). Its
// setuid and setgid bits are as Put.Setid says.
const FeatureKeepOwner = "keep-owner"

// FeatureDevices is the FeaturesOK word of a peer that creates device
// nodes (MKNOD of TypeCharDevice and TypeBlockDevice). Without it they are
// refused with CodeDenied: a device node planted in an export is root on
// that machine.
const FeatureDevices = "devices"

// FeatureReadOnly is the FeaturesOK word of a peer whose export is
// read-only: it refuses every request that would change it (CodeReadOnly).
// A client knows before it asks, and does not acknowledge a change it
// would otherwise send later (a removal written behind).
const FeatureReadOnly = "readonly"

// FeatureLeft is the tracker's Features word of the Left event: a peer
// that asks for it is told how each peer left (LEFT <name> quit|dropped).
const FeatureLeft = "left"

// Left tells a peer that asked for it (FeatureLeft) how an advertised
// peer's registration ended, just before the UPDATE that no longer lists
// it: "LEFT <name> quit" when the peer said QUIT (it left on purpose),
// "LEFT <name> dropped" when the tracker lost it (its connection closed or
// went silent, its writes stalled). A registration replaced by the same
// peer restarting at the same address is not a leave.
type Left struct {
	Name string
	How  string // LeftQuit or LeftDropped; a receiver reads any other word as LeftDropped
}

// How a peer left (Left.How).
const (
	LeftQuit    = "quit"
	LeftDropped = "dropped"
)

// Quit reports whether the peer left on purpose.
func (m Left) Quit() bool { return m.How == LeftQuit }

// ConnectOK greets a new connection: "CONNECT OK".
type ConnectOK struct{}

// PutOK accepts a PUT; the payload follows: "PUT OK".
type PutOK struct{}

// PutDone is the final word on a PUT: the bytes are stored intact, fsynced
// and visible under the final name: "PUT DONE <size> <mtime>".
//
// With FeatureAttrs on, "PUT DONE <size> <mtime> ver=<token>": the
// stored file's version token (Entry.Ver). With FeaturePosix on, the
// attribute words of the stored file as it is under its name after the
// PUT (ino=, nlink=, uid=, gid=, atime=, ctime=, blocks=) come before
// it: Attrs, whose Has says which were given (a peer that predates them
// gives none).
type PutDone struct {
	Size  int64
	Mtime int64
	Ver   string
	// Attrs are the attribute words given (Has, and the fields it
	// names); its other fields are unset.
	Attrs Entry
	// DirTimes (with FeaturePosix): the times of the file's directory
	// after the PUT, "dir-mtime=<ns> dir-ctime=<ns>": a new file, or
	// new content renamed over the file, changed them.
	DirTimes           bool
	DirMtime, DirCtime int64
	// PreDirTimes (with FeaturePosix): the directory's times right
	// before the PUT changed it, "pre-dir-mtime=<ns> pre-dir-ctime=<ns>".
	PreDirTimes              bool
	PreDirMtime, PreDirCtime int64
}

// Version returns the version of the stored file (see Entry.Version).
func (m PutDone) Version() Version { return versionOf(m.Ver, m.Mtime) }

// GetOK precedes Size bytes of file data: "GET OK <size>".
type GetOK struct {
	Size int64
}

// ListOK precedes Count entry lines: "LIST OK <count>".
type ListOK struct {
	Count int
}

// StatOK carries one entry's attributes: "STAT OK <type> <mode> <size> <mtime>".
type StatOK struct {
	Entry Entry
}

// SetattrOK carries the attributes after a SETATTR:
// "SETATTR OK <type> <mode> <size> <mtime>".
type SetattrOK struct {
	Entry Entry
}

// StatfsOK reports space in bytes: "STATFS OK <total> <free> <avail>".
type StatfsOK struct {
	Total, Free, Avail int64
}

// OK is the plain success reply of DELETE, RENAME, MKDIR, RMDIR, FSYNC,
// SYMLINK, LINK and MKNOD: "<VERB> OK".
type OK struct {
	Of string // the verb answered
}
