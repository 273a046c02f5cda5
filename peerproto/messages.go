package peerproto

import (
	"strconv"
	"strings"
)

// Verbs: the first word of every line.
const (
	VerbRegister = "REGISTER"
	VerbUpdate   = "UPDATE"
	VerbConnect  = "CONNECT"
	VerbPut      = "PUT"
	VerbGet      = "GET"
	VerbSync     = "SYNC"
	VerbList     = "LIST"
	VerbStat     = "STAT"
	VerbDelete   = "DELETE"
	VerbRename   = "RENAME"
	VerbMkdir    = "MKDIR"
	VerbRmdir    = "RMDIR"
	VerbSetattr  = "SETATTR"
	VerbStatfs   = "STATFS"
	VerbFsync    = "FSYNC"
	VerbFeatures = "FEATURES"
	VerbLeft     = "LEFT"
	VerbPing     = "PING"
	VerbPong     = "PONG"
	VerbQuit     = "QUIT"
)

// Message is anything that travels as one protocol line.
type Message interface {
	// Verb is the line's first word.
	Verb() string
	// AppendTo appends the line, without terminator, to b.
	AppendTo(b []byte) []byte
}

// ---- peer -> tracker ----

// Register asks the tracker to admit the sender: "REGISTER" (the seed's
// form: a listener that is not advertised) or "REGISTER <name> <port>"
// (advertised to others as name@<source address>:port).
type Register struct {
	Name string // empty for the bare seed form
	Port int
}

// Sync asks the tracker for the write token: "SYNC".
type Sync struct{}

// SyncFin returns the write token: the seed's "SYNC FIN", or, from a
// peer that reports whether it stored anything on any other peer since
// its previous SYNC FIN (or its registration), "SYNC FIN wrote" or
// "SYNC FIN clean". The reports let readers keep their caches (SyncEnd).
type SyncFin struct {
	Known bool // the peer reports; otherwise it may have written
	Wrote bool // meaningful only when Known
}

// ---- tracker -> peer ----

// RegisterOK accepts a registration: "REGISTER OK".
type RegisterOK struct{}

// PeerAddr is one entry of an UPDATE: a peer's name and dialable address.
type PeerAddr struct {
	Name string
	Addr string // host:port, IPv6 hosts bracketed
}

// Update is the current list of registered peers: "UPDATE name@host:port ...".
type Update struct {
	Peers []PeerAddr
}

// SyncOK grants the write token to the receiver: "SYNC OK".
type SyncOK struct{}

// SyncRead tells the receiver that a round is on and another peer writes:
// "SYNC READ".
type SyncRead struct{}

// SyncEnd tells every peer that the round is over: "SYNC END <round>",
// or "SYNC END <round> writers=<name>,..." when the tracker knows which
// peers may have stored something since their previous turn: every
// participant ended its turn with a reporting SyncFin, and those not in
// Writers said clean.
type SyncEnd struct {
	Round        uint64
	Writers      []string // meaningful only when WritersKnown
	WritersKnown bool
}

// OthersWrote reports whether a peer other than self may have stored
// something on some peer since its previous turn; true unless the tracker
// said otherwise.
func (m SyncEnd) OthersWrote(self string) bool {
	if !m.WritersKnown {
		return true
	}
	for _, w := range m.Writers {
		if w != self {
			return true
		}
	}
	return false
}

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
type Put struct {
	Name   string
	Size   int64
	Async  bool
	Inline bool   // the payload follows the request line at once; no PUT OK
	Base   int64  // BaseAny (no condition), BaseNone, or the expected mtime
	Ver    string // the expected version token; "" for none (then Base applies)
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

// Mkdir creates a directory: "MKDIR <name> [<mode>]".
type Mkdir struct {
	Name string
	Mode uint32 // permission bits; 0 means the server default (0755)
}

// Rmdir removes an empty directory: "RMDIR <name>".
type Rmdir struct {
	Name string
}

// Setattr changes attributes: "SETATTR <name> [size=N] [mode=OOOO] [mtime=NS]".
type Setattr struct {
	Name     string
	HasSize  bool
	Size     int64
	HasMode  bool
	Mode     uint32
	HasMtime bool
	Mtime    int64 // nanoseconds since the Unix epoch
}

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

// FeatureFsyncFiles is the FeaturesOK word of FSYNC with names.
const FeatureFsyncFiles = "fsync-files"

// FeatureAttrs is the FeaturesOK word of attribute words: once a client
// sent "FEATURES attrs", the peer's STAT OK, SETATTR OK, PUT DONE and LIST
// entry lines on that connection end in "<key>=<value>" words (today
// "ver=<token>": Entry.Ver). Receivers ignore keys they do not know.
const FeatureAttrs = "attrs"

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
// stored file's version token (Entry.Ver).
type PutDone struct {
	Size  int64
	Mtime int64
	Ver   string
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

// OK is the plain success reply of DELETE, RENAME, MKDIR and RMDIR:
// "<VERB> OK".
type OK struct {
	Of string // the verb answered
}

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

// Verb implementations.
func (Register) Verb() string   { return VerbRegister }
func (Sync) Verb() string       { return VerbSync }
func (SyncFin) Verb() string    { return VerbSync }
func (RegisterOK) Verb() string { return VerbRegister }
func (Update) Verb() string     { return VerbUpdate }
func (SyncOK) Verb() string     { return VerbSync }
func (SyncRead) Verb() string   { return VerbSync }
func (SyncEnd) Verb() string    { return VerbSync }
func (Put) Verb() string        { return VerbPut }
func (Get) Verb() string        { return VerbGet }
func (List) Verb() string       { return VerbList }
func (Stat) Verb() string       { return VerbStat }
func (Delete) Verb() string     { return VerbDelete }
func (Rename) Verb() string     { return VerbRename }
func (Mkdir) Verb() string      { return VerbMkdir }
func (Rmdir) Verb() string      { return VerbRmdir }
func (Setattr) Verb() string    { return VerbSetattr }
func (Statfs) Verb() string     { return VerbStatfs }
func (Fsync) Verb() string      { return VerbFsync }
func (Features) Verb() string   { return VerbFeatures }
func (FeaturesOK) Verb() string { return VerbFeatures }
func (Left) Verb() string       { return VerbLeft }
func (Ping) Verb() string       { return VerbPing }
func (Pong) Verb() string       { return VerbPong }
func (Quit) Verb() string       { return VerbQuit }
func (ConnectOK) Verb() string  { return VerbConnect }
func (PutOK) Verb() string      { return VerbPut }
func (PutDone) Verb() string    { return VerbPut }
func (GetOK) Verb() string      { return VerbGet }
func (ListOK) Verb() string     { return VerbList }
func (StatOK) Verb() string     { return VerbStat }
func (SetattrOK) Verb() string  { return VerbSetattr }
func (StatfsOK) Verb() string   { return VerbStatfs }
func (m OK) Verb() string       { return m.Of }

// ---- formatting ----

func appendInt(b []byte, v int64) []byte {
	b = append(b, ' ')
	return strconv.AppendInt(b, v, 10)
}

func appendName(b []byte, name string) []byte {
	b = append(b, ' ')
	return append(b, EncodeName(name)...)
}

func appendMode(b []byte, mode uint32) []byte {
	b = append(b, ' ', '0')
	return strconv.AppendUint(b, uint64(mode&07777), 8)
}

func itoa(v int) string { return strconv.Itoa(v) }

// AppendTo implements Message.
func (m Register) AppendTo(b []byte) []byte {
	b = append(b, VerbRegister...)
	if m.Name == "" {
		return b
	}
	b = appendName(b, m.Name)
	return appendInt(b, int64(m.Port))
}

// AppendTo implements Message.
func (Sync) AppendTo(b []byte) []byte { return append(b, VerbSync...) }

// AppendTo implements Message.
func (m SyncFin) AppendTo(b []byte) []byte {
	b = append(b, "SYNC FIN"...)
	switch {
	case m.Known && m.Wrote:
		b = append(b, " wrote"...)
	case m.Known:
		b = append(b, " clean"...)
	}
	return b
}

// AppendTo implements Message.
func (RegisterOK) AppendTo(b []byte) []byte { return append(b, "REGISTER OK"...) }

// AppendTo implements Message.
func (m Update) AppendTo(b []byte) []byte {
	b = append(b, VerbUpdate...)
	for _, p := range m.Peers {
		b = append(b, ' ')
		b = append(b, EncodeName(p.Name)...)
		b = append(b, '@')
		b = append(b, p.Addr...)
	}
	return b
}

// AppendTo implements Message.
func (SyncOK) AppendTo(b []byte) []byte { return append(b, "SYNC OK"...) }

// AppendTo implements Message.
func (SyncRead) AppendTo(b []byte) []byte { return append(b, "SYNC READ"...) }

// AppendTo implements Message.
func (m SyncEnd) AppendTo(b []byte) []byte {
	b = append(b, "SYNC END "...)
	b = strconv.AppendUint(b, m.Round, 10)
	if m.WritersKnown {
		b = append(b, " writers="...)
		for i, w := range m.Writers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, w...)
		}
	}
	return b
}

// AppendTo implements Message.
func (m Put) AppendTo(b []byte) []byte {
	b = append(b, VerbPut...)
	b = appendName(b, m.Name)
	b = appendInt(b, m.Size)
	if m.Async {
		b = append(b, " async"...)
	}
	if m.Inline {
		b = append(b, " inline"...)
	}
	switch {
	case m.Ver != "":
		b = append(b, " ver="...)
		b = append(b, m.Ver...)
	case m.Base == BaseNone:
		b = append(b, " base=none"...)
	case m.Base > 0:
		b = append(b, " base="...)
		b = strconv.AppendInt(b, m.Base, 10)
	}
	return b
}

// AppendTo implements Message.
func (m Fsync) AppendTo(b []byte) []byte {
	b = append(b, VerbFsync...)
	for _, n := range m.Names {
		b = appendName(b, n)
	}
	return b
}

// AppendTo implements Message.
func (m Features) AppendTo(b []byte) []byte {
	b = append(b, VerbFeatures...)
	for _, w := range m.Words {
		b = append(b, ' ')
		b = append(b, w...)
	}
	return b
}

// AppendTo implements Message.
func (m Left) AppendTo(b []byte) []byte {
	b = append(b, VerbLeft...)
	b = appendName(b, m.Name)
	b = append(b, ' ')
	return append(b, m.How...)
}

// AppendTo implements Message.
func (m FeaturesOK) AppendTo(b []byte) []byte {
	b = append(b, "FEATURES OK"...)
	for _, w := range m.Words {
		b = append(b, ' ')
		b = append(b, w...)
	}
	if m.ID != "" {
		b = append(append(b, " id="...), m.ID...)
	}
	return b
}

// AppendTo implements Message.
func (m Get) AppendTo(b []byte) []byte {
	b = append(b, VerbGet...)
	b = appendName(b, m.Name)
	if m.Offset == 0 && m.Length < 0 {
		return b
	}
	b = appendInt(b, m.Offset)
	return appendInt(b, m.Length)
}

// AppendTo implements Message.
func (m List) AppendTo(b []byte) []byte {
	b = append(b, VerbList...)
	return appendName(b, m.Dir)
}

// AppendTo implements Message.
func (m Stat) AppendTo(b []byte) []byte { return appendName(append(b, VerbStat...), m.Name) }

// AppendTo implements Message.
func (m Delete) AppendTo(b []byte) []byte { return appendName(append(b, VerbDelete...), m.Name) }

// AppendTo implements Message.
func (m Rename) AppendTo(b []byte) []byte {
	return appendName(appendName(append(b, VerbRename...), m.From), m.To)
}

// AppendTo implements Message.
func (m Mkdir) AppendTo(b []byte) []byte {
	b = appendName(append(b, VerbMkdir...), m.Name)
	if m.Mode != 0 {
		b = appendMode(b, m.Mode)
	}
	return b
}

// AppendTo implements Message.
func (m Rmdir) AppendTo(b []byte) []byte { return appendName(append(b, VerbRmdir...), m.Name) }

// AppendTo implements Message.
func (m Setattr) AppendTo(b []byte) []byte {
	b = appendName(append(b, VerbSetattr...), m.Name)
	if m.HasSize {
		b = append(b, " size="...)
		b = strconv.AppendInt(b, m.Size, 10)
	}
	if m.HasMode {
		b = append(b, " mode=0"...)
		b = strconv.AppendUint(b, uint64(m.Mode&07777), 8)
	}
	if m.HasMtime {
		b = append(b, " mtime="...)
		b = strconv.AppendInt(b, m.Mtime, 10)
	}
	return b
}

// AppendTo implements Message.
func (Statfs) AppendTo(b []byte) []byte { return append(b, VerbStatfs...) }

// AppendTo implements Message.
func (Ping) AppendTo(b []byte) []byte { return append(b, VerbPing...) }

// AppendTo implements Message.
func (Pong) AppendTo(b []byte) []byte { return append(b, VerbPong...) }

// AppendTo implements Message.
func (Quit) AppendTo(b []byte) []byte { return append(b, VerbQuit...) }

// AppendTo implements Message.
func (ConnectOK) AppendTo(b []byte) []byte { return append(b, "CONNECT OK"...) }

// AppendTo implements Message.
func (PutOK) AppendTo(b []byte) []byte { return append(b, "PUT OK"...) }

// AppendTo implements Message.
func (m PutDone) AppendTo(b []byte) []byte {
	return appendVer(appendInt(appendInt(append(b, "PUT DONE"...), m.Size), m.Mtime), m.Ver)
}

// appendVer appends the attribute word of a version token, if any.
func appendVer(b []byte, ver string) []byte {
	if ver == "" {
		return b
	}
	return append(append(b, " ver="...), ver...)
}

// AppendTo implements Message.
func (m GetOK) AppendTo(b []byte) []byte { return appendInt(append(b, "GET OK"...), m.Size) }

// AppendTo implements Message.
func (m ListOK) AppendTo(b []byte) []byte {
	return appendInt(append(b, "LIST OK"...), int64(m.Count))
}

func appendAttrs(b []byte, e Entry) []byte {
	b = append(b, ' ', e.Type)
	b = appendMode(b, e.Mode)
	b = appendInt(b, e.Size)
	return appendVer(appendInt(b, e.Mtime), e.Ver)
}

// AppendTo implements Message.
func (m StatOK) AppendTo(b []byte) []byte { return appendAttrs(append(b, "STAT OK"...), m.Entry) }

// AppendTo implements Message.
func (m SetattrOK) AppendTo(b []byte) []byte {
	return appendAttrs(append(b, "SETATTR OK"...), m.Entry)
}

// AppendTo implements Message.
func (m StatfsOK) AppendTo(b []byte) []byte {
	return appendInt(appendInt(appendInt(append(b, "STATFS OK"...), m.Total), m.Free), m.Avail)
}

// AppendTo implements Message.
func (m OK) AppendTo(b []byte) []byte { return append(append(b, m.Of...), " OK"...) }

// Refusal is a *FailError as a Message: "<VERB> FAIL <code> <text>".
type Refusal struct {
	Err *FailError
}

// Verb implements Message.
func (m Refusal) Verb() string { return m.Err.Verb }

// AppendTo implements Message. Newlines in the text are replaced so the
// reply stays one line.
func (m Refusal) AppendTo(b []byte) []byte {
	e := m.Err
	b = append(b, e.Verb...)
	b = append(b, " FAIL "...)
	code := e.Code
	if code == "" {
		code = CodeIO
	}
	b = append(b, code...)
	if e.Text != "" {
		b = append(b, ' ')
		// Byte by byte: the text need not be UTF-8, and must arrive as sent.
		for i := 0; i < len(e.Text); i++ {
			c := e.Text[i]
			if c == '\n' || c == '\r' {
				c = ' '
			}
			b = append(b, c)
		}
	}
	return b
}

// AppendEntry appends e as a LIST entry line (without terminator).
func AppendEntry(b []byte, e Entry) []byte {
	b = append(b, e.Type)
	b = appendMode(b, e.Mode)
	b = appendInt(b, e.Size)
	b = appendInt(b, e.Mtime)
	return appendVer(appendName(b, e.Name), e.Ver)
}
