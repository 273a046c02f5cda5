package cache

// Second review of the records in attributes: of the fixes in 14ad6ab and
// of e8e83a4 (durable records go to metadata files). Each test fails on
// e8e83a4's successor c139dbc (the first, a directory fsync failing after
// the rename, was fixed in a31239e while this review ran).

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// denyDir makes the permission bits of dir mode, and have them apply to
// this goroutine also when the tests run as root: it locks the goroutine
// to its thread and drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from
// that thread's effective set (capabilities are per thread; every other
// goroutine, removeLoop included, keeps them). Everything the calling
// goroutine does in between (the cache's record writes run on it)
// therefore meets the bits: mode 0o300 lets a rename into dir succeed
// and makes the open(2) of the directory for its fsync (syncDir) fail;
// mode 0o500 makes an unlink in it fail. Call restore on the same
// goroutine.
func denyDir(t *testing.T, dir string, mode os.FileMode) (restore func()) {
	t.Helper()
	runtime.LockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var saved [2]unix.CapUserData
	root := os.Geteuid() == 0
	if root {
		if err := unix.Capget(&hdr, &saved[0]); err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
		dropped := saved
		dropped[0].Effective &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
		if err := unix.Capset(&hdr, &dropped[0]); err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Error(err)
		}
		if root {
			if err := unix.Capset(&hdr, &saved[0]); err != nil {
				// Leave the thread locked: it dies with the goroutine.
				t.Fatal(err)
			}
		}
		runtime.UnlockOSThread()
	}
	t.Cleanup(restore)
	return restore
}

// Defect A (question 1). Since e8e83a4 a durable record, and the record
// leaving it, go to a metadata file through replaceRecord(sync), which on
// a failure after the rename (the directory's fsync) returns an error
// without putting anything back: the callers restore their state in
// memory as if nothing reached the disk, but the metadata file holds the
// new record (and Open prefers it to the attribute). 14ad6ab fixed exactly
// this for records in attributes (setRecordXattr puts the old value
// back); routing these records to files brought it back, for the same
// three callers its tests cover. Here the directory's open for its fsync
// fails (EACCES: denyDir); an EIO from the fsync does the same.
func TestReview2DirSyncFailureAfterRename(t *testing.T) {
	// A Persist that fails leaves an unstamped (durable) record in the
	// metadata file while the entry stays "not durable" in memory; the
	// next write to a range already changed writes no record and is
	// never fsynced, yet after a reboot Open trusts it.
	t.Run("Persist", func(t *testing.T) {
		dir := t.TempDir()
		c := openCache(t, dir, 0) // both record modes: metadata files had the hole before
		key := Key{"p", "f"}
		h := writeHeld(t, c, key.Path, "old bytes")
		defer h.Release()
		restore := denyDir(t, c.entriesDir, 0o300)
		err := h.Persist()
		restore()
		if err == nil {
			t.Fatal("Persist did not fail: the test's fault injection did not work")
		}
		c.mu.Lock()
		durable := c.entries[key].durable
		c.mu.Unlock()
		if r, _ := recordOf(t, c, key); !durable && r.Boot == "" {
			t.Errorf("Persist failed, the entry is not durable in memory, but its record on disk is unstamped (durable): %+v", r)
		}
		// Never fsynced: a power loss may tear these bytes.
		if _, err := h.WriteAt([]byte("new bytes"), 0); err != nil {
			t.Fatal(err)
		}
		c2 := openCacheBoot(t, copyDir(t, dir), rebooted(t))
		if got, ok := lookup(t, c2, key); ok {
			t.Errorf("after a reboot, an entry whose Persist failed was trusted with bytes never fsynced: %q", got)
		}
	})

	// Leaving the durable state: the stamped record is renamed over the
	// durable one, the directory's fsync fails, the write fails and the
	// entry stays durable in memory; the metadata file holds the stamped
	// record, and a reboot drops what Persist made durable.
	t.Run("LeaveDurable", func(t *testing.T) {
		dir := t.TempDir()
		c := openCache(t, dir, 0) // both record modes: metadata files had the hole before
		key := Key{"p", "f"}
		h := writeHeld(t, c, key.Path, "persisted")
		defer h.Release()
		if err := h.Persist(); err != nil {
			t.Fatal(err)
		}
		restore := denyDir(t, c.entriesDir, 0o300)
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
		c2 := openCacheBoot(t, copyDir(t, dir), rebooted(t))
		if got, ok := lookup(t, c2, key); !ok || got != "persisted" {
			t.Errorf("after a reboot: %q, %v; want what Persist made durable (the later write failed)", got, ok)
		}
	})

	// A Park that fails is undone in memory (the entry keeps its key),
	// but the metadata file holds the parked record under the new key.
	t.Run("Park", func(t *testing.T) {
		dir := t.TempDir()
		c := openCache(t, dir, 0) // both record modes: metadata files had the hole before
		failedParkChangesNothing(t, c, dir, func(t *testing.T) func() { return denyDir(t, c.entriesDir, 0o300) })
	})
}

// Defect B (question 2). Persist moves an entry whose record was in the
// attribute to a metadata file "for good" so that older versions, which
// read only metadata files, keep it; but the attribute keeps the entry's
// last stamped record from before (here: dirty, under its old key).
// Those older versions remove a metadata file before its data file
// (removeFiles before eec2d57), and reuse spares without clearing any
// attribute. A downgrade, a removal of the (renamed) file cut short by a
// crash between the two unlinks, and an upgrade in the same boot: the
// data file is left without a metadata file, its stale attribute speaks,
// and the deleted file is back, dirty, under the name it had before the
// rename (the mount would upload it there). The simulated older version
// is the one os.Remove of the metadata file.
func TestReview2StaleAttributeOutlivesPersist(t *testing.T) {
	dir := t.TempDir()
	c := xattrCache(t, dir)
	old, renamed := Key{"p", "draft"}, Key{"p", "final"}
	h := writeHeld(t, c, old.Path, "upload failed")
	if err := h.Persist(); err != nil {
		t.Fatal(err)
	}
	release(t, h)
	if err := c.Rename(old, renamed); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	id := c.entries[renamed].id
	c.mu.Unlock()
	if b, ok, err := readRecordXattr(c.dataPath(id)); err != nil || ok && len(b) > 0 {
		t.Errorf("the entry's record moved to its metadata file for good, but the attribute still holds an older one: %q, %v", b, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// An older version deletes "final": metadata file first; it crashes
	// before unlinking the data file.
	if err := os.Remove(c.metaPath(id)); err != nil {
		t.Fatal(err)
	}
	c2 := openCache(t, dir, 0)
	if m, ok := c2.Meta(old); ok {
		t.Errorf("a deleted file came back under its name before a rename, from the attribute's stale record: %+v", m)
	}
}

// Defect C (question 4). 14ad6ab made removeFiles empty the metadata
// file when the data file cannot be unlinked (EIO, EROFS, EACCES...), so
// that the pair reads as a spare; but an entry whose record is its data
// file's attribute (the common case with attributes) has no metadata
// file, and its record stays as it was: after a restart the removed
// entry is back, dirty. (Before attributes the metadata file went and
// the data file without one was dropped.) Here the unlink fails because
// the entries directory is not writable (denyDir); the data file's
// attribute can still be set.
func TestReview2RemoveKeepsAttributeRecordWhenUnlinkFails(t *testing.T) {
	dir := t.TempDir()
	c := xattrCache(t, dir)
	key := Key{"p", "deleted"}
	write(t, c, key, "unsent, then deleted")
	c.mu.Lock()
	id := c.entries[key].id
	c.mu.Unlock()
	restore := denyDir(t, c.entriesDir, 0o500)
	err := c.Remove(key)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.dataPath(id)); err != nil {
		t.Fatalf("the data file was unlinked: the test's fault injection did not work (%v)", err)
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if m, ok := c2.Meta(key); ok {
		t.Errorf("after a restart, a removed entry is back from its data file's attribute: %+v", m)
	}
}
