package peerproto

import (
	"io/fs"
	"testing"
)

// TestModeWord: every mode word round-trips through fs.FileMode, and the
// special bits land where stat(2) has them.
func TestModeWord(t *testing.T) {
	for b := uint32(0); b <= 0o7777; b++ {
		if got := UnixBits(FileMode(b)); got != b {
			t.Fatalf("%04o -> %v -> %04o", b, FileMode(b), got)
		}
	}
	if m := FileMode(0o4755); m != fs.ModeSetuid|0o755 {
		t.Errorf("04755 is %v", m)
	}
	if b := UnixBits(fs.ModeDir | fs.ModeSticky | 0o777); b != 0o1777 {
		t.Errorf("a sticky directory 0777 is %04o, want 1777", b)
	}
}
