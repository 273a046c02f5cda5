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
	VerbWrites   = "WRITES"
	VerbPeers    = "PEERS"
	VerbJoined   = "JOINED"
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

// Writes tells the tracker whether the sender holds writes the other
// peers must see (FeatureTurns): "WRITES held" or "WRITES none". A peer
// that holds none gets no turn in a round it did not ask for. The
// tracker answers each with WritesOK once it will act on it.
type Writes struct {
	Held bool
}

// FeatureTurns is the tracker's Features word of Writes: a peer that
// turns it on tells the tracker when it holds writes the others must
// see, and gets a turn in a round only if it asked for one (Sync) or
// holds such writes. Until its first "WRITES none" it is taken to hold
// some, as a peer that never says is.
const FeatureTurns = "turns"

// FeatureDeltas is the tracker's Features word of membership deltas: a
// peer that turns it on gets the peer list once as Peers and Joined
// lines and then only the changes (Joined, Left) instead of an UPDATE
// with the whole list at every join or leave.
const FeatureDeltas = "deltas"

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

// WritesOK acknowledges a Writes line: "WRITES OK". From then on the
// tracker acts on what it said: a round that starts later gives the
// sender a turn if it said held.
type WritesOK struct{}

// Peers opens the full peer list of a connection that asked for
// deltas (FeatureDeltas): "PEERS <count>". The next Count lines are
// Joined lines, one per peer in registration order; the receiver forgets
// the list it had. Later joins come as single Joined lines, departures
// as Left lines.
type Peers struct {
	Count int // 0 to MaxPeers
}

// Joined adds a peer at the end of the list (FeatureDeltas):
// "JOINED <name>@<host>:<port>", one of a Peers list or a peer that
// registered since. A receiver that lists the name already replaces its
// address.
type Joined struct {
	Peer PeerAddr
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
