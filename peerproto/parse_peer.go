package peerproto

// Parsing the requests of a peer connection.

import (
	"strconv"
	"strings"
)

// ParsePeerRequest parses a request a client sends to a peer: PUT, GET,
// LIST, STAT, DELETE, RENAME, MKDIR, RMDIR, SETATTR, STATFS, FSYNC,
// FEATURES, SYMLINK, READLINK, LINK, MKNOD, SUM, WATCH, UNWATCH, PING or
// QUIT.
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
	case VerbStat, VerbDelete, VerbRmdir, VerbReadlink, VerbSum, VerbWatch, VerbUnwatch:
		return parseNamed(line, f, verb)
	case VerbRename, VerbLink:
		return parseTwoNames(line, f, verb)
	case VerbSymlink:
		return parseSymlink(line, f)
	case VerbMknod:
		return parseMknod(line, f)
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

// parsePut parses "PUT <name> <size> [async] [inline] [base=...|ver=...]
// [delta=<size> [ranges=<off>:<len>,...]] [stream] [setid]".
func parsePut(line []byte, f []string) (Message, error) {
	const usage = "PUT <name> <size> [async] [inline] [base=<mtime>|base=none|ver=<token>] [delta=<size> [ranges=<off>:<len>,...]] [stream] [setid]"
	if err := wantArgs(line, f, 2, 9, usage); err != nil {
		return nil, err
	}
	p := Put{Base: BaseAny}
	hasRanges := false
	for _, opt := range f[3:] {
		k, v, isKV := strings.Cut(opt, "=")
		switch {
		case !isKV && strings.EqualFold(opt, "async") && !p.Async:
			p.Async = true
		case !isKV && strings.EqualFold(opt, "inline") && !p.Inline:
			p.Inline = true
		case !isKV && strings.EqualFold(opt, "stream") && !p.Stream:
			p.Stream = true
		case !isKV && strings.EqualFold(opt, "setid") && !p.Setid:
			p.Setid = true
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
		case isKV && k == "delta" && !p.Delta:
			n, err := parseSize(line, "delta size", v)
			if err != nil {
				return nil, err
			}
			p.Delta, p.NewSize = true, n
		case isKV && k == "ranges" && !hasRanges:
			rs, err := parseRanges(line, v)
			if err != nil {
				return nil, err
			}
			p.Ranges, hasRanges = rs, true
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
	if hasRanges && !p.Delta {
		return nil, protoErr(line, "ranges= without delta=")
	}
	if p.Stream && (p.Inline || p.Delta) {
		// Its payload is framed: neither sent blind nor a delta's ranges.
		return nil, protoErr(line, "stream goes with neither inline nor delta=")
	}
	if err := p.CheckDelta(); err != nil {
		return nil, protoErr(line, "%v", err)
	}
	return p, nil
}

// parseRanges parses the value of a delta PUT's ranges=: "<off>:<len>"
// items separated by commas, at most MaxRanges of them.
func parseRanges(line []byte, v string) ([]Range, error) {
	if n := strings.Count(v, ",") + 1; n > MaxRanges {
		return nil, protoErr(line, "more than %d ranges", MaxRanges)
	}
	var rs []Range
	for item := range strings.SplitSeq(v, ",") {
		o, l, ok := strings.Cut(item, ":")
		if !ok {
			return nil, protoErr(line, "range %q is not <offset>:<length>", item)
		}
		off, err := parseSize(line, "range offset", o)
		if err != nil {
			return nil, err
		}
		n, err := parseSize(line, "range length", l)
		if err != nil {
			return nil, err
		}
		rs = append(rs, Range{Off: off, Len: n})
	}
	return rs, nil
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
// "DELETE <name>", "RMDIR <name>", "READLINK <name>", "SUM <name>".
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
	case VerbReadlink:
		return Readlink{Name: name}, nil
	case VerbSum:
		return Sum{Name: name}, nil
	case VerbWatch:
		return Watch{Dir: rootName(name)}, nil
	case VerbUnwatch:
		return Unwatch{Dir: rootName(name)}, nil
	}
	return Rmdir{Name: name}, nil
}

// parseTwoNames parses "RENAME <from> <to>" and "LINK <old> <new>".
func parseTwoNames(line []byte, f []string, verb string) (Message, error) {
	usage := "RENAME <from> <to>"
	if verb == VerbLink {
		usage = "LINK <old> <new>"
	}
	if err := wantArgs(line, f, 2, 2, usage); err != nil {
		return nil, err
	}
	a, err := parseName(line, f[1])
	if err != nil {
		return nil, err
	}
	b, err := parseName(line, f[2])
	if err != nil {
		return nil, err
	}
	if verb == VerbLink {
		return Link{Old: a, New: b}, nil
	}
	return Rename{From: a, To: b}, nil
}

// parseSymlink parses "SYMLINK <name> <target>".
func parseSymlink(line []byte, f []string) (Message, error) {
	if err := wantArgs(line, f, 2, 2, "SYMLINK <name> <target>"); err != nil {
		return nil, err
	}
	name, err := parseName(line, f[1])
	if err != nil {
		return nil, err
	}
	target, err := parseTarget(line, f[2])
	if err != nil {
		return nil, err
	}
	return Symlink{Name: name, Target: target}, nil
}

// parseTarget decodes a symbolic link's target: 1 to MaxTarget bytes,
// no NUL.
func parseTarget(line []byte, tok string) (string, error) {
	target, err := DecodeName(tok)
	switch {
	case err != nil:
		return "", protoErr(line, "target: %v", err)
	case target == "" || len(target) > MaxTarget:
		return "", protoErr(line, "target of %d bytes (want 1-%d)", len(target), MaxTarget)
	case strings.IndexByte(target, 0) >= 0:
		return "", protoErr(line, "NUL byte in target")
	}
	return target, nil
}

// parseMknod parses "MKNOD <name> p|s <mode>" and "MKNOD <name> c|b
// <mode> <major> <minor>".
func parseMknod(line []byte, f []string) (Message, error) {
	const usage = "MKNOD <name> p|s <mode> | MKNOD <name> c|b <mode> <major> <minor>"
	if err := wantArgs(line, f, 3, 5, usage); err != nil {
		return nil, err
	}
	name, err := parseName(line, f[1])
	if err != nil {
		return nil, err
	}
	m := Mknod{Name: name}
	if len(f[2]) == 1 {
		m.Type = f[2][0]
	}
	switch {
	case (m.Type == TypeFIFO || m.Type == TypeSocket) && len(f) == 4:
	case (m.Type == TypeCharDevice || m.Type == TypeBlockDevice) && len(f) == 6:
		if m.Major, err = parseUint32(line, "major", f[4]); err != nil {
			return nil, err
		}
		if m.Minor, err = parseUint32(line, "minor", f[5]); err != nil {
			return nil, err
		}
	default:
		return nil, protoErr(line, "usage: %s", usage)
	}
	if m.Mode, err = parseMode(line, f[3]); err != nil {
		return nil, err
	}
	return m, nil
}

// parseUint32 parses a decimal number of 0 to 2^32-1.
func parseUint32(line []byte, what, s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, protoErr(line, "%s %q is not a number of 0-%d", what, s, uint32(1<<32-1))
	}
	return uint32(v), nil
}

// parseOwner parses a uid= or gid= value: 0 to 2^32-2 (2^32-1 is chown's
// "leave as it is").
func parseOwner(line []byte, what, s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 1<<32-1 {
		return 0, protoErr(line, "%s %q is not an owner (0-%d)", what, s, uint32(1<<32-2))
	}
	return uint32(v), nil
}

// parseTime parses a SETATTR time: ns since the epoch, or "now".
func parseTime(line []byte, what, s string) (ns int64, now bool, err error) {
	if s == "now" {
		return 0, true, nil
	}
	ns, err = parseInt64(line, what, s)
	return ns, false, err
}

// parseMkdir parses "MKDIR <name> [<mode>]".
func parseMkdir(line []byte, f []string) (Message, error) {
	const usage = "MKDIR <name> [<mode>] [uid=N gid=N]"
	if err := wantArgs(line, f, 1, 4, usage); err != nil {
		return nil, err
	}
	if len(f) == 4 {
		return nil, protoErr(line, "uid= and gid= go together (want %s)", usage)
	}
	name, err := parseName(line, f[1])
	if err != nil {
		return nil, err
	}
	m := Mkdir{Name: name}
	if len(f) >= 3 {
		if m.Mode, err = parseMode(line, f[2]); err != nil {
			return nil, err
		}
	}
	if len(f) == 5 {
		uid, ok1 := strings.CutPrefix(f[3], "uid=")
		gid, ok2 := strings.CutPrefix(f[4], "gid=")
		if !ok1 || !ok2 {
			return nil, protoErr(line, "want uid=N gid=N after the mode, got %q %q (%s)", f[3], f[4], usage)
		}
		if m.Uid, err = parseOwner(line, "uid", uid); err != nil {
			return nil, err
		}
		if m.Gid, err = parseOwner(line, "gid", gid); err != nil {
			return nil, err
		}
		m.HasOwner = true
	}
	return m, nil
}

// setattrUsage is the grammar of SETATTR.
const setattrUsage = "SETATTR <name> [size=N] [mode=OOOO] [mtime=NS|now] [atime=NS|now] [uid=N] [gid=N]"

// parseSetattr parses "SETATTR <name> [<key>=<value>...]", each key at
// most once; no attribute at all is a valid no-op that reports the
// attributes.
func parseSetattr(line []byte, f []string) (Message, error) {
	if err := wantArgs(line, f, 1, 7, setattrUsage); err != nil {
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
		var twice bool
		switch k {
		case "size":
			twice = s.HasSize
			s.HasSize = true
			s.Size, err = parseSize(line, "size", v)
		case "mode":
			twice = s.HasMode
			s.HasMode = true
			s.Mode, err = parseMode(line, v)
		case "mtime":
			twice = s.HasMtime
			s.HasMtime = true
			s.Mtime, s.MtimeNow, err = parseTime(line, "mtime", v)
		case "atime":
			twice = s.HasAtime
			s.HasAtime = true
			s.Atime, s.AtimeNow, err = parseTime(line, "atime", v)
		case "uid":
			twice = s.HasUid
			s.HasUid = true
			s.Uid, err = parseOwner(line, "uid", v)
		case "gid":
			twice = s.HasGid
			s.HasGid = true
			s.Gid, err = parseOwner(line, "gid", v)
		default:
			return nil, protoErr(line, "unknown attribute %q (want size, mode, mtime, atime, uid or gid)", k)
		}
		if twice {
			return nil, protoErr(line, "%s given twice", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}
