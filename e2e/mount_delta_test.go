package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountAppendMovesLittle: appending 4 KiB to a 64 MiB file in a peer
// folder, and overwriting 4 KiB in its middle, as dd does (write-only
// opens, no truncation), moves those bytes and not the file: the peer
// serves no GET of it and receives PUTs of about 4 KiB. Its file then
// holds the old content with the changes, and the mount reads that back.
// Where the export's filesystem cannot share blocks between files (ext4,
// as here), the peer writes the changes into its file in place rather
// than into a copy of 64 MiB (export/put_undo.go): the file keeps its
// inode, and no temporary file or undo record is left.
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

	ino := inodeOf(t, filepath.Join(b.export, "big.log"))
	gets, got := b.p.requests("GET")
	puts, put := b.p.requests("PUT")
	mustRun(t, "", "dd", "if="+src, "of="+path, "bs=4096", "oflag=append", "conv=notrunc", "status=none")
	writeFile(t, src, mid)
	mustRun(t, "", "dd", "if="+src, "of="+path, "bs=4096", "seek="+fmt.Sprint(size/2/4096), "conv=notrunc", "status=none")
	gets2, got2 := b.p.requests("GET")
	// bob logs a request once its answer has gone out: dd can be done
	// before the line is written.
	waitFor(t, 10*time.Second, "bob's log of the two PUTs", func() bool {
		n, _ := b.p.requests("PUT")
		return n >= puts+2
	})
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
	if !canReflink(t, b.export) && inodeOf(t, filepath.Join(b.export, "big.log")) != ino {
		t.Error("the peer replaced its file by a copy with the edits: want them written in place")
	}
	if left, _ := filepath.Glob(filepath.Join(b.export, ".peerfs-tmp-*")); len(left) != 0 {
		t.Errorf("left in the export: %v", left)
	}
	out, err := helper(t, "read", path, nil)
	if err != nil || out != string(want) {
		t.Fatalf("reading back through the mount: %d bytes, %v", len(out), err)
	}
}

// inodeOf returns the inode number of file p.
func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// canReflink reports whether the filesystem of directory dir shares blocks
// between files (FICLONE), as XFS and Btrfs do and ext4 does not.
func canReflink(t *testing.T, dir string) bool {
	t.Helper()
	src, err := os.CreateTemp(dir, "reflink-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write([]byte("probe")); err != nil {
		t.Fatal(err)
	}
	dst, err := os.CreateTemp(dir, "reflink-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil
}
