package peerproto

// Parsing the requests of a peer connection.

import (
	"strconv"
	"strings"
)

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
	switch verb := strings.ToUpper(f[0]); verb {
	case VerbPut:
		return parsePut(line, f)
	case VerbGet:
		return parseGet(line, f)
	case VerbList:
		return parseList(line, f)
	case VerbStat, VerbDelete, VerbRmdir:
		return parseNamed(line, f, verb)
	case VerbRename:
		return parseRename(line, f)
	case VerbMkdir:
		return parseMkdir(line, f)
	case VerbSetattr:
		return parseSetattr(line, f)
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
		}
		return Quit{}, nil
	}
	return nil, protoErr(line, "unknown verb %q", f[0])
}

// parsePut parses "PUT <name> <size> [async] [inline] [base=...|ver=...]".
func parsePut(line []byte, f []string) (Message, error) {
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
}

// parseGet parses "GET <name> [[<offset>] <length>]".
func parseGet(line []byte, f []string) (Message, error) {
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
}

// parseList parses "LIST [<dir>]".
func parseList(line []byte, f []string) (Message, error) {
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
}

// parseNamed parses the requests that take one name: "STAT <name>",
// "DELETE <name>", "RMDIR <name>".
func parseNamed(line []byte, f []string, verb string) (Message, error) {
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
	}
	return Rmdir{Name: name}, nil
}

// parseRename parses "RENAME <from> <to>".
func parseRename(line []byte, f []string) (Message, error) {
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
}

// parseMkdir parses "MKDIR <name> [<mode>]".
func parseMkdir(line []byte, f []string) (Message, error) {
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
}

// parseSetattr parses "SETATTR <name> [size=N] [mode=OOOO] [mtime=NS]";
// no attribute at all is a valid no-op that reports the attributes.
func parseSetattr(line []byte, f []string) (Message, error) {
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
			s.Size, err = parseSize(line, "size", v)
		case "mode":
			if s.HasMode {
				return nil, protoErr(line, "mode given twice")
			}
			s.HasMode = true
			s.Mode, err = parseMode(line, v)
		case "mtime":
			if s.HasMtime {
				return nil, protoErr(line, "mtime given twice")
			}
			s.HasMtime = true
			s.Mtime, err = parseInt64(line, "mtime", v)
		default:
			return nil, protoErr(line, "unknown attribute %q (want size, mode or mtime)", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}
