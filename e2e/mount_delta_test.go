package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMountAppendMovesLittle: appending 4 KiB to a 64 MiB file in a peer
// folder, and overwriting 4 KiB in its middle, as dd does (write-only
// opens, no truncation), moves those bytes and not the file: the peer
// serves no GET of it and receives PUTs of about 4 KiB. Its file then
// holds the old content with the changes, and the mount reads that back.
func TestMountAppendMovesLittle(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	const size = 64 << 20
	want := randBytes(size)
	writeFile(t, filepath.Join(b.export, "big.log"), want)
	add, mid := randBytes(4096), randBytes(4096)
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, src, add)
	path := filepath.Join(a.dir(b), "big.log")

	gets, got := b.p.requests("GET")
	puts, put := b.p.requests("PUT")
	mustRun(t, "", "dd", "if="+src, "of="+path, "bs=4096", "oflag=append", "conv=notrunc", "status=none")
	writeFile(t, src, mid)
	mustRun(t, "", "dd", "if="+src, "of="+path, "bs=4096", "seek="+fmt.Sprint(size/2/4096), "conv=notrunc", "status=none")
	gets2, got2 := b.p.requests("GET")
	puts2, put2 := b.p.requests("PUT")
	if got2-got > 64<<10 {
		t.Errorf("the two edits fetched %d bytes from the peer (%d GETs)", got2-got, gets2-gets)
	}
	if puts2-puts != 2 || put2-put > 2*4096 {
		t.Errorf("the two edits sent %d PUTs of %d bytes, want 2 of 4096", puts2-puts, put2-put)
	}

	want = append(want, add...)
	copy(want[size/2:], mid)
	if b, err := os.ReadFile(filepath.Join(b.export, "big.log")); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("the peer's file holds %d bytes (%v), not the old content with the two edits", len(b), err)
	}
	out, err := helper(t, "read", path, nil)
	if err != nil || out != string(want) {
		t.Fatalf("reading back through the mount: %d bytes, %v", len(out), err)
	}
}
