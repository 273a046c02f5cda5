package cache

// Review of eec2d57 (records in the data file's extended attribute): tests
// that show the defects found. Each failed on that commit.

import (
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
)

// failOpens makes every open(2) of this process fail with EMFILE (the
// mount running out of descriptors) until the returned func is called, or
// the test ends. Nothing else in the package's tests opens files at the
// same time (no test is parallel).
func failOpens(t *testing.T) (restore func()) {
	t.Helper()
	fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	return setRlimit(t, syscall.RLIMIT_NOFILE, uint64(fd)) // the lowest free descriptor is out of bounds
}

// limitFileSize makes writes of this process past its first n bytes of
// any regular file short (RLIMIT_FSIZE: a write starting below the limit
// is cut at it, without SIGXFSZ) until the returned func is called.
func limitFileSize(t *testing.T, n uint64) (restore func()) {
	t.Helper()
	return setRlimit(t, syscall.RLIMIT_FSIZE, n)
}

// setRlimit sets the soft limit of resource to cur until the returned
// func is called, or the test ends.
func setRlimit(t *testing.T, resource int, cur uint64) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(resource, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = cur
	if err := syscall.Setrlimit(resource, &lim); err != nil {
		t.Fatal(err)
	}
	restore = sync.OnceFunc(func() {
		if err := syscall.Setrlimit(resource, &old); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(restore)
	return restore
}

// Defect 1. setRecordXattr sets the attribute first and only then opens
// the data file and fsyncs it (and the directory). If a step after the
// setxattr fails, the record write reports an error and its caller
// restores the entry's state in memory (durable, key, parked...), but the
// attribute already holds the new record: disk and memory disagree. With
// metadata files the same failures (CreateTemp, the temporary file's
// fsync) leave the old record in place. EMFILE on the open stands in for
// any of those failures (an fsync's EIO does the same).
func TestReviewFailedRecordWriteChangesAttribute(t *testing.T) {
	// A Persist that fails leaves an unstamped (durable) record in the
	// attribute while the entry stays "not durable" in memory; the next
	// write to a range already changed writes no record and is never
	// fsynced, yet after a reboot Open trusts the entry with those bytes.
	t.Run("Persist", func(t *testing.T) {
		dir := t.TempDir()
		c := xattrCache(t, dir)
		key := Key{"p", "f"}
		h := writeHeld(t, c, key.Path, "old bytes")
		defer h.Release()
		restore := failOpens(t)
		err := h.Persist()
		restore()
		if err == nil {
			t.Fatal("Persist did not fail: the test's fault injection did not work")
		}
		if r, _ := recordOf(t, c, key); r.Boot == "" {
			t.Errorf("Persist failed, the entry is not durable in memory, but its record on disk is unstamped (durable): %+v", r)
		}
		// Never fsynced: a power loss may tear these bytes.
		if _, err := h.WriteAt([]byte("new bytes"), 0); err != nil {
			t.Fatal(err)
		}
		crashed := copyDir(t, dir)
		c2 := openCacheBoot(t, crashed, rebooted(t))
		if got, ok := lookup(t, c2, key); ok {
			t.Errorf("after a reboot, an entry whose Persist failed was trusted with bytes never fsynced: %q", got)
		}
	})

	// Leaving a durable record: the stamped record is set, the fsync
	// fails, the write fails and the entry stays durable in memory; but
	// the attribute now holds the stamped record, and a reboot drops what
	// Persist made durable.
	t.Run("LeaveDurable", func(t *testing.T) {
		dir := t.TempDir()
		c := xattrCache(t, dir)
		key := Key{"p", "f"}
		h := writeHeld(t, c, key.Path, "persisted")
		defer h.Release()
		if err := h.Persist(); err != nil {
			t.Fatal(err)
		}
		restore := failOpens(t)
		_, err := h.WriteAt([]byte("X"), 0)
		restore()
		if err == nil {
			t.Fatal("WriteAt did not fail: the test's fault injection did not work")
		}
		if got := contents(t, h); got != "persisted" {
			t.Fatalf("the failed write changed the data: %q", got)
		}
		c.mu.Lock()
		durable := c.entries[key].durable
		c.mu.Unlock()
		if r, _ := recordOf(t, c, key); durable && r.Boot != "" {
			t.Errorf("the entry is durable in memory, but its record on disk is stamped: %+v", r)
		}
		crashed := copyDir(t, dir)
		c2 := openCacheBoot(t, crashed, rebooted(t))
		if got, ok := lookup(t, c2, key); !ok || got != "persisted" {
			t.Errorf("after a reboot: %q, %v; want what Persist made durable (the later write failed)", got, ok)
		}
	})

	// A Park that fails is undone in memory (the entry keeps its key),
	// but the attribute already holds the parked record under the new
	// key: after a crash the entry is parked, under the other key.
	t.Run("Park", func(t *testing.T) {
		dir := t.TempDir()
		failedParkChangesNothing(t, xattrCache(t, dir), dir, failOpens)
	})
}

// failedParkChangesNothing parks an entry of c (in dir) while fail makes
// a step of it fail, and checks that the failed Park changed nothing: in
// memory, and after a crash on disk.
func failedParkChangesNothing(t *testing.T, c *Cache, dir string, fail func(*testing.T) (restore func())) {
	t.Helper()
	from, to := Key{"p", "f"}, Key{"p", ".parked/f"}
	h := writeHeld(t, c, from.Path, "unsent")
	defer h.Release()
	restore := fail(t)
	err := h.Park(to, "conflict")
	restore()
	if err == nil {
		t.Fatal("Park did not fail: the test's fault injection did not work")
	}
	if m := h.Meta(); h.Key() != from || m.Parked != "" {
		t.Fatalf("after the failed Park: %v, %+v", h.Key(), m)
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if m, ok := c2.Meta(from); !ok || m.Parked != "" {
		t.Errorf("after a crash, %v: %+v, %v; want the entry unparked, as the failed Park left it", from, m, ok)
	}
	if m, ok := c2.Meta(to); ok {
		t.Errorf("after a crash the failed Park took effect: %v %+v", to, m)
	}
}

// Defect 2. A mode switch leaves a stale record in a data file's
// attribute: a cache written with attributes and then opened with
// metadata files (Options.MetaFiles, or probeXattrs failing, e.g. on a
// full disk) writes the entry's later records to a metadata file, and
// recycling it into a spare empties (truncates) only that file. The spare
// pair's data file keeps the old record in its attribute. When the spare
// is reused, createRecord removes the metadata file if its write fails
// (here ENOSPC-like: a short write), and from then on the stale attribute
// speaks for the data file: after a crash Open brings back the removed
// entry, dirty, with whatever the data file holds (here nothing), and the
// mount would upload it.
func TestReviewStaleAttributeAfterModeSwitch(t *testing.T) {
	dir := t.TempDir()
	gone, other := Key{"p", "deleted"}, Key{"p", "new"}
	x := xattrCache(t, dir)
	write(t, x, gone, "unsent, uploaded later, then deleted")
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	m := openMetaCache(t, dir)
	h, _, err := m.Acquire(gone, -1, "", false)
	if err != nil || h == nil {
		t.Fatal(h, err)
	}
	if ok, err := h.MarkClean(h.Generation(), h.Size(), "v1"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	release(t, h)
	if err := m.Remove(gone); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, m, dir, 0, 1) // a spare pair; its data file's attribute still holds the dirty record
	testutil.Eventually(t, "the spare to be in the pool", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.spares) == 1
	})
	h, _, err = m.Acquire(other, -1, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	// Fixed: recycling with metadata files clears the attribute.
	if b, ok, err := readRecordXattr(m.dataPath(h.e.id)); err != nil || ok {
		t.Errorf("the spare's attribute still holds a record: %q, %v, %v", b, ok, err)
	}
	// Whatever way one survives (say a run that could not clear it), a
	// failed first record must not let it speak: put it back.
	if err := syscall.Setxattr(m.dataPath(h.e.id), recordXattr, []byte(`{"boot":"`+m.boot+`","v":1,"peer":"p","path":"deleted","size":0,"dirty":true,"mode":0}`+"\n"), 0); err != nil {
		t.Fatal(err)
	}
	restore := limitFileSize(t, 1)
	_, err = h.WriteAt([]byte("x"), 0)
	restore()
	if err == nil {
		t.Fatal("WriteAt did not fail: the test's fault injection did not work")
	}
	crashed := copyDir(t, dir)
	c := openCache(t, crashed, 0)
	if meta, ok := c.Meta(gone); ok {
		t.Errorf("a removed entry came back from a stale attribute after a crash: %+v", meta)
	}
	back := openMetaCache(t, copyDir(t, dir))
	if meta, ok := back.Meta(gone); ok {
		t.Errorf("with metadata files: a removed entry came back from a stale attribute after a crash: %+v", meta)
	}
}

// Defect 3. removeFiles goes on to unlink the metadata file when it could
// not unlink the data file. For an entry whose record outgrew the
// attribute, the attribute still holds an older record, which then speaks
// for the data file: after a restart the entry removed (and renamed
// before) is back, dirty, under its old key. (Unlink fails here because
// the file is immutable; EIO or EROFS do the same.)
func TestReviewRemoveFilesKeepsAttributeWhenDataUnlinkFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chattr +i")
	}
	if _, err := exec.LookPath("chattr"); err != nil {
		t.Skip("no chattr")
	}
	dir := t.TempDir()
	c := xattrCache(t, dir)
	short, long, e := outgrown(t, c)
	data := c.dataPath(e.id)
	if out, err := exec.Command("chattr", "+i", data).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", data).Run() })
	if err := c.Remove(long); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "-i", data).CombinedOutput(); err != nil {
		t.Fatalf("chattr -i: %v %s", err, out)
	}
	c2 := openCache(t, dir, 0)
	if m, ok := c2.Meta(short); ok {
		t.Errorf("the removed entry came back under its old key from the attribute's older record: %+v", m)
	}
}
