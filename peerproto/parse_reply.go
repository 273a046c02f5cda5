package peerproto

// Parsing a peer's replies, and LIST entry lines.

import (
	"strconv"
	"strings"
)

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
//	READLINK ReadlinkOK
//	SUM      SumOK
//	PING     Pong
//	DELETE, RENAME, MKDIR, RMDIR, FSYNC, SYMLINK, LINK, MKNOD  OK
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
	var m Message
	var err error
	switch verb {
	case VerbConnect:
		if word == "OK" && len(args) == 0 {
			m = ConnectOK{}
		}
	case VerbPut:
		m, err = parsePutReply(line, word, args)
	case VerbGet:
		if word == "OK" && len(args) == 1 {
			var size int64
			size, err = parseSize(line, "size", args[0])
			m = GetOK{Size: size}
		}
	case VerbList:
		if word == "OK" && len(args) == 1 {
			n, aerr := strconv.Atoi(args[0])
			if aerr != nil || n < 0 || n > MaxListEntries {
				return nil, protoErr(line, "entry count %q is not 0-%d", args[0], MaxListEntries)
			}
			m = ListOK{Count: n}
		}
	case VerbStat, VerbSetattr:
		m, err = parseStatReply(line, verb, word, args)
	case VerbStatfs:
		m, err = parseStatfsReply(line, word, args)
	case VerbDelete, VerbRename, VerbMkdir, VerbRmdir, VerbFsync, VerbSymlink, VerbLink, VerbMknod:
		if word == "OK" && len(args) == 0 {
			m = OK{Of: verb}
		}
	case VerbReadlink:
		if word == "OK" && len(args) == 1 {
			var target string
			target, err = parseTarget(line, args[0])
			m = ReadlinkOK{Target: target}
		}
	case VerbFeatures:
		if word == "OK" {
			m, err = parseFeaturesOK(line, args)
		}
	case VerbSum:
		if word == "OK" {
			m, err = parseSumOK(line, args)
		}
	default:
		return nil, protoErr(line, "no reply is defined for verb %q", verb)
	}
	switch {
	case err != nil:
		return nil, err
	case m == nil:
		return nil, protoErr(line, "malformed %s reply", verb)
	}
	return m, nil
}

// parsePutReply parses "PUT OK" or "PUT DONE <size> <mtime> [attrs]";
// nil for anything else.
func parsePutReply(line []byte, word string, args []string) (Message, error) {
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
		var e Entry
		if err := parseAttrWords(line, args[2:], &e); err != nil {
			return nil, err
		}
		ver := e.Ver
		e.Ver = ""
		e.Has &^= AttrLink | AttrRdev
		e.Target, e.RdevMajor, e.RdevMinor = "", 0, 0
		m := PutDone{Size: size, Mtime: mtime, Ver: ver, Attrs: e}
		var dm, dc, pm, pc bool
		for _, w := range args[2:] {
			k, v, _ := strings.Cut(w, "=")
			switch k {
			case "dir-mtime":
				m.DirMtime, err = parseInt64(line, k, v)
				dm = true
			case "dir-ctime":
				m.DirCtime, err = parseInt64(line, k, v)
				dc = true
			case "pre-dir-mtime":
				m.PreDirMtime, err = parseInt64(line, k, v)
				pm = true
			case "pre-dir-ctime":
				m.PreDirCtime, err = parseInt64(line, k, v)
				pc = true
			}
			if err != nil {
				return nil, err
			}
		}
		// A pair given in part says nothing.
		if m.DirTimes = dm && dc; !m.DirTimes {
			m.DirMtime, m.DirCtime = 0, 0
		}
		if m.PreDirTimes = pm && pc; !m.PreDirTimes {
			m.PreDirMtime, m.PreDirCtime = 0, 0
		}
		return m, nil
	}
	return nil, nil
}

// parseStatReply parses "STAT OK" or "SETATTR OK" with an entry's
// attributes; nil for anything else.
func parseStatReply(line []byte, verb, word string, args []string) (Message, error) {
	if word != "OK" || len(args) < 4 {
		return nil, nil
	}
	e, err := parseAttrs(line, args[:4])
	if err != nil {
		return nil, err
	}
	if err := parseAttrWords(line, args[4:], &e); err != nil {
		return nil, err
	}
	if verb == VerbStat {
		return StatOK{Entry: e}, nil
	}
	return SetattrOK{Entry: e}, nil
}

// parseStatfsReply parses "STATFS OK <total> <free> <avail>"; nil for
// anything else.
func parseStatfsReply(line []byte, word string, args []string) (Message, error) {
	if word != "OK" || len(args) != 3 {
		return nil, nil
	}
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

// parseFeaturesOK parses the words of "FEATURES OK [<word>...]": feature
// words, and attribute words (id=<hex>; unknown keys are skipped).
func parseFeaturesOK(line []byte, args []string) (Message, error) {
	m := FeaturesOK{Words: []string{}}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
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

// parseAttrWords parses the "<key>=<value>" words that end an entry on a
// connection with FeatureAttrs on into e: its version token, and the
// attributes of Attr. Unknown keys are skipped (a newer peer may send
// more); a malformed word or value is a protocol error. A key given
// twice keeps its last value.
func parseAttrWords(line []byte, words []string, e *Entry) error {
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return protoErr(line, "attribute %q is not <key>=<value>", w)
		}
		var err error
		switch k {
		case "ver":
			if !ValidVersionToken(v) {
				return protoErr(line, "ver %q is not a version token", v)
			}
			e.Ver = v
		case "ino":
			e.Ino, err = parseUint64(line, k, v)
			e.Has |= AttrIno
		case "nlink":
			e.Nlink, err = parseUint64(line, k, v)
			e.Has |= AttrNlink
		case "uid":
			e.Uid, err = parseUint32(line, k, v)
			e.Has |= AttrUid
		case "gid":
			e.Gid, err = parseUint32(line, k, v)
			e.Has |= AttrGid
		case "atime":
			e.Atime, err = parseInt64(line, k, v)
			e.Has |= AttrAtime
		case "ctime":
			e.Ctime, err = parseInt64(line, k, v)
			e.Has |= AttrCtime
		case "blocks":
			e.Blocks, err = parseSize(line, k, v)
			e.Has |= AttrBlocks
		case "link":
			e.Target, err = parseTarget(line, v)
			e.Has |= AttrLink
		case "rdev":
			maj, min, ok := strings.Cut(v, ",")
			if !ok {
				return protoErr(line, "rdev %q is not <major>,<minor>", v)
			}
			if e.RdevMajor, err = parseUint32(line, "rdev major", maj); err == nil {
				e.RdevMinor, err = parseUint32(line, "rdev minor", min)
			}
			e.Has |= AttrRdev
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseUint64 parses a decimal number of 0 to 2^64-1.
func parseUint64(line []byte, what, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, protoErr(line, "%s %q is not a non-negative integer", what, s)
	}
	return v, nil
}

func parseAttrs(line []byte, a []string) (Entry, error) {
	var e Entry
	if len(a[0]) != 1 || !ValidType(a[0][0]) {
		return e, protoErr(line, "type %q is not f, d, l, p, s, c or b", a[0])
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
	return parseEntry(line, false)
}

// parseEntry is ParseEntry; with path, the name may be a clean path
// from the export's root ("." for the root).
func parseEntry(line []byte, path bool) (Entry, error) {
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
	switch {
	case path:
		if p, err := CleanPath(e.Name); err != nil || p != rootName(e.Name) {
			return e, protoErr(line, "entry path %q is not a clean path", e.Name)
		}
		e.Name = rootName(e.Name)
	case e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00"):
		return e, protoErr(line, "entry name %q is not a single path element", e.Name)
	}
	if err := parseAttrWords(line, f[5:], &e); err != nil {
		return e, err
	}
	return e, nil
}
