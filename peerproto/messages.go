package peerproto

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
