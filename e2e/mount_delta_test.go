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
// inode, and no temporary file or undo record is left once the change
// has settled.
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
	// The undo record goes just after PUT DONE (export/put_undo.go,
	// settle).
	waitFor(t, 10*time.Second, "no temporary file or undo record in the export", func() bool {
		left, _ := filepath.Glob(filepath.Join(b.export, ".peerfs-tmp-*"))
		return len(left) == 0
	})
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

// TestMountStreamsLargeFile: a large file written into a peer folder goes
// to the peer while it is written (a streamed PUT): before the close, bob
// holds most of it in a temporary file, not under its name; the close
// stores it, sent once. A mount killed (SIGKILL) in the middle of such a
// file leaves bob's file untouched and no temporary file, and delivers
// what was written once it runs again.
func TestMountStreamsLargeFile(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	_, before := b.p.requests("PUT")
	data := randBytes(8 << 20)
	path := filepath.Join(a.dir(b), "big.bin")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 128 << 10 {
		if _, err := f.Write(data[off : off+128<<10]); err != nil {
			f.Close()
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "most of the file on bob before the close", func() bool { return tempAtLeast(t, b.export, 6<<20) })
	if _, err := os.Stat(filepath.Join(b.export, "big.bin")); !os.IsNotExist(err) {
		t.Errorf("before the close the file is on bob under its name: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	sameFile(t, filepath.Join(b.export, "big.bin"), data)
	waitFor(t, 10*time.Second, "bob's log of the PUT", func() bool {
		_, n := b.p.requests("PUT")
		return n-before >= int64(len(data))
	})
	if _, moved := b.p.requests("PUT"); moved-before != int64(len(data)) {
		t.Errorf("bob received %d bytes of PUTs for an 8 MiB file", moved-before)
	}
	noTemps(t, b.export)

	// Killed mid-stream.
	writeFile(t, filepath.Join(b.export, "second.bin"), []byte("old\n"))
	more := randBytes(4 << 20)
	f, err = os.OpenFile(filepath.Join(a.dir(b), "second.bin"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(more); err != nil {
		f.Close()
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "part of the second file on bob", func() bool { return tempAtLeast(t, b.export, 1<<20) })
	a.p.kill()
	f.Close() // ENOTCONN: the mount is gone
	ensureUnmounted(t, a.mnt)
	waitFor(t, 10*time.Second, "bob dropping the cut stream", func() bool { return len(tempFiles(t, b.export)) == 0 })
	sameFile(t, filepath.Join(b.export, "second.bin"), []byte("old\n"))
	a.start()
	waitFor(t, 30*time.Second, "alice delivering the second file after its restart", func() bool {
		got, err := os.ReadFile(filepath.Join(b.export, "second.bin"))
		return err == nil && bytes.Equal(got, more)
	})
	noTemps(t, b.export)
}

// tempAtLeast reports whether a temporary upload file in dir holds at
// least n bytes: a streamed PUT under way got that far.
func tempAtLeast(t *testing.T, dir string, n int64) bool {
	t.Helper()
	for _, name := range tempFiles(t, dir) {
		if fi, err := os.Stat(name); err == nil && fi.Size() >= n {
			return true
		}
	}
	return false
}
