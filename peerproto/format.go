package peerproto

// Formatting: every message's Verb and AppendTo.

import "strconv"

// Verb implementations.
func (Register) Verb() string   { return VerbRegister }
func (Sync) Verb() string       { return VerbSync }
func (SyncFin) Verb() string    { return VerbSync }
func (RegisterOK) Verb() string { return VerbRegister }
func (Update) Verb() string     { return VerbUpdate }
func (SyncOK) Verb() string     { return VerbSync }
func (SyncRead) Verb() string   { return VerbSync }
func (SyncEnd) Verb() string    { return VerbSync }
func (Writes) Verb() string     { return VerbWrites }
func (WritesOK) Verb() string   { return VerbWrites }
func (Peers) Verb() string      { return VerbPeers }
func (Joined) Verb() string     { return VerbJoined }
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
func (Symlink) Verb() string    { return VerbSymlink }
func (Readlink) Verb() string   { return VerbReadlink }
func (Link) Verb() string       { return VerbLink }
func (Mknod) Verb() string      { return VerbMknod }
func (ReadlinkOK) Verb() string { return VerbReadlink }

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
		b = appendPeerAddr(b, p)
	}
	return b
}

// AppendTo implements Message.
func (m Writes) AppendTo(b []byte) []byte {
	if m.Held {
		return append(b, "WRITES held"...)
	}
	return append(b, "WRITES none"...)
}

// AppendTo implements Message.
func (WritesOK) AppendTo(b []byte) []byte { return append(b, "WRITES OK"...) }

// AppendTo implements Message.
func (m Peers) AppendTo(b []byte) []byte {
	b = append(b, VerbPeers...)
	return appendInt(b, int64(m.Count))
}

// AppendTo implements Message.
func (m Joined) AppendTo(b []byte) []byte {
	b = append(b, VerbJoined...)
	return appendPeerAddr(b, m.Peer)
}

// appendPeerAddr appends " <name>@<addr>", the form of UPDATE and JOINED.
func appendPeerAddr(b []byte, p PeerAddr) []byte {
	b = append(b, ' ')
	b = append(b, EncodeName(p.Name)...)
	b = append(b, '@')
	return append(b, p.Addr...)
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
	if m.Delta {
		b = append(b, " delta="...)
		b = strconv.AppendInt(b, m.NewSize, 10)
		for i, r := range m.Ranges {
			if i == 0 {
				b = append(b, " ranges="...)
			} else {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, r.Off, 10)
			b = append(b, ':')
			b = strconv.AppendInt(b, r.Len, 10)
		}
	}
	if m.Stream {
		b = append(b, " stream"...)
	}
	if m.Setid {
		b = append(b, " setid"...)
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
	if m.Mode != 0 || m.HasOwner {
		b = appendMode(b, m.Mode)
	}
	if m.HasOwner {
		b = strconv.AppendUint(append(b, " uid="...), uint64(m.Uid), 10)
		b = strconv.AppendUint(append(b, " gid="...), uint64(m.Gid), 10)
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
		b = appendTime(append(b, " mtime="...), m.Mtime, m.MtimeNow)
	}
	if m.HasAtime {
		b = appendTime(append(b, " atime="...), m.Atime, m.AtimeNow)
	}
	if m.HasUid {
		b = strconv.AppendUint(append(b, " uid="...), uint64(m.Uid), 10)
	}
	if m.HasGid {
		b = strconv.AppendUint(append(b, " gid="...), uint64(m.Gid), 10)
	}
	return b
}

// appendTime appends a SETATTR time: ns, or "now".
func appendTime(b []byte, ns int64, now bool) []byte {
	if now {
		return append(b, "now"...)
	}
	return strconv.AppendInt(b, ns, 10)
}

// AppendTo implements Message.
func (m Symlink) AppendTo(b []byte) []byte {
	return appendName(appendName(append(b, VerbSymlink...), m.Name), m.Target)
}

// AppendTo implements Message.
func (m Readlink) AppendTo(b []byte) []byte { return appendName(append(b, VerbReadlink...), m.Name) }

// AppendTo implements Message.
func (m Link) AppendTo(b []byte) []byte {
	return appendName(appendName(append(b, VerbLink...), m.Old), m.New)
}

// AppendTo implements Message.
func (m Mknod) AppendTo(b []byte) []byte {
	b = appendName(append(b, VerbMknod...), m.Name)
	b = append(b, ' ', m.Type)
	b = appendMode(b, m.Mode)
	if m.IsDevice() {
		b = appendInt(b, int64(m.Major))
		b = appendInt(b, int64(m.Minor))
	}
	return b
}

// AppendTo implements Message.
func (m ReadlinkOK) AppendTo(b []byte) []byte {
	return appendName(append(b, "READLINK OK"...), m.Target)
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
	a := m.Attrs
	a.Has &^= AttrLink | AttrRdev // a regular file's: never a target or device number
	a.Ver = ""
	b = appendAttrWords(appendInt(appendInt(append(b, "PUT DONE"...), m.Size), m.Mtime), a)
	if m.DirTimes {
		b = strconv.AppendInt(append(b, " dir-mtime="...), m.DirMtime, 10)
		b = strconv.AppendInt(append(b, " dir-ctime="...), m.DirCtime, 10)
	}
	if m.PreDirTimes {
		b = strconv.AppendInt(append(b, " pre-dir-mtime="...), m.PreDirMtime, 10)
		b = strconv.AppendInt(append(b, " pre-dir-ctime="...), m.PreDirCtime, 10)
	}
	return appendVer(b, m.Ver)
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
	return appendAttrWords(appendInt(b, e.Mtime), e)
}

// appendAttrWords appends e's attribute words: those of e.Has, in the
// order of Attr, then its version token.
func appendAttrWords(b []byte, e Entry) []byte {
	if e.Has&AttrIno != 0 {
		b = strconv.AppendUint(append(b, " ino="...), e.Ino, 10)
	}
	if e.Has&AttrNlink != 0 {
		b = strconv.AppendUint(append(b, " nlink="...), e.Nlink, 10)
	}
	if e.Has&AttrUid != 0 {
		b = strconv.AppendUint(append(b, " uid="...), uint64(e.Uid), 10)
	}
	if e.Has&AttrGid != 0 {
		b = strconv.AppendUint(append(b, " gid="...), uint64(e.Gid), 10)
	}
	if e.Has&AttrAtime != 0 {
		b = strconv.AppendInt(append(b, " atime="...), e.Atime, 10)
	}
	if e.Has&AttrCtime != 0 {
		b = strconv.AppendInt(append(b, " ctime="...), e.Ctime, 10)
	}
	if e.Has&AttrBlocks != 0 {
		b = strconv.AppendInt(append(b, " blocks="...), e.Blocks, 10)
	}
	if e.Has&AttrLink != 0 {
		b = append(append(b, " link="...), EncodeName(e.Target)...)
	}
	if e.Has&AttrRdev != 0 {
		b = strconv.AppendUint(append(b, " rdev="...), uint64(e.RdevMajor), 10)
		b = strconv.AppendUint(append(b, ','), uint64(e.RdevMinor), 10)
	}
	return appendVer(b, e.Ver)
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
	return appendAttrWords(appendName(b, e.Name), e)
}
