package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testfs"
)

// The tests here run against a peer whose export keeps whole-second
// timestamps (ext4 with 128-byte inodes, like FAT or many NAS shares):
// versions written within one second have the same mtime, and peerfs
// must still tell them apart.

// openWaitClose starts a child that opens path for writing and, when
// go is called, writes data and closes it; result then returns what
// close said.
type openWaitClose struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startOpenWaitClose(t *testing.T, path string, data []byte) *openWaitClose {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=open-wait-close", "PEERFS_E2E_DATA="+string(data))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	w := &openWaitClose{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	if line, err := w.out.ReadString('\n'); err != nil || line != "opened\n" {
		t.Fatalf("%s: %q %v", path, line, err)
	}
	return w
}

func (w *openWaitClose) start() { w.stdin.Write([]byte("\n")) }

func (w *openWaitClose) result(t *testing.T) string {
	t.Helper()
	line, err := w.out.ReadString('\n')
	w.cmd.Wait()
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestCoarseTimesTwoWriters: two mounts open the same file of a peer
// whose export has whole-second times, write the same number of bytes
// and close, over and over, each round within one second. Never may both
// closes succeed: that would mean one write was silently replaced by the
// other (an upload conditional on an mtime lets the stale one through).
// The loser gets ESTALE and its data is kept as a conflict copy. Where a
// round did not fit in one second (a slow machine), the test gives the
// first writer's version the base's mtime, as one second would have.
func TestCoarseTimesTwoWriters(t *testing.T) {
	c := newCluster(t)
	store := c.mountExport("store", testfs.Coarse(t, 64))
	// A short attribute timeout: each round's base version, written
	// behind the mounts' backs, is what they open a moment later.
	w1, w2 := c.mount("w1", "--attr-timeout", "100ms"), c.mount("w2", "--attr-timeout", "100ms")
	w1.sees(store)
	w2.sees(store)
	const rounds = 10
	name := "doc.txt"
	sameSecond := 0
	for round := range rounds {
		testfs.SameSecond(600 * time.Millisecond)
		// The version both writers start from, written in this second.
		file := filepath.Join(store.export, name)
		writeFile(t, file, []byte(fmt.Sprintf("round %02d base\n", round)))
		baseInfo, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		d1 := []byte(fmt.Sprintf("round %02d by w1\n", round))
		d2 := []byte(fmt.Sprintf("round %02d by w2\n", round))
		a := startOpenWaitClose(t, filepath.Join(w1.dir(store), name), d1)
		b := startOpenWaitClose(t, filepath.Join(w2.dir(store), name), d2)
		a.start()
		ra := a.result(t)
		if st, err := os.Stat(file); err == nil {
			if st.ModTime().Equal(baseInfo.ModTime()) {
				sameSecond++
			} else if err := os.Chtimes(file, time.Time{}, baseInfo.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
		b.start()
		rb := b.result(t)
		final, err := os.ReadFile(filepath.Join(store.export, name))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ra == "close=<nil>" && rb == "close=<nil>":
			t.Fatalf("round %d: both writers' close succeeded; the file holds %q: the other write was lost", round, final)
		case ra != "close=<nil>":
			t.Fatalf("round %d: the first writer's close failed: %s", round, ra)
		case !strings.Contains(rb, "stale"):
			t.Fatalf("round %d: the second writer's close: %s, want ESTALE", round, rb)
		case !bytes.Equal(final, d1):
			t.Fatalf("round %d: the file holds %q, want the first writer's %q", round, final, d1)
		}
		// The loser's data is kept beside it.
		entries, _ := os.ReadDir(store.export)
		kept := false
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), name+".conflict-w2-") {
				if b, _ := os.ReadFile(filepath.Join(store.export, e.Name())); bytes.Equal(b, d2) {
					kept = true
				}
				os.Remove(filepath.Join(store.export, e.Name()))
			}
		}
		if !kept {
			t.Fatalf("round %d: the second writer's data was not kept as a conflict copy", round)
		}
	}
	t.Logf("%d of %d rounds fitted in one second by themselves", sameSecond, rounds)
}

// coarseWriterReader starts a cluster whose peer store exports a
// whole-second filesystem, a mount w that writes to it, and a mount r
// that reads it with a 200 ms attribute timeout.
func coarseWriterReader(t *testing.T) (store, w, r *node) {
	t.Helper()
	c := newCluster(t)
	store = c.mountExport("store", testfs.Coarse(t, 64))
	w = c.mount("w")
	r = c.mount("r", "--attr-timeout", "200ms")
	w.sees(store)
	r.sees(store)
	return store, w, r
}

// TestCoarseTimesReaderSeesNewContent: a mount that read a file reads its
// new content once it opens it again after the writer's close and the
// attribute timeout, even though the new version has the size and the
// whole-second mtime of the old one.
func TestCoarseTimesReaderSeesNewContent(t *testing.T) {
	store, w, r := coarseWriterReader(t)
	path := "notes.txt"
	for round := range 4 {
		testfs.SameSecond(800 * time.Millisecond)
		old := []byte(fmt.Sprintf("round %d old\n", round))
		neu := []byte(fmt.Sprintf("round %d new\n", round))
		writeFile(t, filepath.Join(w.dir(store), path), old)
		if got, err := os.ReadFile(filepath.Join(r.dir(store), path)); err != nil || !bytes.Equal(got, old) {
			t.Fatalf("round %d: first read %q %v", round, got, err)
		}
		oldInfo, err := os.Stat(filepath.Join(store.export, path))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(w.dir(store), path), neu)
		st1, _ := os.Stat(filepath.Join(store.export, path))
		if !st1.ModTime().Equal(oldInfo.ModTime()) {
			// Not within one second (a slow machine): as if it were.
			if err := os.Chtimes(filepath.Join(store.export, path), time.Time{}, oldInfo.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(400 * time.Millisecond) // past r's attribute timeout
		got, err := os.ReadFile(filepath.Join(r.dir(store), path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, neu) {
			t.Fatalf("round %d: read %q after the writer's close and the attribute timeout, want %q (mtime %v)", round, got, neu, st1.ModTime())
		}
	}
}

// TestCoarseTimesChangeInPlace: a 16 MiB file on such an export, changed
// through a mount as dd changes it (an append, then 4 KiB overwritten in
// the middle twice within one second: the same size and mtime each
// time), is changed by the peer in place (ext4 cannot clone it, so a copy
// would cost 16 MiB per change: export/put_undo.go), and another mount
// reading it after each change and its attribute timeout sees that
// change: the version tokens tell apart what size and mtime cannot.
func TestCoarseTimesChangeInPlace(t *testing.T) {
	store, w, r := coarseWriterReader(t)
	const size = 16 << 20
	want := randBytes(size)
	back := filepath.Join(store.export, "big.db")
	writeFile(t, back, want)
	ino := inodeOf(t, back)
	src := filepath.Join(t.TempDir(), "src")
	path := filepath.Join(w.dir(store), "big.db")
	testfs.SameSecond(600 * time.Millisecond)
	for i, change := range []struct {
		args []string
		off  int
	}{
		{[]string{"oflag=append"}, size},
		{[]string{"seek=" + fmt.Sprint(size/2/4096)}, size / 2},
		{[]string{"seek=" + fmt.Sprint(size/2/4096)}, size / 2},
	} {
		add := randBytes(4096)
		writeFile(t, src, add)
		mustRun(t, "", "dd", append([]string{"if=" + src, "of=" + path, "bs=4096", "count=1", "conv=notrunc", "status=none"}, change.args...)...)
		if change.off == len(want) {
			want = append(want, add...)
		} else {
			copy(want[change.off:], add)
		}
		if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("change %d: the peer's file holds %d bytes (%v), not the old content with the change", i, len(got), err)
		}
		time.Sleep(300 * time.Millisecond) // past r's attribute timeout
		got, err := os.ReadFile(filepath.Join(r.dir(store), "big.db"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("change %d: the other mount reads %d bytes (%v), not the changed file", i, len(got), err)
		}
	}
	if !canReflink(t, store.export) && inodeOf(t, back) != ino {
		t.Error("the peer replaced its file by a copy: want the changes written in place")
	}
	if left, _ := filepath.Glob(filepath.Join(store.export, ".peerfs-tmp-*")); len(left) != 0 {
		t.Errorf("left in the export: %v", left)
	}
}
