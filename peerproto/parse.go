package peerproto

import (
	"slices"
	"strconv"
	"strings"
)

// fields splits a line into words separated by runs of spaces or tabs.
// The number of words is bounded by the line length, itself bounded by
// MaxLine.
func fields(line []byte) []string {
	return strings.FieldsFunc(string(line), func(r rune) bool { return r == ' ' || r == '\t' })
}

func parseSize(line []byte, what, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, protoErr(line, "%s %q is not a non-negative integer", what, s)
	}
	if v > MaxSize {
		return 0, protoErr(line, "%s %d exceeds the limit %d", what, v, int64(MaxSize))
	}
	return v, nil
}

func parseInt64(line []byte, what, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, protoErr(line, "%s %q is not an integer", what, s)
	}
	return v, nil
}

func parseMode(line []byte, s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 07777 {
		return 0, protoErr(line, "mode %q is not an octal permission (0000-7777)", s)
	}
	return uint32(v), nil
}

func parseName(line []byte, tok string) (string, error) {
	name, err := DecodeName(tok)
	if err != nil {
		return "", protoErr(line, "%v", err)
	}
	if len(name) > MaxName {
		pe := protoErr(line, "name longer than %d bytes", MaxName)
		pe.Err = ErrPathTooLong
		return "", pe
	}
	return name, nil
}

func wantArgs(line []byte, f []string, min, max int, usage string) error {
	n := len(f) - 1
	if n < min || n > max {
		return protoErr(line, "usage: %s", usage)
	}
	return nil
}

// ParseTrackerRequest parses a line a peer sends to the tracker: REGISTER,
// SYNC, SYNC FIN, FEATURES, WRITES, PING or QUIT.
func ParseTrackerRequest(line []byte) (Message, error) {
	f := fields(line)
	if len(f) == 0 {
		return nil, protoErr(line, "empty line")
	}
	verb := strings.ToUpper(f[0])
	switch verb {
	case VerbRegister:
		if len(f) == 1 {
			return Register{}, nil
		}
		if len(f) != 3 {
			return nil, protoErr(line, "usage: REGISTER [<name> <port>]")
		}
		name, err := parseName(line, f[1])
		if err != nil {
			return nil, err
		}
		if !ValidPeerName(name) {
			return nil, protoErr(line, "peer name %q: want 1-%d letters, digits, '.', '_' or '-'", name, MaxPeerName)
		}
		port, err := strconv.Atoi(f[2])
		if err != nil || port < 1 || port > 65535 {
			return nil, protoErr(line, "port %q is not 1-65535", f[2])
		}
		return Register{Name: name, Port: port}, nil
	case VerbSync:
		switch {
		case len(f) == 1:
			return Sync{}, nil
		case len(f) == 2 && strings.EqualFold(f[1], "FIN"):
			return SyncFin{}, nil
		case len(f) == 3 && strings.EqualFold(f[1], "FIN") && strings.EqualFold(f[2], "clean"):
			return SyncFin{Known: true}, nil
		case len(f) == 3 && strings.EqualFold(f[1], "FIN") && strings.EqualFold(f[2], "wrote"):
			return SyncFin{Known: true, Wrote: true}, nil
		}
		return nil, protoErr(line, "usage: SYNC | SYNC FIN [clean|wrote]")
	case VerbPing, VerbQuit:
		if len(f) != 1 {
			return nil, protoErr(line, "usage: %s", verb)
		}
		if verb == VerbPing {
			return Ping{}, nil
		}
		return Quit{}, nil
	case VerbFeatures:
		words, err := featureWords(line, f[1:])
		if err != nil {
			return nil, err
		}
		return Features{Words: words}, nil
	case VerbWrites:
		if len(f) == 2 && f[1] == "held" {
			return Writes{Held: true}, nil
		}
		if len(f) == 2 && f[1] == "none" {
			return Writes{}, nil
		}
		return nil, protoErr(line, "usage: WRITES held|none")
	}
	return nil, protoErr(line, "unknown verb %q", f[0])
}

// maxFeatureWords bounds the words of a FEATURES line.
const maxFeatureWords = 64

// featureWords checks the words of a FEATURES line or its OK reply:
// lower-case letters, digits and '-'. No words is nil.
func featureWords(line []byte, args []string) ([]string, error) {
	if len(args) > maxFeatureWords {
		return nil, protoErr(line, "more than %d features", maxFeatureWords)
	}
	for _, a := range args {
		if !lowerWord(a) {
			return nil, protoErr(line, "feature %q is not a lower-case word", a)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	return slices.Clone(args), nil
}

// lowerWord reports whether s is a word of lower-case letters, digits and
// '-'.
func lowerWord(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return s != ""
}

// parsePeerAddr parses one "<name>@<host>:<port>" of an UPDATE or a
// JOINED line; the name is split off at the last '@'.
func parsePeerAddr(line []byte, tok string) (PeerAddr, error) {
	at := strings.LastIndexByte(tok, '@')
	if at <= 0 || at == len(tok)-1 {
		return PeerAddr{}, protoErr(line, "peer %q is not name@host:port", tok)
	}
	name, err := parseName(line, tok[:at])
	if err != nil {
		return PeerAddr{}, err
	}
	return PeerAddr{Name: name, Addr: tok[at+1:]}, nil
}

// parseFail recognises "<verb> FAIL [<code> [<text>]]" and returns the
// refusal, or nil if the line is not one.
func parseFail(line []byte, f []string, verb string) *FailError {
	if len(f) < 2 || !strings.EqualFold(f[0], verb) || !strings.EqualFold(f[1], "FAIL") {
		return nil
	}
	e := &FailError{Verb: verb, Code: CodeIO}
	if len(f) >= 3 {
		e.Code = f[2]
		// Keep the text as sent, inner spacing included, after the code word.
		e.Text = strings.TrimSpace(afterWords(line, 3))
	}
	return e
}

// afterWords returns what follows the first n words of line (words as
// split by fields).
func afterWords(line []byte, n int) string {
	blank := func(c byte) bool { return c == ' ' || c == '\t' }
	i := 0
	for ; n > 0; n-- {
		for i < len(line) && blank(line[i]) {
			i++
		}
		for i < len(line) && !blank(line[i]) {
			i++
		}
	}
	return string(line[i:])
}

// ParseTrackerEvent parses a line the tracker sends to a peer: REGISTER OK,
// REGISTER FAIL, UPDATE, SYNC OK, SYNC READ, SYNC END, SYNC FAIL, PONG, and
// the extensions' FEATURES OK, FEATURES FAIL, LEFT, WRITES OK, WRITES
// FAIL, PEERS and JOINED.
// A FAIL line is returned as a Refusal message, not as an error: it is an
// event like the others. The error is only for malformed lines.
func ParseTrackerEvent(line []byte) (Message, error) {
	f := fields(line)
	if len(f) == 0 {
		return nil, protoErr(line, "empty line")
	}
	verb := strings.ToUpper(f[0])
	if fe := parseFail(line, f, verb); fe != nil && (verb == VerbRegister || verb == VerbSync || verb == VerbFeatures || verb == VerbWrites) {
		return Refusal{Err: fe}, nil
	}
	switch verb {
	case VerbFeatures:
		if len(f) >= 2 && strings.EqualFold(f[1], "OK") {
			words, err := featureWords(line, f[2:])
			if err != nil {
				return nil, err
			}
			if words == nil {
				words = []string{}
			}
			return FeaturesOK{Words: words}, nil
		}
	case VerbLeft:
		if len(f) != 3 {
			return nil, protoErr(line, "usage: LEFT <name> quit|dropped")
		}
		name, err := parseName(line, f[1])
		if err != nil {
			return nil, err
		}
		if !ValidPeerName(name) {
			return nil, protoErr(line, "peer name %q: want 1-%d letters, digits, '.', '_' or '-'", name, MaxPeerName)
		}
		if !lowerWord(f[2]) {
			return nil, protoErr(line, "how %q is not a lower-case word", f[2])
		}
		return Left{Name: name, How: f[2]}, nil
	case VerbRegister:
		if len(f) == 2 && strings.EqualFold(f[1], "OK") {
			return RegisterOK{}, nil
		}
	case VerbUpdate:
		if len(f)-1 > MaxPeers {
			return nil, protoErr(line, "more than %d peers", MaxPeers)
		}
		u := Update{Peers: make([]PeerAddr, 0, len(f)-1)}
		for _, tok := range f[1:] {
			p, err := parsePeerAddr(line, tok)
			if err != nil {
				return nil, err
			}
			u.Peers = append(u.Peers, p)
		}
		return u, nil
	case VerbJoined:
		if len(f) != 2 {
			return nil, protoErr(line, "usage: JOINED <name>@<host>:<port>")
		}
		p, err := parsePeerAddr(line, f[1])
		if err != nil {
			return nil, err
		}
		return Joined{Peer: p}, nil
	case VerbPeers:
		if len(f) != 2 {
			return nil, protoErr(line, "usage: PEERS <count>")
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 0 || n > MaxPeers {
			return nil, protoErr(line, "count %q is not 0-%d", f[1], MaxPeers)
		}
		return Peers{Count: n}, nil
	case VerbWrites:
		if len(f) == 2 && strings.EqualFold(f[1], "OK") {
			return WritesOK{}, nil
		}
	case VerbSync:
		switch {
		case len(f) == 2 && strings.EqualFold(f[1], "OK"):
			return SyncOK{}, nil
		case len(f) == 2 && strings.EqualFold(f[1], "READ"):
			return SyncRead{}, nil
		case (len(f) == 3 || len(f) == 4) && strings.EqualFold(f[1], "END"):
			r, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				return nil, protoErr(line, "round %q is not a number", f[2])
			}
			end := SyncEnd{Round: r}
			if len(f) == 4 {
				list, ok := strings.CutPrefix(f[3], "writers=")
				if !ok {
					return nil, protoErr(line, "want writers=<name>,... after the round, not %q", f[3])
				}
				end.WritersKnown = true
				if list != "" {
					for _, w := range strings.Split(list, ",") {
						if !ValidPeerName(w) {
							return nil, protoErr(line, "writer %q is not a peer name", w)
						}
						end.Writers = append(end.Writers, w)
					}
				}
			}
			return end, nil
		}
	case VerbPong:
		if len(f) == 1 {
			return Pong{}, nil
		}
	}
	return nil, protoErr(line, "unexpected line from tracker")
}
