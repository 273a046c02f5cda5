package peerproto_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

// A parser is one of the package's parse functions, seen uniformly.
type parser struct {
	name  string
	parse func([]byte) (peerproto.Message, error)
}

var (
	peerRequest    = parser{"ParsePeerRequest", peerproto.ParsePeerRequest}
	trackerRequest = parser{"ParseTrackerRequest", peerproto.ParseTrackerRequest}
	trackerEvent   = parser{"ParseTrackerEvent", peerproto.ParseTrackerEvent}
	streamLine     = parser{"ParseStreamLine", peerproto.ParseStreamLine}
	watchEvent     = parser{"ParseEvent", peerproto.ParseEvent}
)

func replyTo(verb string) parser {
	return parser{"ParseReply(" + verb + ")", func(line []byte) (peerproto.Message, error) {
		return peerproto.ParseReply(line, verb)
	}}
}

// entryParser wraps ParseEntry and AppendEntry as a Message, so entry lines
// go through the same tables as messages.
type entryLine struct{ peerproto.Entry }

func (entryLine) Verb() string                  { return "" }
func (e entryLine) AppendTo(b []byte) []byte    { return peerproto.AppendEntry(b, e.Entry) }
func entry(e peerproto.Entry) peerproto.Message { return entryLine{e} }

var entryParser = parser{"ParseEntry", func(line []byte) (peerproto.Message, error) {
	e, err := peerproto.ParseEntry(line)
	if err != nil {
		return nil, err
	}
	return entryLine{e}, nil
}}

const mtime = 1700000000123456789

// canonical lists every message in its canonical wire form: Format(msg) is
// exactly wire, and parsing wire gives msg back.
var canonical = []struct {
	p    parser
	msg  peerproto.Message
	wire string
	verb string
}{
	// peer -> tracker
	{trackerRequest, peerproto.Register{}, "REGISTER", "REGISTER"},
	{trackerRequest, peerproto.Register{Name: "alice", Port: 7000}, "REGISTER alice 7000", "REGISTER"},
	{trackerRequest, peerproto.Sync{}, "SYNC", "SYNC"},
	{trackerRequest, peerproto.SyncFin{}, "SYNC FIN", "SYNC"},
	{trackerRequest, peerproto.SyncFin{Known: true}, "SYNC FIN clean", "SYNC"},
	{trackerRequest, peerproto.SyncFin{Known: true, Wrote: true}, "SYNC FIN wrote", "SYNC"},
	{trackerRequest, peerproto.Ping{}, "PING", "PING"},
	{trackerRequest, peerproto.Quit{}, "QUIT", "QUIT"},
	{trackerRequest, peerproto.Features{Words: []string{"left"}}, "FEATURES left", "FEATURES"},
	{trackerRequest, peerproto.Features{Words: []string{"left", "x-2"}}, "FEATURES left x-2", "FEATURES"},
	{trackerRequest, peerproto.Features{}, "FEATURES", "FEATURES"},
	{trackerRequest, peerproto.Features{Words: []string{"left", "turns", "deltas"}}, "FEATURES left turns deltas", "FEATURES"},
	{trackerRequest, peerproto.Writes{Held: true}, "WRITES held", "WRITES"},
	{trackerRequest, peerproto.Writes{}, "WRITES none", "WRITES"},

	// tracker -> peer
	{trackerEvent, peerproto.RegisterOK{}, "REGISTER OK", "REGISTER"},
	{trackerEvent, peerproto.Update{Peers: []peerproto.PeerAddr{{Name: "a", Addr: "127.0.0.1:1"}, {Name: "b", Addr: "[::1]:2"}}},
		"UPDATE a@127.0.0.1:1 b@[::1]:2", "UPDATE"},
	{trackerEvent, peerproto.Update{Peers: []peerproto.PeerAddr{}}, "UPDATE", "UPDATE"},
	{trackerEvent, peerproto.SyncOK{}, "SYNC OK", "SYNC"},
	{trackerEvent, peerproto.SyncRead{}, "SYNC READ", "SYNC"},
	{trackerEvent, peerproto.SyncEnd{Round: 3}, "SYNC END 3", "SYNC"},
	{trackerEvent, peerproto.SyncEnd{Round: 1<<64 - 1}, "SYNC END 18446744073709551615", "SYNC"},
	{trackerEvent, peerproto.SyncEnd{Round: 4, WritersKnown: true}, "SYNC END 4 writers=", "SYNC"},
	{trackerEvent, peerproto.SyncEnd{Round: 5, WritersKnown: true, Writers: []string{"alice", "bob-2"}}, "SYNC END 5 writers=alice,bob-2", "SYNC"},
	{trackerEvent, peerproto.Pong{}, "PONG", "PONG"},
	{trackerEvent, peerproto.FeaturesOK{Words: []string{"left"}}, "FEATURES OK left", "FEATURES"},
	{trackerEvent, peerproto.FeaturesOK{Words: []string{}}, "FEATURES OK", "FEATURES"},
	{trackerEvent, peerproto.Left{Name: "bob", How: peerproto.LeftQuit}, "LEFT bob quit", "LEFT"},
	{trackerEvent, peerproto.Left{Name: "b.o_b-2", How: peerproto.LeftDropped}, "LEFT b.o_b-2 dropped", "LEFT"},
	{trackerEvent, peerproto.WritesOK{}, "WRITES OK", "WRITES"},
	{trackerEvent, peerproto.Peers{Count: 0}, "PEERS 0", "PEERS"},
	{trackerEvent, peerproto.Peers{Count: peerproto.MaxPeers}, "PEERS 10000", "PEERS"},
	{trackerEvent, peerproto.Joined{Peer: peerproto.PeerAddr{Name: "a", Addr: "127.0.0.1:1"}}, "JOINED a@127.0.0.1:1", "JOINED"},
	{trackerEvent, peerproto.Joined{Peer: peerproto.PeerAddr{Name: "b", Addr: "[::1]:2"}}, "JOINED b@[::1]:2", "JOINED"},
	{trackerEvent, peerproto.Refusal{Err: peerproto.Fail("WRITES", peerproto.CodeState, "register first")},
		"WRITES FAIL state register first", "WRITES"},
	{trackerEvent, peerproto.Refusal{Err: peerproto.Fail("FEATURES", peerproto.CodeInvalid, `unknown verb "FEATURES"`)},
		`FEATURES FAIL invalid unknown verb "FEATURES"`, "FEATURES"},
	{trackerEvent, peerproto.Refusal{Err: peerproto.Fail("REGISTER", peerproto.CodeExists, "name alice is held by 10.0.0.2:7000")},
		"REGISTER FAIL exists name alice is held by 10.0.0.2:7000", "REGISTER"},
	{trackerEvent, peerproto.Refusal{Err: peerproto.Fail("SYNC", peerproto.CodeExpired, "lease of 30s ran out")},
		"SYNC FAIL expired lease of 30s ran out", "SYNC"},
	{trackerEvent, peerproto.Refusal{Err: peerproto.Fail("SYNC", peerproto.CodeState, "")}, "SYNC FAIL state", "SYNC"},

	// client -> peer
	{peerRequest, peerproto.Put{Name: "x", Size: 5}, "PUT x 5", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 5, Async: true}, "PUT x 5 async", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 5, Async: true, Base: 1732530000123456789}, "PUT x 5 async base=1732530000123456789", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 5, Base: peerproto.BaseNone}, "PUT x 5 base=none", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 5, Inline: true}, "PUT x 5 inline", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 5, Async: true, Inline: true, Base: peerproto.BaseNone}, "PUT x 5 async inline base=none", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 5, Async: true, Inline: true, Ver: "0123456789abcdef"}, "PUT x 5 async inline ver=0123456789abcdef", "PUT"},
	{peerRequest, peerproto.Put{Name: "big", Size: 4096, Async: true, Inline: true, Ver: "0123456789abcdef",
		Delta: true, NewSize: 536875008, Ranges: []peerproto.Range{{Off: 536870912, Len: 4096}}},
		"PUT big 4096 async inline ver=0123456789abcdef delta=536875008 ranges=536870912:4096", "PUT"},
	{peerRequest, peerproto.Put{Name: "db", Size: 7, Ver: "ab", Delta: true, NewSize: 1 << 40,
		Ranges: []peerproto.Range{{Off: 0, Len: 1}, {Off: 4096, Len: 2}, {Off: 1<<40 - 4, Len: 4}}},
		"PUT db 7 ver=ab delta=1099511627776 ranges=0:1,4096:2,1099511627772:4", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 0, Ver: "ab", Delta: true, NewSize: 10}, "PUT x 0 ver=ab delta=10", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 0, Async: true, Ver: "ab", Delta: true}, "PUT x 0 async ver=ab delta=0", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 0, Async: true, Base: peerproto.BaseNone, Stream: true}, "PUT x 0 async base=none stream", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 0, Async: true, Ver: "ab", Stream: true, Setid: true}, "PUT x 0 async ver=ab stream setid", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 5, Async: true, Inline: true, Ver: "ab", Delta: true, NewSize: 9,
		Ranges: []peerproto.Range{{Off: 4, Len: 5}}, Setid: true}, "PUT x 5 async inline ver=ab delta=9 ranges=4:5 setid", "PUT"},
	{peerRequest, peerproto.Put{Name: "x", Size: 4096, Ver: "ab", Stream: true}, "PUT x 4096 ver=ab stream", "PUT"},
	{streamLine, peerproto.PutData{Len: 1}, "DATA 1", "DATA"},
	{streamLine, peerproto.PutData{Len: peerproto.MaxChunk}, "DATA 16777216", "DATA"},
	{streamLine, peerproto.PutEnd{Size: 0}, "END 0", "END"},
	{streamLine, peerproto.PutEnd{Size: peerproto.MaxSize}, "END 1125899906842624", "END"},
	{streamLine, peerproto.PutAbort{}, "ABORT", "ABORT"},
	{peerRequest, peerproto.Sum{Name: "dir/a b"}, "SUM dir/a%20b", "SUM"},
	{replyTo("SUM"), peerproto.SumOK{Size: 3, Sum: [32]byte{0xba, 0x78, 31: 0xad}},
		"SUM OK 3 ba78" + strings.Repeat("00", 29) + "ad", "SUM"},
	{peerRequest, peerproto.Fsync{}, "FSYNC", "FSYNC"},
	{peerRequest, peerproto.Features{}, "FEATURES", "FEATURES"},
	{peerRequest, peerproto.Features{Words: []string{"attrs", "x-2"}}, "FEATURES attrs x-2", "FEATURES"},
	{peerRequest, peerproto.Fsync{Names: []string{"a b", "d/x"}}, "FSYNC a%20b d/x", "FSYNC"},
	{peerRequest, peerproto.Put{Name: "dir/a b%.txt", Size: 0}, "PUT dir/a%20b%25.txt 0", "PUT"},
	{peerRequest, peerproto.Put{Name: "big", Size: peerproto.MaxSize}, "PUT big 1125899906842624", "PUT"},
	{peerRequest, peerproto.Get{Name: "x", Length: -1}, "GET x", "GET"},
	{peerRequest, peerproto.Get{Name: "x", Length: 5}, "GET x 0 5", "GET"},
	{peerRequest, peerproto.Get{Name: "x", Offset: 10, Length: 5}, "GET x 10 5", "GET"},
	{peerRequest, peerproto.List{}, "LIST .", "LIST"},
	{peerRequest, peerproto.List{Dir: "photos/2024"}, "LIST photos/2024", "LIST"},
	{peerRequest, peerproto.Stat{Name: "a/b"}, "STAT a/b", "STAT"},
	{peerRequest, peerproto.Stat{}, "STAT .", "STAT"},
	{peerRequest, peerproto.Delete{Name: "héllo"}, "DELETE h%C3%A9llo", "DELETE"},
	{peerRequest, peerproto.Rename{From: "a", To: "b c"}, "RENAME a b%20c", "RENAME"},
	{peerRequest, peerproto.Mkdir{Name: "d"}, "MKDIR d", "MKDIR"},
	{peerRequest, peerproto.Mkdir{Name: "d", Mode: 0o700}, "MKDIR d 0700", "MKDIR"},
	{peerRequest, peerproto.Mkdir{Name: "d", Mode: 0o1777}, "MKDIR d 01777", "MKDIR"},
	{peerRequest, peerproto.Mkdir{Name: "d", Mode: 0o700, HasOwner: true, Uid: 1000, Gid: 100}, "MKDIR d 0700 uid=1000 gid=100", "MKDIR"},
	{peerRequest, peerproto.Mkdir{Name: "d", HasOwner: true}, "MKDIR d 00 uid=0 gid=0", "MKDIR"},
	{peerRequest, peerproto.Rmdir{Name: "d"}, "RMDIR d", "RMDIR"},
	{peerRequest, peerproto.Setattr{Name: "f"}, "SETATTR f", "SETATTR"},
	{peerRequest, peerproto.Setattr{Name: "f", HasSize: true, Size: 10}, "SETATTR f size=10", "SETATTR"},
	{peerRequest, peerproto.Setattr{Name: "f", HasMode: true, Mode: 0o644}, "SETATTR f mode=0644", "SETATTR"},
	{peerRequest, peerproto.Setattr{Name: "f", HasMtime: true, Mtime: -1}, "SETATTR f mtime=-1", "SETATTR"},
	{peerRequest, peerproto.Setattr{Name: "f", HasSize: true, HasMode: true, Mode: 0o4755, HasMtime: true, Mtime: mtime},
		"SETATTR f size=0 mode=04755 mtime=1700000000123456789", "SETATTR"},
	{peerRequest, peerproto.Statfs{}, "STATFS", "STATFS"},
	{peerRequest, peerproto.Ping{}, "PING", "PING"},
	{peerRequest, peerproto.Quit{}, "QUIT", "QUIT"},

	// peer -> client
	{replyTo("CONNECT"), peerproto.ConnectOK{}, "CONNECT OK", "CONNECT"},
	{replyTo("PUT"), peerproto.PutOK{}, "PUT OK", "PUT"},
	{replyTo("PUT"), peerproto.PutDone{Size: 5, Mtime: mtime}, "PUT DONE 5 1700000000123456789", "PUT"},
	{replyTo("PUT"), peerproto.PutDone{Size: 5, Mtime: mtime, Ver: "00ff"}, "PUT DONE 5 1700000000123456789 ver=00ff", "PUT"},
	{replyTo("PUT"), peerproto.PutDone{Size: 5, Mtime: mtime, Ver: "00ff", Attrs: peerproto.Entry{
		Has: peerproto.AttrIno | peerproto.AttrNlink | peerproto.AttrUid | peerproto.AttrGid | peerproto.AttrAtime | peerproto.AttrCtime | peerproto.AttrBlocks,
		Ino: 7, Nlink: 1, Uid: 1000, Gid: 100, Atime: mtime - 1, Ctime: mtime + 1, Blocks: 8}},
		"PUT DONE 5 1700000000123456789 ino=7 nlink=1 uid=1000 gid=100 atime=1700000000123456788 ctime=1700000000123456790 blocks=8 ver=00ff", "PUT"},
	{replyTo("PUT"), peerproto.PutDone{Size: 5, Mtime: mtime, Ver: "00ff", Attrs: peerproto.Entry{Has: peerproto.AttrCtime, Ctime: mtime + 1},
		DirTimes: true, DirMtime: mtime + 2, DirCtime: mtime + 3, PreDirTimes: true, PreDirMtime: mtime - 2, PreDirCtime: mtime - 1},
		"PUT DONE 5 1700000000123456789 ctime=1700000000123456790 dir-mtime=1700000000123456791 dir-ctime=1700000000123456792 pre-dir-mtime=1700000000123456787 pre-dir-ctime=1700000000123456788 ver=00ff", "PUT"},
	{replyTo("GET"), peerproto.GetOK{Size: 5}, "GET OK 5", "GET"},
	{replyTo("FEATURES"), peerproto.FeaturesOK{Words: []string{}}, "FEATURES OK", "FEATURES"},
	{replyTo("FEATURES"), peerproto.FeaturesOK{Words: []string{"inline", "x-2"}}, "FEATURES OK inline x-2", "FEATURES"},
	{replyTo("FEATURES"), peerproto.FeaturesOK{Words: []string{"attrs"}, ID: "0123456789abcdef0123456789abcdef"},
		"FEATURES OK attrs id=0123456789abcdef0123456789abcdef", "FEATURES"},
	{replyTo("GET"), peerproto.GetOK{}, "GET OK 0", "GET"},
	{replyTo("LIST"), peerproto.ListOK{Count: 2}, "LIST OK 2", "LIST"},
	{replyTo("LIST"), peerproto.ListOK{Count: peerproto.MaxListEntries}, "LIST OK 1048576", "LIST"},
	{replyTo("STAT"), peerproto.StatOK{Entry: peerproto.Entry{Type: 'f', Mode: 0o644, Size: 5, Mtime: mtime}},
		"STAT OK f 0644 5 1700000000123456789", "STAT"},
	{replyTo("STAT"), peerproto.StatOK{Entry: peerproto.Entry{Type: 'd', Mode: 0o755, Size: 4096, Mtime: -5}},
		"STAT OK d 0755 4096 -5", "STAT"},
	{replyTo("STAT"), peerproto.StatOK{Entry: peerproto.Entry{Type: 'f'}}, "STAT OK f 00 0 0", "STAT"},
	{replyTo("STAT"), peerproto.StatOK{Entry: peerproto.Entry{Type: 'f', Mode: 0o644, Size: 5, Mtime: 1, Ver: "abc"}},
		"STAT OK f 0644 5 1 ver=abc", "STAT"},
	{replyTo("SETATTR"), peerproto.SetattrOK{Entry: peerproto.Entry{Type: 'f', Mode: 0o600, Size: 10, Mtime: 1, Ver: "1"}},
		"SETATTR OK f 0600 10 1 ver=1", "SETATTR"},
	{replyTo("SETATTR"), peerproto.SetattrOK{Entry: peerproto.Entry{Type: 'f', Mode: 0o600, Size: 10, Mtime: 1}},
		"SETATTR OK f 0600 10 1", "SETATTR"},
	{replyTo("STATFS"), peerproto.StatfsOK{Total: 100, Free: 50, Avail: 40}, "STATFS OK 100 50 40", "STATFS"},
	{replyTo("DELETE"), peerproto.OK{Of: "DELETE"}, "DELETE OK", "DELETE"},
	{replyTo("RENAME"), peerproto.OK{Of: "RENAME"}, "RENAME OK", "RENAME"},
	{replyTo("MKDIR"), peerproto.OK{Of: "MKDIR"}, "MKDIR OK", "MKDIR"},
	{replyTo("RMDIR"), peerproto.OK{Of: "RMDIR"}, "RMDIR OK", "RMDIR"},
	{replyTo("PING"), peerproto.Pong{}, "PONG", "PONG"},

	// LIST entry lines
	{entryParser, entry(peerproto.Entry{Name: "a.txt", Type: 'f', Mode: 0o644, Size: 5, Mtime: mtime}),
		"f 0644 5 1700000000123456789 a.txt", ""},
	{entryParser, entry(peerproto.Entry{Name: "my docs", Type: 'd', Mode: 0o755, Size: 4096, Mtime: 0}),
		"d 0755 4096 0 my%20docs", ""},
	{entryParser, entry(peerproto.Entry{Name: "...", Type: 'f', Mode: 0o7777, Size: peerproto.MaxSize, Mtime: -1}),
		"f 07777 1125899906842624 -1 ...", ""},
	{entryParser, entry(peerproto.Entry{Name: "a", Type: 'f', Mode: 0o644, Size: 5, Mtime: 1, Ver: "0123456789abcdef"}),
		"f 0644 5 1 a ver=0123456789abcdef", ""},
}

func TestCanonicalRoundTrip(t *testing.T) {
	for _, tt := range canonical {
		got := peerproto.Format(tt.msg)
		if got != tt.wire+"\n" {
			t.Errorf("Format(%#v) = %q, want %q", tt.msg, got, tt.wire+"\n")
		}
		if v := tt.msg.Verb(); v != tt.verb {
			t.Errorf("%#v.Verb() = %q, want %q", tt.msg, v, tt.verb)
		}
		back, err := tt.p.parse([]byte(tt.wire))
		if err != nil {
			t.Errorf("%s(%q): %v", tt.p.name, tt.wire, err)
			continue
		}
		if !reflect.DeepEqual(back, tt.msg) {
			t.Errorf("%s(%q) = %#v, want %#v", tt.p.name, tt.wire, back, tt.msg)
		}
	}
}

// TestLenientInput lists input that is accepted but not canonical: other
// case, extra blanks, the seed's short forms, raw UTF-8.
func TestLenientInput(t *testing.T) {
	tests := []struct {
		p    parser
		line string
		want peerproto.Message
	}{
		{peerRequest, "put x 5", peerproto.Put{Name: "x", Size: 5}},
		{peerRequest, "  Put \t x  5 ", peerproto.Put{Name: "x", Size: 5}},
		{peerRequest, "PUT héllo 1", peerproto.Put{Name: "héllo", Size: 1}},
		{peerRequest, "PUT h%c3%a9llo 1", peerproto.Put{Name: "héllo", Size: 1}},
		{peerRequest, "PUT x 007", peerproto.Put{Name: "x", Size: 7}},
		{peerRequest, "put x 7 base=none INLINE Async", peerproto.Put{Name: "x", Size: 7, Async: true, Inline: true, Base: peerproto.BaseNone}},
		{peerRequest, "put x 3 ranges=0:1,5:002 delta=10 ver=ab", peerproto.Put{Name: "x", Size: 3, Ver: "ab",
			Delta: true, NewSize: 10, Ranges: []peerproto.Range{{Off: 0, Len: 1}, {Off: 5, Len: 2}}}},
		{peerRequest, "GET x 5", peerproto.Get{Name: "x", Length: 5}}, // the seed's form
		{peerRequest, "get x", peerproto.Get{Name: "x", Length: -1}},
		{peerRequest, "LIST", peerproto.List{}},
		{peerRequest, "list %2E", peerproto.List{}},
		{peerRequest, "STAT %2e", peerproto.Stat{}},
		{peerRequest, "MKDIR d 755", peerproto.Mkdir{Name: "d", Mode: 0o755}},
		{peerRequest, "MKDIR d 0", peerproto.Mkdir{Name: "d"}},
		{peerRequest, "SETATTR f mtime=-5 size=0", peerproto.Setattr{Name: "f", HasSize: true, HasMtime: true, Mtime: -5}},
		{peerRequest, "statfs", peerproto.Statfs{}},
		{trackerRequest, "register alice 7000", peerproto.Register{Name: "alice", Port: 7000}},
		{trackerRequest, "REGISTER al%69ce 7000", peerproto.Register{Name: "alice", Port: 7000}},
		{trackerRequest, "sync", peerproto.Sync{}},
		{trackerRequest, "Sync Fin", peerproto.SyncFin{}},
		{trackerRequest, "ping", peerproto.Ping{}},
		{trackerEvent, "update  a@h:1\tb@h:2 ", peerproto.Update{Peers: []peerproto.PeerAddr{{Name: "a", Addr: "h:1"}, {Name: "b", Addr: "h:2"}}}},
		{trackerEvent, "UPDATE a%40b@h:1", peerproto.Update{Peers: []peerproto.PeerAddr{{Name: "a@b", Addr: "h:1"}}}},
		{trackerEvent, "UPDATE a@b@h:1", peerproto.Update{Peers: []peerproto.PeerAddr{{Name: "a@b", Addr: "h:1"}}}},
		{trackerEvent, "sync ok", peerproto.SyncOK{}},
		{trackerEvent, "Sync End 7", peerproto.SyncEnd{Round: 7}},
		{trackerEvent, "register ok", peerproto.RegisterOK{}},
		{trackerEvent, "pong", peerproto.Pong{}},
		{trackerEvent, "Left bob gone-fishing", peerproto.Left{Name: "bob", How: "gone-fishing"}},
		{trackerEvent, "features ok  left ", peerproto.FeaturesOK{Words: []string{"left"}}},
		{trackerEvent, "writes ok", peerproto.WritesOK{}},
		{trackerEvent, "peers 007", peerproto.Peers{Count: 7}},
		{trackerEvent, "joined\ta%40b@h:1 ", peerproto.Joined{Peer: peerproto.PeerAddr{Name: "a@b", Addr: "h:1"}}},
		{trackerRequest, "writes  held", peerproto.Writes{Held: true}},
		{trackerRequest, "features left", peerproto.Features{Words: []string{"left"}}},
		{trackerEvent, "SYNC FAIL", peerproto.Refusal{Err: &peerproto.FailError{Verb: "SYNC", Code: "io"}}},
		{trackerEvent, "register fail exists  taken ", peerproto.Refusal{Err: &peerproto.FailError{Verb: "REGISTER", Code: "exists", Text: "taken"}}},
		{replyTo("GET"), "get ok 5", peerproto.GetOK{Size: 5}},
		{replyTo("PUT"), "Put Done 5 -1", peerproto.PutDone{Size: 5, Mtime: -1}},
		// Attribute words a newer peer may add are skipped.
		{replyTo("PUT"), "PUT DONE 5 1 ver=ab new=x", peerproto.PutDone{Size: 5, Mtime: 1, Ver: "ab"}},
		// One of the two directory times: not taken.
		{replyTo("PUT"), "PUT DONE 5 1 dir-mtime=2 pre-dir-ctime=3 ver=ab", peerproto.PutDone{Size: 5, Mtime: 1, Ver: "ab"}},
		{replyTo("STAT"), "STAT OK f 0644 5 1 later=1", peerproto.StatOK{Entry: peerproto.Entry{Type: 'f', Mode: 0o644, Size: 5, Mtime: 1}}},
		{entryParser, "f 0644 5 1 a owner=x ver=01", entry(peerproto.Entry{Name: "a", Type: 'f', Mode: 0o644, Size: 5, Mtime: 1, Ver: "01"})},
		{peerRequest, "features  attrs", peerproto.Features{Words: []string{"attrs"}}},
		{replyTo("PING"), "pong", peerproto.Pong{}},
		{replyTo("CONNECT"), " CONNECT\tOK ", peerproto.ConnectOK{}},
		{entryParser, "f 644 5 1 h%c3%a9", entry(peerproto.Entry{Name: "hé", Type: 'f', Mode: 0o644, Size: 5, Mtime: 1})},
		{entryParser, "d\t0755  0 0 raw\xffname", entry(peerproto.Entry{Name: "raw\xffname", Type: 'd', Mode: 0o755})},
	}
	for _, tt := range tests {
		got, err := tt.p.parse([]byte(tt.line))
		if err != nil {
			t.Errorf("%s(%q): %v", tt.p.name, tt.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s(%q) = %#v, want %#v", tt.p.name, tt.line, got, tt.want)
		}
	}
}

// TestSeedWire pins the exact lines of the user's design document.
func TestSeedWire(t *testing.T) {
	tests := []struct {
		msg  peerproto.Message
		wire string
	}{
		{peerproto.RegisterOK{}, "REGISTER OK\n"},
		{peerproto.Update{Peers: []peerproto.PeerAddr{{Name: "a", Addr: "127.0.0.1:1"}, {Name: "b", Addr: "[::1]:2"}}}, "UPDATE a@127.0.0.1:1 b@[::1]:2\n"},
		{peerproto.ConnectOK{}, "CONNECT OK\n"},
		{peerproto.Refusal{Err: peerproto.Fail("CONNECT", peerproto.CodeBusy, "too many connections")}, "CONNECT FAIL busy too many connections\n"},
		{peerproto.Put{Name: "x", Size: 5}, "PUT x 5\n"},
		{peerproto.PutOK{}, "PUT OK\n"},
		{peerproto.Refusal{Err: peerproto.Fail("PUT", peerproto.CodeNoSpace, "need 5 bytes, 0 free")}, "PUT FAIL nospace need 5 bytes, 0 free\n"},
		{peerproto.Get{Name: "x", Length: -1}, "GET x\n"},
		{peerproto.GetOK{Size: 5}, "GET OK 5\n"},
		{peerproto.Refusal{Err: peerproto.Fail("GET", peerproto.CodeNotFound, "x")}, "GET FAIL notfound x\n"},
		{peerproto.Sync{}, "SYNC\n"},
		{peerproto.SyncOK{}, "SYNC OK\n"},
		{peerproto.SyncRead{}, "SYNC READ\n"},
		{peerproto.SyncFin{}, "SYNC FIN\n"},
		{peerproto.SyncEnd{Round: 3}, "SYNC END 3\n"},
	}
	for _, tt := range tests {
		if got := peerproto.Format(tt.msg); got != tt.wire {
			t.Errorf("Format(%#v) = %q, want %q", tt.msg, got, tt.wire)
		}
	}
}

func TestFailReplies(t *testing.T) {
	tests := []struct {
		verb, line string
		want       peerproto.FailError
	}{
		{"CONNECT", "CONNECT FAIL busy too many connections", peerproto.FailError{Verb: "CONNECT", Code: "busy", Text: "too many connections"}},
		{"PUT", "PUT FAIL", peerproto.FailError{Verb: "PUT", Code: "io"}}, // the seed's bare form
		{"GET", "GET FAIL", peerproto.FailError{Verb: "GET", Code: "io"}},
		{"PUT", "PUT FAIL nospace", peerproto.FailError{Verb: "PUT", Code: "nospace"}},
		{"PUT", "PUT FAIL nospace need 5 bytes,  have 0 ", peerproto.FailError{Verb: "PUT", Code: "nospace", Text: "need 5 bytes,  have 0"}},
		{"PUT", "PUT\tFAIL\tnospace\tdisk  full", peerproto.FailError{Verb: "PUT", Code: "nospace", Text: "disk  full"}},
		{"PUT", "PUT FAIL FA text", peerproto.FailError{Verb: "PUT", Code: "FA", Text: "text"}},
		{"PUT", "PUT FAIL io io error", peerproto.FailError{Verb: "PUT", Code: "io", Text: "io error"}},
		{"GET", "get fail notfound no such file", peerproto.FailError{Verb: "GET", Code: "notfound", Text: "no such file"}},
		{"STAT", "STAT FAIL denied path escapes the export", peerproto.FailError{Verb: "STAT", Code: "denied", Text: "path escapes the export"}},
		{"RENAME", "RENAME FAIL notempty", peerproto.FailError{Verb: "RENAME", Code: "notempty"}},
		{"PING", "PING FAIL state", peerproto.FailError{Verb: "PING", Code: "state"}},
		{"LIST", "LIST FAIL weird 日本", peerproto.FailError{Verb: "LIST", Code: "weird", Text: "日本"}}, // unknown codes pass through
	}
	for _, tt := range tests {
		m, err := peerproto.ParseReply([]byte(tt.line), tt.verb)
		var fe *peerproto.FailError
		if !errors.As(err, &fe) {
			t.Errorf("ParseReply(%q, %s) = %#v, %v; want a *FailError", tt.line, tt.verb, m, err)
			continue
		}
		if m != nil {
			t.Errorf("ParseReply(%q, %s) returned message %#v with its error", tt.line, tt.verb, m)
		}
		if *fe != tt.want {
			t.Errorf("ParseReply(%q, %s) = %#v, want %#v", tt.line, tt.verb, *fe, tt.want)
		}
		var pe *peerproto.ProtocolError
		if errors.As(err, &pe) {
			t.Errorf("ParseReply(%q): a refusal must not be a *ProtocolError", tt.line)
		}
		// A refusal formats back to itself, modulo surrounding blanks.
		again, err := peerproto.ParseReply(peerproto.Refusal{Err: fe}.AppendTo(nil), tt.verb)
		if !errors.As(err, &fe) || *fe != tt.want || again != nil {
			t.Errorf("Refusal round trip of %q = %v, %v", tt.line, again, err)
		}
	}
}

func TestRefusalFormat(t *testing.T) {
	tests := []struct {
		err  peerproto.FailError
		wire string
	}{
		{peerproto.FailError{Verb: "PUT"}, "PUT FAIL io"},
		{peerproto.FailError{Verb: "PUT", Code: "nospace"}, "PUT FAIL nospace"},
		{peerproto.FailError{Verb: "GET", Code: "io", Text: "read a:\nbad\r\nsector"}, "GET FAIL io read a: bad  sector"},
		{peerproto.FailError{Verb: "GET", Code: "io", Text: "raw \xff byte"}, "GET FAIL io raw \xff byte"},
	}
	for _, tt := range tests {
		r := peerproto.Refusal{Err: &tt.err}
		if got := string(r.AppendTo(nil)); got != tt.wire {
			t.Errorf("Refusal{%#v} = %q, want %q", tt.err, got, tt.wire)
		}
		if r.Verb() != tt.err.Verb {
			t.Errorf("Refusal.Verb() = %q, want %q", r.Verb(), tt.err.Verb)
		}
	}
}

func TestMalformed(t *testing.T) {
	long := strings.Repeat("n", peerproto.MaxName+1)
	var peers257 strings.Builder
	peers257.WriteString("UPDATE")
	for i := 0; i < peerproto.MaxPeers+1; i++ {
		peers257.WriteString(" p@h:1")
	}
	tests := []struct {
		p     parser
		lines []string
	}{
		{peerRequest, []string{
			"", "   ", "\t",
			"FROB x", "REGISTER a 1", "SYNC", "UPDATE", "PONG", "PUT OK", // wrong direction
			"PUT", "PUT x", "PUT x 5 6", "PUT x 5 inline inline", "PUT x 5 inline=1", "PUT x 5 async inline base=none extra",
			"PUT x -1", "PUT x 1125899906842625", "PUT x 99999999999999999999", "PUT x five", "PUT x 0x10", "PUT x 1e3", "PUT x 5\r",
			"PUT a%2 5", "PUT a%zz 5", "PUT % 5", "PUT " + long + " 1",
			"GET", "GET x 1 2 3", "GET x -1", "GET x 0 -1", "GET x -1 5", "GET x 1125899906842625", "GET x 0 1125899906842625",
			"LIST a b", "LIST %zz",
			"STAT", "STAT a b", "DELETE", "DELETE a b", "RMDIR", "RMDIR a b",
			"RENAME", "RENAME a", "RENAME a b c", "RENAME a %",
			"MKDIR", "MKDIR d 8", "MKDIR d 10000", "MKDIR d rwx", "MKDIR d -1", "MKDIR d 0755 x", "MKDIR d 0755 uid=1",
			"MKDIR d 0755 gid=1 uid=1", "MKDIR d 0755 uid=1 gid=x", "MKDIR d 0755 uid=4294967295 gid=1", "MKDIR d uid=1 gid=1",
			"MKDIR d 0755 uid=1 gid=1 x",
			"SETATTR", "SETATTR f size", "SETATTR f =1", "SETATTR f owner=root", "SETATTR f Size=1",
			"SETATTR f size=1 size=2", "SETATTR f mode=1 mode=1", "SETATTR f mtime=1 mtime=1",
			"SETATTR f mode=9", "SETATTR f mode=10000", "SETATTR f size=-1", "SETATTR f size=1125899906842625",
			"SETATTR f mtime=x", "SETATTR f mtime=99999999999999999999", "SETATTR f size=1 mode=1 mtime=1 size=2",
			"STATFS x", "PING x", "QUIT now",
			"PUT x 5 ver=", "PUT x 5 ver=XYZ", "PUT x 5 ver=0g", "PUT x 5 ver=" + strings.Repeat("a", 65),
			"PUT x 5 ver=ab base=none", "PUT x 5 base=1 ver=ab", "PUT x 5 ver=a ver=b",
			"FEATURES Attrs", "FEATURES a_b", "FEATURES %41",
			// delta PUTs: ver= is required, the ranges must fit, be ordered
			// and apart, and add up to the payload.
			"PUT x 5 delta=10 ranges=0:5", "PUT x 5 base=1 delta=10 ranges=0:5", "PUT x 5 ver=ab ranges=0:5",
			"PUT x 4 ver=ab delta=10 ranges=0:5", "PUT x 6 ver=ab delta=10 ranges=0:5", "PUT x 5 ver=ab delta=4 ranges=0:5",
			"PUT x 5 ver=ab delta=10 ranges=6:5", "PUT x 4 ver=ab delta=10 ranges=0:2,1:2", "PUT x 4 ver=ab delta=10 ranges=0:2,2:2",
			"PUT x 2 ver=ab delta=10 ranges=5:1,0:1", "PUT x 0 ver=ab delta=10 ranges=0:0", "PUT x 0 ver=ab delta=10 ranges=",
			"PUT x 5 ver=ab delta=10 ranges=5", "PUT x 1 ver=ab delta=10 ranges=a:1", "PUT x 1 ver=ab delta=10 ranges=0:1,",
			"PUT x 1 ver=ab delta=10 ranges=-1:1", "PUT x 1 ver=ab delta=10 ranges=0:-1", "PUT x 0 ver=ab delta=-1", "PUT x 0 ver=ab delta=x",
			"PUT x 0 ver=ab delta=1125899906842625", "PUT x 0 ver=ab delta=1 delta=1", "PUT x 1 ver=ab delta=5 ranges=0:1 ranges=0:1",
			"PUT x 1 ver=ab delta=5 ranges=0:1 async inline extra",
			"PUT x 1025 ver=ab delta=100000 ranges=" + manyRanges(peerproto.MaxRanges+1),
			// streamed PUTs: framed, so neither inline nor a delta.
			"PUT x 0 inline stream", "PUT x 0 ver=ab delta=0 stream", "PUT x 0 stream stream", "PUT x 0 stream=1",
			"PUT x 0 setid setid", "PUT x 0 setid=1",
		}},
		{streamLine, []string{
			"", "DATA", "DATA 0", "DATA -1", "DATA 16777217", "DATA x", "DATA 1 2", "END", "END -1", "END 1125899906842625",
			"END 1 2", "ABORT now", "PUT x 1", "PING", "QUIT", "DONE 1",
		}},
		{trackerRequest, []string{
			"", "FROB", "PUT x 5", "SYNC OK", "SYNC READ", "SYNC END 1", "SYNC FIN now", "SYNC FIN clean x", "SYNC FIN wrote clean", "PONG",
			"REGISTER a", "REGISTER a 1 2", "REGISTER a 0", "REGISTER a 65536", "REGISTER a -1", "REGISTER a port",
			"REGISTER a/b 1", "REGISTER . 1", "REGISTER .. 1", "REGISTER a%20b 1", "REGISTER a%zz 1", "REGISTER é 1",
			"REGISTER " + strings.Repeat("x", peerproto.MaxPeerName+1) + " 1",
			"PING x", "QUIT x", "FEATURES Left", "FEATURES l_eft", "LEFT bob quit",
			"WRITES", "WRITES HELD", "WRITES held now", "WRITES yes", "WRITES OK",
		}},
		{trackerEvent, []string{
			"", "FROB", "PUT FAIL nospace", "CONNECT OK", "PING",
			"REGISTER", "REGISTER OK x", "REGISTER YES",
			"UPDATE a", "UPDATE @h:1", "UPDATE a@", "UPDATE a%zz@h:1", "UPDATE a@h:1 b", peers257.String(),
			"SYNC", "SYNC FIN", "SYNC OK now", "SYNC READ x", "SYNC END", "SYNC END -1", "SYNC END x", "SYNC END 1 2",
			"SYNC END 1 writers=a,,b", "SYNC END 1 writers=a b", "SYNC END 1 writers=a/b", "SYNC END 1 writer=a",
			"SYNC END 18446744073709551616",
			"PONG x",
			"LEFT", "LEFT bob", "LEFT bob quit now", "LEFT bob QUIT", "LEFT a/b quit", "LEFT %zz quit", "LEFT . quit",
			"FEATURES", "FEATURES left", "FEATURES OK Left", "FEATURES DONE",
			"WRITES", "WRITES held", "WRITES OK x",
			"PEERS", "PEERS -1", "PEERS 10001", "PEERS x", "PEERS 1 2",
			"JOINED", "JOINED a", "JOINED @h:1", "JOINED a@", "JOINED a@h:1 b@h:2", "JOINED a%zz@h:1",
		}},
		{replyTo("CONNECT"), []string{"", "CONNECT", "CONNECT OK now", "CONNECT YES", "HELLO", "PUT OK"}},
		{replyTo("PUT"), []string{
			"PUT", "PUT OK 5", "PUT DONE", "PUT DONE 5", "PUT DONE 5 1 2", "PUT DONE -1 0", "PUT DONE 5 x",
			"PUT DONE 1125899906842625 0", "PUT MAYBE", "GET OK 5", "PUTOK",
			"PUT DONE 5 1 ver=", "PUT DONE 5 1 ver=Z", "PUT DONE 5 1 =x",
		}},
		{replyTo("GET"), []string{"GET OK", "GET OK -1", "GET OK 1125899906842625", "GET OK 1 2", "GET OK x", "GET", "PUT OK"}},
		{replyTo("LIST"), []string{"LIST OK", "LIST OK 1048577", "LIST OK -1", "LIST OK x", "LIST OK 1 2", "LIST DONE 1"}},
		{replyTo("STAT"), []string{
			"STAT OK", "STAT OK f 0644 5", "STAT OK x 0644 5 1", "STAT OK ff 0644 5 1", "STAT OK F 0644 5 1",
			"STAT OK f 8 5 1", "STAT OK f 0644 -5 1", "STAT OK f 0644 5 x", "STAT OK f 0644 5 1 name",
		}},
		{replyTo("SETATTR"), []string{"SETATTR OK", "SETATTR OK f 0644 5"}},
		{replyTo("STATFS"), []string{"STATFS OK", "STATFS OK 1 2", "STATFS OK 1 2 -3", "STATFS OK 1 2 x", "STATFS OK 1 2 3 4"}},
		{replyTo("DELETE"), []string{"DELETE", "DELETE OK x", "RMDIR OK"}},
		{replyTo("RENAME"), []string{"RENAME DONE"}},
		{replyTo("SUM"), []string{"SUM OK", "SUM OK 3", "SUM OK -1 " + strings.Repeat("ab", 32), "SUM OK 3 " + strings.Repeat("ab", 31),
			"SUM OK 3 " + strings.Repeat("zz", 32), "SUM OK 3 " + strings.Repeat("ab", 32) + " x"}},
		{replyTo("MKDIR"), []string{"MKDIR OK 0755"}},
		{replyTo("RMDIR"), []string{"RMDIR"}},
		{replyTo("PING"), []string{"", "PING", "PONG x", "PING OK"}},
		{replyTo("UPDATE"), []string{"UPDATE OK"}}, // no reply is defined for UPDATE
		{replyTo("SYNC"), []string{"SYNC OK"}},     // tracker events go through ParseTrackerEvent
		{entryParser, []string{
			"", "f 0644 5 1", "f 0644 5 1 a b", "x 0644 5 1 a", "F 0644 5 1 a", "f 0644 5 1 .", "f 0644 5 1 ..",
			"f 0644 5 1 %2E", "f 0644 5 1 a%2Fb", "f 0644 5 1 a/b", "f 0644 5 1 a%00b", "f 0644 -1 1 a", "f 99999 1 1 a",
			"f 0644 1 x a", "f 0644 1 1 %zz", "f 0644 1 1 " + long,
			"f 0644 1 1 a ver=", "f 0644 1 1 a ver=A0", "f 0644 1 1 a =",
		}},
	}
	for _, tt := range tests {
		for _, line := range tt.lines {
			m, err := tt.p.parse([]byte(line))
			var pe *peerproto.ProtocolError
			if !errors.As(err, &pe) {
				t.Errorf("%s(%.60q) = %#v, %v; want a *ProtocolError", tt.p.name, line, m, err)
				continue
			}
			if m != nil {
				t.Errorf("%s(%.60q) returned message %#v with its error", tt.p.name, line, m)
			}
			if !strings.HasPrefix(err.Error(), "peerproto: ") {
				t.Errorf("%s(%.60q): error %q lacks the package prefix", tt.p.name, line, err)
			}
		}
	}
}

func TestProtocolErrorText(t *testing.T) {
	_, err := peerproto.ParsePeerRequest([]byte("FROB " + strings.Repeat("x", 200)))
	var pe *peerproto.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("want a *ProtocolError, got %v", err)
	}
	if len(pe.Line) > 83 || !strings.HasSuffix(pe.Line, "...") {
		t.Errorf("ProtocolError.Line = %q, want the line truncated to 80 bytes and ...", pe.Line)
	}
	if !strings.Contains(pe.Error(), `unknown verb "FROB"`) {
		t.Errorf("Error() = %q", pe.Error())
	}
	bare := &peerproto.ProtocolError{Msg: "boom", Err: peerproto.ErrLineTooLong}
	if bare.Error() != "peerproto: boom" || !errors.Is(bare, peerproto.ErrLineTooLong) {
		t.Errorf("ProtocolError without line: %q, Is(ErrLineTooLong) = %v", bare.Error(), errors.Is(bare, peerproto.ErrLineTooLong))
	}
}

// OthersWrote is true unless the tracker named the writers and none is
// the asker's peer.
func TestSyncEndOthersWrote(t *testing.T) {
	for _, c := range []struct {
		end  peerproto.SyncEnd
		want bool
	}{
		{peerproto.SyncEnd{Round: 1}, true}, // the seed's form says nothing
		{peerproto.SyncEnd{Round: 1, WritersKnown: true}, false},
		{peerproto.SyncEnd{Round: 1, WritersKnown: true, Writers: []string{"me"}}, false},
		{peerproto.SyncEnd{Round: 1, WritersKnown: true, Writers: []string{"me", "bob"}}, true},
		{peerproto.SyncEnd{Round: 1, WritersKnown: true, Writers: []string{"bob"}}, true},
	} {
		if got := c.end.OthersWrote("me"); got != c.want {
			t.Errorf("%q.OthersWrote(me) = %v, want %v", peerproto.Format(c.end), got, c.want)
		}
	}
}

// A Version is a peer's token where there is one, else an mtime; a PUT's
// condition follows it.
func TestVersion(t *testing.T) {
	tok := peerproto.Entry{Mtime: 5, Ver: "ab"}.Version()
	if tok != "vab" || !tok.IsToken() || tok.Token() != "ab" {
		t.Errorf("token version %q", tok)
	}
	mt := peerproto.Entry{Mtime: 5}.Version()
	if n, ok := mt.Mtime(); mt.IsToken() || !ok || n != 5 {
		t.Errorf("mtime version %q", mt)
	}
	for _, tt := range []struct {
		v    peerproto.Version
		want string
	}{
		{tok, "PUT x 1 ver=ab"},
		{mt, "PUT x 1 base=5"},
		{peerproto.VersionNone, "PUT x 1 base=none"},
		{peerproto.NoVersion, "PUT x 1"},
		{peerproto.MtimeVersion(0), "PUT x 1"}, // no usable mtime: no condition
	} {
		m := peerproto.Put{Name: "x", Size: 1}
		m.SetCond(tt.v)
		if got := string(m.AppendTo(nil)); got != tt.want {
			t.Errorf("SetCond(%q): %q, want %q", tt.v, got, tt.want)
		}
	}
}

// manyRanges returns n one-byte ranges two bytes apart, as ranges= writes them.
func manyRanges(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:1", 2*i)
	}
	return b.String()
}
