package peerproto_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

func TestEncodeName(t *testing.T) {
	tests := []struct {
		name, tok string
	}{
		{"a.txt", "a.txt"},
		{"", "."}, // the export root
		{".", "."},
		{"dir/sub/file", "dir/sub/file"},
		{"a b", "a%20b"},
		{"100%", "100%25"},
		{"%41", "%2541"}, // an escape-looking name is itself escaped
		{"line\nbreak", "line%0Abreak"},
		{"cr\r", "cr%0D"},
		{"tab\there", "tab%09here"},
		{"nul\x00", "nul%00"},
		{"\x01\x1f\x7f", "%01%1F%7F"},
		{"héllo", "h%C3%A9llo"},
		{"日本", "%E6%97%A5%E6%9C%AC"},
		{"bad\xff\xfe", "bad%FF%FE"}, // invalid UTF-8 survives byte for byte
		{"a@b", "a@b"},
		{"~!#$&'()*+,-./:;<=>?@[\\]^_`{|}", "~!#$&'()*+,-./:;<=>?@[\\]^_`{|}"},
	}
	for _, tt := range tests {
		got := peerproto.EncodeName(tt.name)
		if got != tt.tok {
			t.Errorf("EncodeName(%q) = %q, want %q", tt.name, got, tt.tok)
		}
		back, err := peerproto.DecodeName(got)
		if err != nil {
			t.Errorf("DecodeName(%q): %v", got, err)
			continue
		}
		want := tt.name
		if want == "" {
			want = "."
		}
		if back != want {
			t.Errorf("DecodeName(EncodeName(%q)) = %q, want %q", tt.name, back, want)
		}
	}
}

func TestEncodeNameIsOneASCIIToken(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	tok := peerproto.EncodeName(string(all))
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			t.Fatalf("EncodeName left byte %#x unescaped in %q", c, tok)
		}
	}
	back, err := peerproto.DecodeName(tok)
	if err != nil || back != string(all) {
		t.Fatalf("round trip of all 256 bytes: %q, %v", back, err)
	}
}

func TestDecodeName(t *testing.T) {
	tests := []struct {
		tok, want string
	}{
		{"a.txt", "a.txt"},
		{".", "."},
		{"%2e", "."},
		{"%2E%2e", ".."}, // decoded, not judged: CleanPath refuses it later
		{"h%c3%a9llo", "héllo"},
		{"h%C3%A9llo", "héllo"},
		{"héllo", "héllo"}, // raw UTF-8, as a person types it
		{"raw\xff", "raw\xff"},
		{"a+b", "a+b"}, // no form-encoding: '+' is a plus
		{"%25", "%"},
		{"%2541", "%41"},
		{"%00", "\x00"},
		{"a%2Fb", "a/b"},
	}
	for _, tt := range tests {
		got, err := peerproto.DecodeName(tt.tok)
		if err != nil || got != tt.want {
			t.Errorf("DecodeName(%q) = %q, %v; want %q", tt.tok, got, err, tt.want)
		}
	}
}

func TestDecodeNameBadEscape(t *testing.T) {
	for _, tok := range []string{"%", "a%", "a%2", "%g0", "%0g", "%%", "%%41", "%-1", "% 1", "x%4"} {
		if got, err := peerproto.DecodeName(tok); err == nil {
			t.Errorf("DecodeName(%q) = %q, want an error", tok, got)
		}
	}
}

func TestCleanPath(t *testing.T) {
	elem255 := strings.Repeat("e", peerproto.MaxComponent)
	// 16 elements of 255 bytes and 15 slashes: 4095 bytes.
	long := strings.TrimSuffix(strings.Repeat(elem255+"/", 16), "/")
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{".", ""},
		{"./", ""},
		{"a", "a"},
		{"a/b", "a/b"},
		{"a//b/", "a/b"},
		{"./a/./b/.", "a/b"},
		{"...", "..."},
		{"..a", "..a"},
		{"a..b/c..", "a..b/c.."},
		{".hidden", ".hidden"},
		{"é/ü", "é/ü"},
		{"a b/c\nd", "a b/c\nd"},
		{elem255, elem255},
		{long, long},
	}
	for _, tt := range tests {
		got, err := peerproto.CleanPath(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("CleanPath(%.40q) = %.40q, %v; want %.40q", tt.in, got, err, tt.want)
		}
	}
}

func TestCleanPathRefuses(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"..", peerproto.ErrPathEscapes},
		{"../a", peerproto.ErrPathEscapes},
		{"a/../b", peerproto.ErrPathEscapes},
		{"a/..", peerproto.ErrPathEscapes},
		{"a/../../etc/passwd", peerproto.ErrPathEscapes},
		{"/", peerproto.ErrPathAbsolute},
		{"/etc/passwd", peerproto.ErrPathAbsolute},
		{"//a", peerproto.ErrPathAbsolute},
		{"a\x00b", peerproto.ErrPathNUL},
		{"\x00", peerproto.ErrPathNUL},
		{strings.Repeat("a/", peerproto.MaxName/2) + "a", peerproto.ErrPathTooLong},
		{strings.Repeat("e", peerproto.MaxComponent+1), peerproto.ErrPathTooLong},
		{"ok/" + strings.Repeat("e", peerproto.MaxComponent+1) + "/ok", peerproto.ErrPathTooLong},
	}
	for _, tt := range tests {
		got, err := peerproto.CleanPath(tt.in)
		if !errors.Is(err, tt.want) {
			t.Errorf("CleanPath(%.40q) = %q, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestValidPeerName(t *testing.T) {
	good := []string{"a", "alice", "Bob-2", "node_1.local", "...", strings.Repeat("x", peerproto.MaxPeerName)}
	bad := []string{"", ".", "..", "a b", "a/b", "a@b", "a%20b", "é", "a\x00", strings.Repeat("x", peerproto.MaxPeerName+1)}
	for _, s := range good {
		if !peerproto.ValidPeerName(s) {
			t.Errorf("ValidPeerName(%q) = false, want true", s)
		}
	}
	for _, s := range bad {
		if peerproto.ValidPeerName(s) {
			t.Errorf("ValidPeerName(%q) = true, want false", s)
		}
	}
}
