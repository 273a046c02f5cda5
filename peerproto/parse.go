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
		return "", protoErr(line, "name longer than %d bytes", MaxName)
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

// ParsePeerRequest parses a request a client sends to a peer: PUT, GET,
// LIST, STAT, DELETE, RENAME, MKDIR, RMDIR, SETATTR, STATFS, FSYNC, PING
// or QUIT.
// Verbs are matched case-insensitively. Names are decoded but not
// validated as paths: that is the server's job (see CleanPath).
func ParsePeerRequest(line []byte) (Message, error) {
	f := fields(line)
	if len(f) == 0 {
		return nil, protoErr(line, "empty line")
	}
	verb := strings.ToUpper(f[0])
	switch verb {
	case VerbPut:
		const usage = "PUT <name> <size> [async] [inline] [base=<mtime>|base=none|ver=<token>]"
		if err := wantArgs(line, f, 2, 5, usage); err != nil {
			return nil, err
		}
		p := Put{Base: BaseAny}
		for _, opt := range f[3:] {
			k, v, isKV := strings.Cut(opt, "=")
			switch {
			case !isKV && strings.EqualFold(opt, "async") && !p.Async:
				p.Async = true
			case !isKV && strings.EqualFold(opt, "inline") && !p.Inline:
				p.Inline = true
			case isKV && k == "ver" && p.Base == BaseAny && p.Ver == "":
				if !ValidVersionToken(v) {
					return nil, protoErr(line, "ver %q is not a version token (1-64 lower-case hex digits)", v)
				}
				p.Ver = v
			case isKV && k == "base" && p.Base == BaseAny && p.Ver == "":
				if v == "none" {
					p.Base = BaseNone
					break
				}
				mt, err := strconv.ParseInt(v, 10, 64)
				if err != nil || mt <= 0 {
					return nil, protoErr(line, "base %q is not a positive mtime or none", v)
				}
				p.Base = mt
			default:
				return nil, protoErr(line, "usage: %s", usage)
			}
		}
		var err error
		if p.Name, err = parseName(line, f[1]); err != nil {
			return nil, err
		}
		if p.Size, err = parseSize(line, "size", f[2]); err != nil {
			return nil, err
		}
		return p, nil
	case VerbGet:
		if err := wantArgs(line, f, 1, 3, "GET <name> [[<offset>] <length>]"); err != nil {
			return nil, err
		}
		name, err := parseName(line, f[1])
		if err != nil {
			return nil, err
		}
		g := Get{Name: name, Length: -1}
		switch len(f) {
		case 3:
			if g.Length, err = parseSize(line, "length", f[2]); err != nil {
				return nil, err
			}
		case 4:
			if g.Offset, err = parseSize(line, "offset", f[2]); err != nil {
				return nil, err
			}
			if g.Length, err = parseSize(line, "length", f[3]); err != nil {
				return nil, err
			}
		}
		return g, nil
	case VerbList:
		if err := wantArgs(line, f, 0, 1, "LIST [<dir>]"); err != nil {
			return nil, err
		}
		l := List{}
		if len(f) == 2 {
			dir, err := parseName(line, f[1])
			if err != nil {
				return nil, err
			}
			l.Dir = dir
		}
		if l.Dir == "." {
			l.Dir = ""
		}
		return l, nil
	case VerbStat, VerbDelete, VerbRmdir:
		if err := wantArgs(line, f, 1, 1, verb+" <name>"); err != nil {
			return nil, err
		}
		name, err := parseName(line, f[1])
		if err != nil {
			return nil, err
		}
		switch verb {
		case VerbStat:
			if name == "." {
				name = ""
			}
			return Stat{Name: name}, nil
		case VerbDelete:
			return Delete{Name: name}, nil
		default:
			return Rmdir{Name: name}, nil
		}
	case VerbRename:
		if err := wantArgs(line, f, 2, 2, "RENAME <from> <to>"); err != nil {
			return nil, err
		}
		from, err := parseName(line, f[1])
		if err != nil {
			return nil, err
		}
		to, err := parseName(line, f[2])
		if err != nil {
			return nil, err
		}
		return Rename{From: from, To: to}, nil
	case VerbMkdir:
		if err := wantArgs(line, f, 1, 2, "MKDIR <name> [<mode>]"); err != nil {
			return nil, err
		}
		name, err := parseName(line, f[1])
		if err != nil {
			return nil, err
		}
		m := Mkdir{Name: name}
		if len(f) == 3 {
			if m.Mode, err = parseMode(line, f[2]); err != nil {
				return nil, err
			}
		}
		return m, nil
	case VerbSetattr:
		// No attribute at all is a valid no-op that reports the attributes.
		if err := wantArgs(line, f, 1, 4, "SETATTR <name> [size=N] [mode=OOOO] [mtime=NS]"); err != nil {
			return nil, err
		}
		name, err := parseName(line, f[1])
		if err != nil {
			return nil, err
		}
		s := Setattr{Name: name}
		for _, kv := range f[2:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, protoErr(line, "attribute %q is not key=value", kv)
			}
			switch k {
			case "size":
				if s.HasSize {
					return nil, protoErr(line, "size given twice")
				}
				s.HasSize = true
				if s.Size, err = parseSize(line, "size", v); err != nil {
					return nil, err
				}
			case "mode":
				if s.HasMode {
					return nil, protoErr(line, "mode given twice")
				}
				s.HasMode = true
				if s.Mode, err = parseMode(line, v); err != nil {
					return nil, err
				}
			case "mtime":
				if s.HasMtime {
					return nil, protoErr(line, "mtime given twice")
				}
				s.HasMtime = true
				if s.Mtime, err = parseInt64(line, "mtime", v); err != nil {
					return nil, err
				}
			default:
				return nil, protoErr(line, "unknown attribute %q (want size, mode or mtime)", k)
			}
		}
		return s, nil
	case VerbFsync:
		var m Fsync
		for _, w := range f[1:] {
			n, err := parseName(line, w)
			if err != nil {
				return nil, err
			}
			m.Names = append(m.Names, n)
		}
		return m, nil
	case VerbFeatures:
		words, err := featureWords(line, f[1:])
		if err != nil {
			return nil, err
		}
		return Features{Words: words}, nil
	case VerbStatfs, VerbPing, VerbQuit:
		if err := wantArgs(line, f, 0, 0, verb); err != nil {
			return nil, err
		}
		switch verb {
		case VerbStatfs:
			return Statfs{}, nil
		case VerbPing:
			return Ping{}, nil
		default:
			return Quit{}, nil
		}
	}
	return nil, protoErr(line, "unknown verb %q", f[0])
}

// ParseTrackerRequest parses a line a peer sends to the tracker: REGISTER,
// SYNC, SYNC FIN, FEATURES, PING or QUIT.
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
// the extensions' FEATURES OK, FEATURES FAIL and LEFT.
// A FAIL line is returned as a Refusal message, not as an error: it is an
// event like the others. The error is only for malformed lines.
func ParseTrackerEvent(line []byte) (Message, error) {
	f := fields(line)
	if len(f) == 0 {
		return nil, protoErr(line, "empty line")
	}
	verb := strings.ToUpper(f[0])
	if fe := parseFail(line, f, verb); fe != nil && (verb == VerbRegister || verb == VerbSync || verb == VerbFeatures) {
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
			at := strings.LastIndexByte(tok, '@')
			if at <= 0 || at == len(tok)-1 {
				return nil, protoErr(line, "peer %q is not name@host:port", tok)
			}
			name, err := parseName(line, tok[:at])
			if err != nil {
				return nil, err
			}
			u.Peers = append(u.Peers, PeerAddr{Name: name, Addr: tok[at+1:]})
		}
		return u, nil
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

// ParseReply parses a peer's reply to a request with the given verb (or
// the greeting, for VerbConnect). A "<verb> FAIL ..." line is returned as a
// *FailError. Verbs and keywords are matched case-insensitively. The reply
// types per verb are:
//
//	CONNECT  ConnectOK
//	PUT      PutOK (before the payload) or PutDone (after it)
//	GET      GetOK
//	LIST     ListOK (entry lines follow; see ParseEntry)
//	STAT     StatOK
//	SETATTR  SetattrOK
//	STATFS   StatfsOK
//	PING     Pong
//	DELETE, RENAME, MKDIR, RMDIR, FSYNC  OK
func ParseReply(line []byte, verb string) (Message, error) {
	f := fields(line)
	if len(f) == 0 {
		return nil, protoErr(line, "empty line")
	}
	if fe := parseFail(line, f, verb); fe != nil {
		return nil, fe
	}
	if verb == VerbPing {
		if len(f) == 1 && strings.EqualFold(f[0], VerbPong) {
			return Pong{}, nil
		}
		return nil, protoErr(line, "want PONG")
	}
	if len(f) < 2 || !strings.EqualFold(f[0], verb) {
		return nil, protoErr(line, "want a %s reply", verb)
	}
	word, args := strings.ToUpper(f[1]), f[2:]
	bad := func() (Message, error) { return nil, protoErr(line, "malformed %s reply", verb) }
	switch verb {
	case VerbConnect:
		if word == "OK" && len(args) == 0 {
			return ConnectOK{}, nil
		}
	case VerbPut:
		switch {
		case word == "OK" && len(args) == 0:
			return PutOK{}, nil
		case word == "DONE" && len(args) >= 2:
			size, err := parseSize(line, "size", args[0])
			if err != nil {
				return nil, err
			}
			mtime, err := parseInt64(line, "mtime", args[1])
			if err != nil {
				return nil, err
			}
			m := PutDone{Size: size, Mtime: mtime}
			if m.Ver, err = parseAttrWords(line, args[2:]); err != nil {
				return nil, err
			}
			return m, nil
		}
	case VerbGet:
		if word == "OK" && len(args) == 1 {
			size, err := parseSize(line, "size", args[0])
			if err != nil {
				return nil, err
			}
			return GetOK{Size: size}, nil
		}
	case VerbList:
		if word == "OK" && len(args) == 1 {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 0 || n > MaxListEntries {
				return nil, protoErr(line, "entry count %q is not 0-%d", args[0], MaxListEntries)
			}
			return ListOK{Count: n}, nil
		}
	case VerbStat, VerbSetattr:
		if word == "OK" && len(args) >= 4 {
			e, err := parseAttrs(line, args[:4])
			if err != nil {
				return nil, err
			}
			if e.Ver, err = parseAttrWords(line, args[4:]); err != nil {
				return nil, err
			}
			if verb == VerbStat {
				return StatOK{Entry: e}, nil
			}
			return SetattrOK{Entry: e}, nil
		}
	case VerbStatfs:
		if word == "OK" && len(args) == 3 {
			var v [3]int64
			for i := range v {
				n, err := strconv.ParseInt(args[i], 10, 64)
				if err != nil || n < 0 {
					return nil, protoErr(line, "space %q is not a non-negative integer", args[i])
				}
				v[i] = n
			}
			return StatfsOK{Total: v[0], Free: v[1], Avail: v[2]}, nil
		}
	case VerbDelete, VerbRename, VerbMkdir, VerbRmdir, VerbFsync:
		if word == "OK" && len(args) == 0 {
			return OK{Of: verb}, nil
		}
	case VerbFeatures:
		if word == "OK" {
			m := FeaturesOK{Words: []string{}}
			for _, a := range args {
				if k, v, ok := strings.Cut(a, "="); ok {
					// An attribute word; unknown keys are skipped.
					if k == "id" {
						if !ValidVersionToken(v) {
							return nil, protoErr(line, "id %q is not 1-64 lower-case hex digits", v)
						}
						m.ID = v
					}
					continue
				}
				if !lowerWord(a) {
					return nil, protoErr(line, "feature %q is not a lower-case word", a)
				}
				m.Words = append(m.Words, a)
			}
			return m, nil
		}
	default:
		return nil, protoErr(line, "no reply is defined for verb %q", verb)
	}
	return bad()
}

// parseAttrWords parses the "<key>=<value>" words that end an entry on a
// connection with FeatureAttrs on, and returns the version token.
// Unknown keys are skipped (a newer peer may send more); a malformed
// word or a bad token is a protocol error.
func parseAttrWords(line []byte, words []string) (ver string, err error) {
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return "", protoErr(line, "attribute %q is not <key>=<value>", w)
		}
		if k == "ver" {
			if !ValidVersionToken(v) {
				return "", protoErr(line, "ver %q is not a version token", v)
			}
			ver = v
		}
	}
	return ver, nil
}

func parseAttrs(line []byte, a []string) (Entry, error) {
	var e Entry
	if len(a[0]) != 1 || (a[0][0] != TypeFile && a[0][0] != TypeDir) {
		return e, protoErr(line, "type %q is not f or d", a[0])
	}
	e.Type = a[0][0]
	var err error
	if e.Mode, err = parseMode(line, a[1]); err != nil {
		return e, err
	}
	if e.Size, err = parseSize(line, "size", a[2]); err != nil {
		return e, err
	}
	if e.Mtime, err = parseInt64(line, "mtime", a[3]); err != nil {
		return e, err
	}
	return e, nil
}

// ParseEntry parses one entry line of a LIST reply:
// "<type> <mode> <size> <mtime> <name> [<key>=<value>...]".
func ParseEntry(line []byte) (Entry, error) {
	f := fields(line)
	if len(f) < 5 {
		return Entry{}, protoErr(line, "entry: want <type> <mode> <size> <mtime> <name>")
	}
	e, err := parseAttrs(line, f[:4])
	if err != nil {
		return e, err
	}
	if e.Name, err = parseName(line, f[4]); err != nil {
		return e, err
	}
	if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
		return e, protoErr(line, "entry name %q is not a single path element", e.Name)
	}
	if e.Ver, err = parseAttrWords(line, f[5:]); err != nil {
		return e, err
	}
	return e, nil
}
