package peerproto_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

// posixEntry is an entry with every whole-filesystem attribute.
var posixEntry = peerproto.Entry{
	Name: "a", Type: 'f', Mode: 0o4755, Size: 5, Mtime: mtime, Ver: "0123456789abcdef",
	Has: peerproto.AttrIno | peerproto.AttrNlink | peerproto.AttrUid | peerproto.AttrGid | peerproto.AttrAtime | peerproto.AttrCtime | peerproto.AttrBlocks,
	Ino: 1<<64 - 1, Nlink: 2, Uid: 1000, Gid: 1<<32 - 1, Atime: -1, Ctime: mtime + 1, Blocks: 8,
}

// posixCanonical lists the messages and entry lines of whole-filesystem
// mode (FeaturePosix) in their canonical wire form, as canonical does for
// the rest; the fuzz targets take both as seeds.
var posixCanonical = []struct {
	p    parser
	msg  peerproto.Message
	wire string
	verb string
}{
	{peerRequest, peerproto.Features{Words: []string{"posix"}}, "FEATURES posix", "FEATURES"},
	{peerRequest, peerproto.Symlink{Name: "lib/libc.so", Target: "../../lib64/libc.so.6"}, "SYMLINK lib/libc.so ../../lib64/libc.so.6", "SYMLINK"},
	{peerRequest, peerproto.Symlink{Name: "abs", Target: "/etc/passwd"}, "SYMLINK abs /etc/passwd", "SYMLINK"},
	{peerRequest, peerproto.Symlink{Name: "odd", Target: "a b%\n\xff"}, "SYMLINK odd a%20b%25%0A%FF", "SYMLINK"},
	{peerRequest, peerproto.Symlink{Name: "dot", Target: "."}, "SYMLINK dot .", "SYMLINK"},
	{peerRequest, peerproto.Readlink{Name: "lib/libc.so"}, "READLINK lib/libc.so", "READLINK"},
	{peerRequest, peerproto.Link{Old: "a", New: "d/b c"}, "LINK a d/b%20c", "LINK"},
	{peerRequest, peerproto.Mknod{Name: "fifo", Type: 'p', Mode: 0o644}, "MKNOD fifo p 0644", "MKNOD"},
	{peerRequest, peerproto.Mknod{Name: "sock", Type: 's', Mode: 0o755}, "MKNOD sock s 0755", "MKNOD"},
	{peerRequest, peerproto.Mknod{Name: "null", Type: 'c', Mode: 0o666, Major: 1, Minor: 3}, "MKNOD null c 0666 1 3", "MKNOD"},
	{peerRequest, peerproto.Mknod{Name: "sda", Type: 'b', Mode: 0o660, Major: 1<<32 - 1, Minor: 0}, "MKNOD sda b 0660 4294967295 0", "MKNOD"},
	{peerRequest, peerproto.Setattr{Name: "f", HasAtime: true, Atime: 5}, "SETATTR f atime=5", "SETATTR"},
	{peerRequest, peerproto.Setattr{Name: "f", HasMtime: true, MtimeNow: true, HasAtime: true, AtimeNow: true},
		"SETATTR f mtime=now atime=now", "SETATTR"},
	{peerRequest, peerproto.Setattr{Name: "f", HasUid: true, Uid: 0, HasGid: true, Gid: 1<<32 - 2}, "SETATTR f uid=0 gid=4294967294", "SETATTR"},
	{peerRequest, peerproto.Setattr{Name: "f", HasSize: true, Size: 1, HasMode: true, Mode: 0o7777, HasMtime: true, Mtime: -3,
		HasAtime: true, Atime: mtime, HasUid: true, Uid: 7, HasGid: true, Gid: 8},
		"SETATTR f size=1 mode=07777 mtime=-3 atime=1700000000123456789 uid=7 gid=8", "SETATTR"},

	{replyTo("SYMLINK"), peerproto.OK{Of: "SYMLINK"}, "SYMLINK OK", "SYMLINK"},
	{replyTo("LINK"), peerproto.OK{Of: "LINK"}, "LINK OK", "LINK"},
	{replyTo("MKNOD"), peerproto.OK{Of: "MKNOD"}, "MKNOD OK", "MKNOD"},
	{replyTo("READLINK"), peerproto.ReadlinkOK{Target: "../x y"}, "READLINK OK ../x%20y", "READLINK"},
	{replyTo("FEATURES"), peerproto.FeaturesOK{Words: []string{"inline", "fsync-files", "attrs", "posix", "owners", "devices"}, ID: "ab"},
		"FEATURES OK inline fsync-files attrs posix owners devices id=ab", "FEATURES"},
	{replyTo("STAT"), peerproto.StatOK{Entry: peerproto.Entry{Type: 'l', Mode: 0o777, Size: 6, Mtime: 1,
		Has: peerproto.AttrIno | peerproto.AttrNlink | peerproto.AttrLink, Ino: 12, Nlink: 1, Target: "target"}},
		"STAT OK l 0777 6 1 ino=12 nlink=1 link=target", "STAT"},
	{replyTo("SETATTR"), peerproto.SetattrOK{Entry: peerproto.Entry{Type: 'c', Mode: 0o666, Mtime: 1,
		Has: peerproto.AttrRdev | peerproto.AttrUid, Uid: 0, RdevMajor: 1, RdevMinor: 3}},
		"SETATTR OK c 0666 0 1 uid=0 rdev=1,3", "SETATTR"},

	{entryParser, entry(posixEntry),
		"f 04755 5 1700000000123456789 a ino=18446744073709551615 nlink=2 uid=1000 gid=4294967295 atime=-1 ctime=1700000000123456790 blocks=8 ver=0123456789abcdef", ""},
	{entryParser, entry(peerproto.Entry{Name: "l", Type: 'l', Mode: 0o777, Size: 3, Mtime: 1, Has: peerproto.AttrLink, Target: "a=b c"}),
		"l 0777 3 1 l link=a=b%20c", ""},
	{entryParser, entry(peerproto.Entry{Name: "p", Type: 'p', Mode: 0o600, Mtime: 1}), "p 0600 0 1 p", ""},
	{entryParser, entry(peerproto.Entry{Name: "s", Type: 's', Mode: 0o755, Mtime: 1}), "s 0755 0 1 s", ""},
	{entryParser, entry(peerproto.Entry{Name: "b", Type: 'b', Mode: 0o660, Mtime: 1, Has: peerproto.AttrRdev, RdevMajor: 8, RdevMinor: 1}),
		"b 0660 0 1 b rdev=8,1", ""},
	{entryParser, entry(peerproto.Entry{Name: "d", Type: 'd', Mode: 0o2775, Size: 4096, Mtime: 1,
		Has: peerproto.AttrNlink | peerproto.AttrBlocks, Nlink: 5, Blocks: 0}), "d 02775 4096 1 d nlink=5 blocks=0", ""},
}

func TestPosixCanonicalRoundTrip(t *testing.T) {
	for _, tt := range posixCanonical {
		if got := peerproto.Format(tt.msg); got != tt.wire+"\n" {
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

// TestPosixLenientInput: other case, extra blanks, raw bytes, attribute
// words in any order, unknown ones skipped, a key twice keeping its last.
func TestPosixLenientInput(t *testing.T) {
	tests := []struct {
		p    parser
		line string
		want peerproto.Message
	}{
		{peerRequest, "symlink  a\t../b ", peerproto.Symlink{Name: "a", Target: "../b"}},
		{peerRequest, "SYMLINK a h%c3%a9/\xff", peerproto.Symlink{Name: "a", Target: "hé/\xff"}},
		{peerRequest, "readlink a", peerproto.Readlink{Name: "a"}},
		{peerRequest, "Link a b", peerproto.Link{Old: "a", New: "b"}},
		{peerRequest, "mknod f p 644", peerproto.Mknod{Name: "f", Type: 'p', Mode: 0o644}},
		{peerRequest, "MKNOD n c 0 001 03", peerproto.Mknod{Name: "n", Type: 'c', Major: 1, Minor: 3}},
		{peerRequest, "SETATTR f gid=1 uid=2 atime=now mtime=3", peerproto.Setattr{Name: "f", HasGid: true, Gid: 1, HasUid: true, Uid: 2,
			HasAtime: true, AtimeNow: true, HasMtime: true, Mtime: 3}},
		{replyTo("READLINK"), "readlink ok /abs", peerproto.ReadlinkOK{Target: "/abs"}},
		{replyTo("SYMLINK"), "symlink ok", peerproto.OK{Of: "SYMLINK"}},
		{replyTo("STAT"), "STAT OK p 0644 0 1 nlink=1 later=x ino=4 ino=5", peerproto.StatOK{Entry: peerproto.Entry{Type: 'p', Mode: 0o644, Mtime: 1,
			Has: peerproto.AttrNlink | peerproto.AttrIno, Nlink: 1, Ino: 5}}},
		{entryParser, "l 777 1 1 x link=%2E%2E ver=01", entry(peerproto.Entry{Name: "x", Type: 'l', Mode: 0o777, Size: 1, Mtime: 1,
			Has: peerproto.AttrLink, Target: "..", Ver: "01"})},
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

func TestPosixMalformed(t *testing.T) {
	longTarget := strings.Repeat("t", peerproto.MaxTarget+1)
	tests := []struct {
		p     parser
		lines []string
	}{
		{peerRequest, []string{
			"SYMLINK", "SYMLINK a", "SYMLINK a b c", "SYMLINK a %zz", "SYMLINK a%zz b", "SYMLINK a x%00y", "SYMLINK a " + longTarget,
			"READLINK", "READLINK a b",
			"LINK", "LINK a", "LINK a b c", "LINK a %",
			"MKNOD", "MKNOD f", "MKNOD f p", "MKNOD f x 0644", "MKNOD f pp 0644", "MKNOD f P 0644", "MKNOD f d 0755", "MKNOD f f 0644",
			"MKNOD f p 0644 1 2", "MKNOD f s 0644 1", "MKNOD f c 0644", "MKNOD f c 0644 1", "MKNOD f b 0644 1 2 3",
			"MKNOD f c 0644 -1 2", "MKNOD f c 0644 1 4294967296", "MKNOD f c 0644 x 1", "MKNOD f p 10000", "MKNOD f p rw",
			"SETATTR f atime=", "SETATTR f atime=yesterday", "SETATTR f atime=NOW", "SETATTR f mtime=now mtime=1",
			"SETATTR f atime=1 atime=2", "SETATTR f uid=1 uid=1", "SETATTR f gid=1 gid=2",
			"SETATTR f uid=-1", "SETATTR f uid=4294967295", "SETATTR f gid=4294967296", "SETATTR f uid=root", "SETATTR f Uid=1",
			"SETATTR f size=1 mode=1 mtime=1 atime=1 uid=1 gid=1 size=1",
		}},
		{replyTo("READLINK"), []string{"READLINK OK", "READLINK OK a b", "READLINK OK %zz", "READLINK OK a%00", "READLINK DONE a", "READLINK"}},
		{replyTo("SYMLINK"), []string{"SYMLINK OK x", "SYMLINK"}},
		{replyTo("LINK"), []string{"LINK OK 1"}},
		{replyTo("MKNOD"), []string{"MKNOD DONE"}},
		{replyTo("STAT"), []string{
			"STAT OK q 0644 0 1", "STAT OK l 0777 1 1 link=", "STAT OK l 0777 1 1 link=%zz", "STAT OK f 0644 1 1 ino=-1",
			"STAT OK f 0644 1 1 ino=x", "STAT OK f 0644 1 1 nlink=18446744073709551616", "STAT OK f 0644 1 1 uid=4294967296",
			"STAT OK f 0644 1 1 gid=-1", "STAT OK f 0644 1 1 atime=x", "STAT OK f 0644 1 1 ctime=1.5", "STAT OK f 0644 1 1 blocks=-1",
			"STAT OK c 0644 0 1 rdev=1", "STAT OK c 0644 0 1 rdev=1,", "STAT OK c 0644 0 1 rdev=,1", "STAT OK c 0644 0 1 rdev=1,2,3",
		}},
		{entryParser, []string{
			"l 0777 1 1 a link=" + longTarget, "l 0777 1 1 a link=a%00b", "q 0644 1 1 a", "L 0777 1 1 a", "f 0644 1 1 a ino",
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
		}
	}
}

// TestLoopCode: the code of a path through a symbolic link on a posix
// connection is ELOOP at the FUSE edge, and a local ELOOP is sent as it.
func TestLoopCode(t *testing.T) {
	_, err := peerproto.ParseReply([]byte("GET FAIL loop a symbolic link in \"a/b\""), peerproto.VerbGet)
	var fe *peerproto.FailError
	if !errors.As(err, &fe) || fe.Code != peerproto.CodeLoop || fe.Errno() != syscall.ELOOP {
		t.Errorf("GET FAIL loop: %v", err)
	}
	if got := peerproto.CodeOf(fmt.Errorf("open a: %w", syscall.ELOOP)); got != peerproto.CodeLoop {
		t.Errorf("CodeOf(ELOOP) = %q, want %q", got, peerproto.CodeLoop)
	}
	// The new requests carry no size: toolarge from them was the name.
	for _, verb := range []string{peerproto.VerbSymlink, peerproto.VerbReadlink, peerproto.VerbLink, peerproto.VerbMknod} {
		if got := peerproto.Fail(verb, peerproto.CodeTooLarge, "").Errno(); got != syscall.ENAMETOOLONG {
			t.Errorf("%s FAIL toolarge: errno %v, want ENAMETOOLONG", verb, got)
		}
	}
}
