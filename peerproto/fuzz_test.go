package peerproto_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

// The fuzz targets share one property: no input panics, every error is of a
// documented kind, and whatever parses formats back to one line that parses
// to the same value. Seeds come from the canonical table, the malformed
// table and testdata/fuzz/<Name>/.

func addSeeds(f *testing.F, p parser) {
	for _, tt := range canonical {
		if tt.p.name == p.name {
			f.Add([]byte(tt.wire))
		}
	}
	for _, tt := range posixCanonical {
		if tt.p.name == p.name {
			f.Add([]byte(tt.wire))
		}
	}
}

// checkRoundTrip parses line with p and, if it parses, checks the message
// against the limits and that it survives Format and a second parse.
func checkRoundTrip(t *testing.T, p parser, line []byte) {
	t.Helper()
	if bytes.IndexByte(line, '\n') >= 0 {
		return // ReadLine never yields one: not a line
	}
	m, err := p.parse(line)
	if err != nil {
		var pe *peerproto.ProtocolError
		var fe *peerproto.FailError
		switch {
		case errors.As(err, &pe):
		case errors.As(err, &fe):
			checkFail(t, p, fe)
		default:
			t.Fatalf("%s(%q): error %v (%T) is neither *ProtocolError nor *FailError", p.name, line, err, err)
		}
		if m != nil {
			t.Fatalf("%s(%q): message %#v returned with error %v", p.name, line, m, err)
		}
		return
	}
	checkLimits(t, m)
	out := m.AppendTo(nil)
	if bytes.IndexByte(out, '\n') >= 0 {
		t.Fatalf("%s(%q) = %#v formats to %q: more than one line", p.name, line, m, out)
	}
	m2, err := p.parse(out)
	if err != nil {
		t.Fatalf("%s(%q) = %#v formats to %q, which does not parse: %v", p.name, line, m, out, err)
	}
	if !reflect.DeepEqual(m, m2) && !lossy(m, line) {
		t.Fatalf("%s(%q) = %#v\nformats to %q\nwhich parses to %#v", p.name, line, m, out, m2)
	}
	if out2 := m2.AppendTo(nil); !bytes.Equal(out, out2) {
		t.Fatalf("%s: %q reformats as %q", p.name, out, out2)
	}
}

// lossy reports whether m may legitimately change in a round trip: a
// refusal's text has its CR and LF replaced by spaces so it stays one line.
func lossy(m peerproto.Message, line []byte) bool {
	_, ok := m.(peerproto.Refusal)
	return ok && bytes.IndexByte(line, '\r') >= 0
}

func checkFail(t *testing.T, p parser, fe *peerproto.FailError) {
	t.Helper()
	if fe.Code == "" || strings.ContainsAny(fe.Code, " \t") {
		t.Fatalf("%s: FailError code %q is not one word", p.name, fe.Code)
	}
	if fe.Text != strings.TrimSpace(fe.Text) {
		t.Fatalf("%s: FailError text %q is not trimmed", p.name, fe.Text)
	}
	_ = fe.Errno()
	_ = fe.Error()
}

// checkLimits checks that a parsed message respects limits.go.
func checkLimits(t *testing.T, m peerproto.Message) {
	t.Helper()
	size := func(what string, v int64) {
		if v < 0 || v > peerproto.MaxSize {
			t.Fatalf("%#v: %s %d outside 0..MaxSize", m, what, v)
		}
	}
	name := func(s string) {
		if len(s) > peerproto.MaxName {
			t.Fatalf("%#v: name of %d bytes", m, len(s))
		}
	}
	mode := func(v uint32) {
		if v > 0o7777 {
			t.Fatalf("%#v: mode %o", m, v)
		}
	}
	switch m := m.(type) {
	case peerproto.Register:
		if m.Name != "" && (!peerproto.ValidPeerName(m.Name) || m.Port < 1 || m.Port > 65535) {
			t.Fatalf("%#v: invalid registration", m)
		}
	case peerproto.Update:
		if len(m.Peers) > peerproto.MaxPeers {
			t.Fatalf("UPDATE with %d peers", len(m.Peers))
		}
		for _, p := range m.Peers {
			if p.Name == "" || p.Addr == "" {
				t.Fatalf("%#v: empty peer name or address", m)
			}
		}
	case peerproto.Joined:
		if m.Peer.Name == "" || m.Peer.Addr == "" {
			t.Fatalf("%#v: empty peer name or address", m)
		}
	case peerproto.Peers:
		if m.Count < 0 || m.Count > peerproto.MaxPeers {
			t.Fatalf("%#v: count outside 0..MaxPeers", m)
		}
	case peerproto.Put:
		name(m.Name)
		size("size", m.Size)
	case peerproto.Get:
		name(m.Name)
		size("offset", m.Offset)
		if m.Length != -1 {
			size("length", m.Length)
		} else if m.Offset != 0 {
			t.Fatalf("%#v: offset without length", m)
		}
	case peerproto.Setattr:
		name(m.Name)
		if m.HasSize {
			size("size", m.Size)
		}
		mode(m.Mode)
	case peerproto.Mkdir:
		name(m.Name)
		mode(m.Mode)
	case peerproto.Symlink:
		name(m.Name)
		target(t, m, m.Target)
	case peerproto.Readlink:
		name(m.Name)
	case peerproto.ReadlinkOK:
		target(t, m, m.Target)
	case peerproto.Link:
		name(m.Old)
		name(m.New)
	case peerproto.Mknod:
		name(m.Name)
		mode(m.Mode)
		if !strings.ContainsRune("pscb", rune(m.Type)) || !m.IsDevice() && (m.Major != 0 || m.Minor != 0) {
			t.Fatalf("%#v: not a special file", m)
		}
	case peerproto.PutDone:
		size("size", m.Size)
	case peerproto.GetOK:
		size("size", m.Size)
	case peerproto.ListOK:
		if m.Count < 0 || m.Count > peerproto.MaxListEntries {
			t.Fatalf("LIST OK %d", m.Count)
		}
	case peerproto.StatOK:
		checkEntry(t, m.Entry, false)
	case peerproto.SetattrOK:
		checkEntry(t, m.Entry, false)
	case entryLine:
		checkEntry(t, m.Entry, true)
	case peerproto.Refusal:
		checkFail(t, parser{name: "Refusal"}, m.Err)
	}
}

// target checks a symbolic link's target against the limits.
func target(t *testing.T, m any, s string) {
	t.Helper()
	if s == "" || len(s) > peerproto.MaxTarget || strings.IndexByte(s, 0) >= 0 {
		t.Fatalf("%#v: target of %d bytes", m, len(s))
	}
}

func checkEntry(t *testing.T, e peerproto.Entry, named bool) {
	t.Helper()
	if !peerproto.ValidType(e.Type) {
		t.Fatalf("%#v: type %q", e, e.Type)
	}
	if e.Has&peerproto.AttrLink != 0 {
		target(t, e, e.Target)
	}
	if e.Has&peerproto.AttrBlocks != 0 && e.Blocks < 0 {
		t.Fatalf("%#v: negative blocks", e)
	}
	if e.Mode > 0o7777 || e.Size < 0 || e.Size > peerproto.MaxSize {
		t.Fatalf("%#v: attributes out of range", e)
	}
	if named && (e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") || len(e.Name) > peerproto.MaxName) {
		t.Fatalf("%#v: not a single path element", e)
	}
}

func FuzzParsePeerRequest(f *testing.F) {
	addSeeds(f, peerRequest)
	for _, s := range []string{"GET x 5", "put h%c3%a9 1", "SETATTR f size=1 size=2", "MKDIR d 10000", "LIST %2E", "PUT x 1125899906842625",
		"SYMLINK a %00", "MKNOD f c 0644 1", "MKNOD f p 0644 1 2", "SETATTR f atime=now mtime=NOW", "SETATTR f uid=4294967295", "LINK a"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkRoundTrip(t, peerRequest, line) })
}

func FuzzParseStreamLine(f *testing.F) {
	addSeeds(f, streamLine)
	for _, s := range []string{"data 5", "END 01", "abort", "DATA 1 ", "END\t3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkRoundTrip(t, streamLine, line) })
}

func FuzzParseTrackerRequest(f *testing.F) {
	addSeeds(f, trackerRequest)
	for _, s := range []string{"sync fin", "REGISTER a%2Eb 1", "REGISTER .. 1", "REGISTER a 65536"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkRoundTrip(t, trackerRequest, line) })
}

func FuzzParseTrackerEvent(f *testing.F) {
	addSeeds(f, trackerEvent)
	for _, s := range []string{"UPDATE a@b@h:1", "UPDATE %40@h", "SYNC FAIL FA x", "SYNC\tFAIL\tstate\t a\rb ", "sync end 1", "joined a@b@h:1", "peers 0010"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkRoundTrip(t, trackerEvent, line) })
}

// replyVerbs are the verbs ParseReply is fuzzed with; the fuzzer picks one
// by index, out-of-range indexes included.
var replyVerbs = []string{
	peerproto.VerbConnect, peerproto.VerbPut, peerproto.VerbGet, peerproto.VerbList, peerproto.VerbStat,
	peerproto.VerbSetattr, peerproto.VerbStatfs, peerproto.VerbPing, peerproto.VerbDelete,
	peerproto.VerbRename, peerproto.VerbMkdir, peerproto.VerbRmdir, peerproto.VerbSync, "",
	peerproto.VerbSymlink, peerproto.VerbReadlink, peerproto.VerbLink, peerproto.VerbMknod, peerproto.VerbFeatures,
}

func FuzzParseReply(f *testing.F) {
	seed := func(p parser, wire string) {
		if strings.HasPrefix(p.name, "ParseReply") {
			for i, v := range replyVerbs {
				if p.name == "ParseReply("+v+")" {
					f.Add([]byte(wire), uint8(i))
				}
			}
		}
	}
	for _, tt := range canonical {
		seed(tt.p, tt.wire)
	}
	for _, tt := range posixCanonical {
		seed(tt.p, tt.wire)
	}
	f.Add([]byte("STAT OK c 0644 0 1 rdev=1,2,3"), uint8(4))
	f.Add([]byte("READLINK OK a%00"), uint8(15))
	f.Add([]byte("PUT FAIL nospace disk full"), uint8(1))
	f.Add([]byte("GET FAIL"), uint8(2))
	f.Add([]byte("CONNECT FAIL busy\ttoo many"), uint8(0))
	f.Fuzz(func(t *testing.T, line []byte, verb uint8) {
		v := replyVerbs[int(verb)%len(replyVerbs)]
		checkRoundTrip(t, replyTo(v), line)

		// A refusal also round-trips, through Refusal.
		if bytes.ContainsAny(line, "\r\n") {
			return
		}
		_, err := peerproto.ParseReply(line, v)
		var fe *peerproto.FailError
		if errors.As(err, &fe) {
			if fe.Verb != v {
				t.Fatalf("ParseReply(%q, %q): FailError.Verb %q", line, v, fe.Verb)
			}
			out := peerproto.Refusal{Err: fe}.AppendTo(nil)
			_, err := peerproto.ParseReply(out, v)
			var fe2 *peerproto.FailError
			if !errors.As(err, &fe2) || *fe2 != *fe {
				t.Fatalf("refusal %#v formats to %q, which parses to %v", fe, out, err)
			}
		}
	})
}

func FuzzParseEntry(f *testing.F) {
	addSeeds(f, entryParser)
	for _, s := range []string{"f 644 5 1 h%c3%a9", "f 0644 5 1 %2E%2E", "d 0755 0 0 a%2Fb", "l 0777 1 1 a link=", "c 0600 0 0 n rdev=1,x ino=1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkRoundTrip(t, entryParser, line) })
}

// FuzzNames checks EncodeName/DecodeName both ways, and that CleanPath's
// output is canonical and confined.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"", ".", "a b", "100%", "%41", "h%c3%a9", "a/../b", "/etc", "x\x00", "\xff\r\n\t", "%zz", "a//b/./"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := string(data)

		// Any string encodes to one printable-ASCII token that decodes back.
		tok := peerproto.EncodeName(s)
		if tok == "" {
			t.Fatalf("EncodeName(%q) is empty", s)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("EncodeName(%q) = %q: byte %#x unescaped", s, tok, c)
			}
		}
		back, err := peerproto.DecodeName(tok)
		want := s
		if s == "" {
			want = "."
		}
		if err != nil || back != want {
			t.Fatalf("DecodeName(EncodeName(%q)) = %q, %v", s, back, err)
		}

		// Any token that decodes re-encodes to a token decoding the same.
		if dec, err := peerproto.DecodeName(s); err == nil {
			if again, err := peerproto.DecodeName(peerproto.EncodeName(dec)); err != nil || (again != dec && dec != "") {
				t.Fatalf("token %q decodes to %q, re-encoded decodes to %q, %v", s, dec, again, err)
			}
			if len(dec) > len(s) {
				t.Fatalf("DecodeName(%q) grew to %d bytes", s, len(dec))
			}
		}

		// CleanPath: canonical, relative, confined, idempotent.
		clean, err := peerproto.CleanPath(s)
		if err != nil {
			return
		}
		if clean != "" {
			for _, el := range strings.Split(clean, "/") {
				if el == "" || el == "." || el == ".." || len(el) > peerproto.MaxComponent {
					t.Fatalf("CleanPath(%q) = %q: element %q", s, clean, el)
				}
			}
		}
		if strings.IndexByte(clean, 0) >= 0 || len(clean) > peerproto.MaxName {
			t.Fatalf("CleanPath(%q) = %q", s, clean)
		}
		if again, err := peerproto.CleanPath(clean); err != nil || again != clean {
			t.Fatalf("CleanPath(%q) = %q, but CleanPath(%q) = %q, %v", s, clean, clean, again, err)
		}
	})
}

// FuzzReadLine compares ReadLine with a plain split on "\n", through
// buffers of different sizes.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("PUT x 5\r\nabcde"), uint16(0))
	f.Add([]byte("a\nb\r\n\r\n\n"), uint16(1))
	f.Add([]byte("a\r\r\nno end"), uint16(100))
	f.Add(bytes.Repeat([]byte("x"), 100), uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, bufSize uint16) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16+int(bufSize))
		rest := data
		for {
			line, err := peerproto.ReadLine(r)
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				switch {
				case len(rest) == 0 && err == io.EOF:
				case len(rest) > 0 && err == io.ErrUnexpectedEOF:
				case len(rest) >= peerproto.MaxLine && errors.Is(err, peerproto.ErrLineTooLong):
				default:
					t.Fatalf("at %q: ReadLine = %q, %v", rest, line, err)
				}
				return
			}
			seg := rest[:i+1]
			if len(seg) > peerproto.MaxLine {
				if !errors.Is(err, peerproto.ErrLineTooLong) {
					t.Fatalf("line of %d bytes: ReadLine = %d bytes, %v", len(seg), len(line), err)
				}
				return
			}
			want := bytes.TrimSuffix(bytes.TrimSuffix(seg, []byte("\n")), []byte("\r"))
			if err != nil || !bytes.Equal(line, want) {
				t.Fatalf("ReadLine = %q, %v; want %q", line, err, want)
			}
			rest = rest[i+1:]
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{"WATCH OK .", "UNWATCH OK a%20b", "CHANGED f 0644 5 1 a/b ino=1 nlink=2 ver=0123456789abcdef",
		"CHANGED d 0755 0 1 .", "GONE x", "UNWATCHED a/b", "RESET", "TICK", "PONG", "WATCH FAIL toolarge too many", "changed f 0644 1 1 ./x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkRoundTrip(t, watchEvent, line) })
}
