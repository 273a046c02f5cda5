package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/internal/testutil"
)

// waitFiles waits until dir's entries/ holds the files of entries
// entries that have a record and of spares spares, for a cache in c's
// record mode (filesPer), and c is emptying no dropped entry's files: a
// file's record is emptied before the file joins c's spares (recycle),
// so the files alone may show a spare that the next new entry cannot be
// given yet (TestSparesReused then saw a new file made, once in CI).
func waitFiles(t *testing.T, c *Cache, dir string, entries, spares int) {
	t.Helper()
	testutil.Eventually(t, fmt.Sprintf("entries/ to hold %d entries and %d spares", entries, spares), func() bool {
		if len(names(t, dir, "entries")) != (entries+spares)*filesPer(c) || recorded(t, dir) != entries {
			return false
		}
		// Looked at after the files: a recycle that had emptied a record
		// seen empty above has then put its file among the spares too.
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.recycling == 0
	})
}

// inodes returns the inode numbers of the files in dir's entries/.
func inodes(t *testing.T, dir string) map[uint64]bool {
	t.Helper()
	out := map[uint64]bool{}
	for _, n := range names(t, dir, "entries") {
		fi, err := os.Stat(filepath.Join(dir, "entries", n))
		if err != nil {
			t.Fatal(err) // only called where nothing is being deleted
		}
		out[fi.Sys().(*syscall.Stat_t).Ino] = true
	}
	return out
}

// The files of a dropped clean entry are emptied and given to the next
// new entries, through every way of making one (Create, Acquire with
// create, Partial, Fill): no file is created for them, and what they
// hold survives Close and Open like any entry's.
func TestSparesReused(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	keep := Key{Peer: "p", Path: "keep"}
	fill(t, c, keep, "kept", "1")
	var gone []Key
	for i := range 4 {
		k := Key{Peer: "p", Path: "gone" + string(rune('a'+i))}
		fill(t, c, k, strings.Repeat("x", 1000), "1")
		gone = append(gone, k)
	}
	for _, k := range gone {
		if err := c.Remove(k); err != nil {
			t.Fatal(err)
		}
	}
	waitFiles(t, c, dir, 1, 4) // keep's files and four spares
	before := inodes(t, dir)

	created, err := c.Create(Key{Peer: "p", Path: "created"}, 0o640, "none")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := created.WriteAt([]byte("created"), 0); err != nil {
		t.Fatal(err)
	}
	release(t, created)
	write(t, c, Key{Peer: "p", Path: "acquired"}, "acquired")
	part, err := c.Partial(Key{Peer: "p", Path: "partial"}, 5, "9", "9")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.WriteAt([]byte("pa"), 0); err != nil {
		t.Fatal(err)
	}
	release(t, part)
	fill(t, c, Key{Peer: "p", Path: "filled"}, "filled", "2")

	if after := inodes(t, dir); len(after) != len(before) {
		t.Errorf("entries/ went from %d files to %d: new ones were created", len(before), len(after))
	} else {
		for ino := range after {
			if !before[ino] {
				t.Errorf("inode %d is new: a spare was not used", ino)
			}
		}
	}
	want := map[Key]string{
		keep:                          "kept",
		{Peer: "p", Path: "created"}:  "created",
		{Peer: "p", Path: "acquired"}: "acquired",
		{Peer: "p", Path: "filled"}:   "filled",
	}
	check := func(c *Cache) {
		t.Helper()
		for k, v := range want {
			if got, ok := lookup(t, c, k); !ok || got != v {
				t.Errorf("%v = %q, %v; want %q", k, got, ok, v)
			}
		}
		for _, k := range gone {
			if _, ok := c.Meta(k); ok {
				t.Errorf("%v is back", k)
			}
		}
		m, ok := c.Meta(Key{Peer: "p", Path: "partial"})
		if !ok || !m.Dirty || !m.Partial || m.Size != 5 {
			t.Errorf("partial copy: %+v, %v", m, ok)
		}
	}
	check(c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	check(openCache(t, dir, 0))
}

// What a crash leaves of spares, and of a new entry whose record was
// never written (an empty record beside data), Open takes back as spares,
// emptied, without a word, and hands to new entries; no dropped entry
// comes back.
func TestSparesAfterCrash(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	k := Key{Peer: "p", Path: "f"}
	fill(t, c, k, "old copy", "1")
	if err := c.Remove(k); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, c, dir, 0, 1)
	crashed := copyDir(t, dir)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("entries/ after Close: %q; want the spares deleted", got)
	}
	// A new entry's record cut short at its very start: an empty
	// metadata file, or an empty attribute, beside data.
	for name, body := range map[string]string{"torn.meta": "", "torn.data": "half of a new file"} {
		if c.xattrs && name == "torn.meta" {
			continue
		}
		if err := os.WriteFile(filepath.Join(crashed, "entries", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c.xattrs {
		if err := syscall.Setxattr(filepath.Join(crashed, "entries", "torn.data"), recordXattr, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	per := filesPer(c)
	var logged testutil.LogBuffer
	c = openCacheWith(t, Options{Dir: crashed, Logger: zerolog.New(&logged)})
	if st := c.Stats(); st.Entries != 0 {
		t.Errorf("Stats after the crash = %+v; want no entries", st)
	}
	if _, ok := c.Meta(k); ok {
		t.Errorf("%v is back after the crash", k)
	}
	if n := nonEmpty(t, crashed); n != 0 {
		t.Errorf("%d files still hold data after Open", n)
	}
	if n := recorded(t, crashed); n != 0 {
		t.Errorf("%d records after Open", n)
	}
	if s := logged.String(); strings.Contains(s, "discard") {
		t.Errorf("Open logged discards for spares:\n%s", s)
	}
	before := inodes(t, crashed)
	write(t, c, Key{Peer: "p", Path: "a"}, "a")
	write(t, c, Key{Peer: "p", Path: "b"}, "b")
	if after := inodes(t, crashed); len(after) != len(before) || len(after) != 2*per {
		t.Errorf("entries/ went from %d files to %d; want the %d spare files used", len(before), len(after), 2*per)
	}
	write(t, c, Key{Peer: "p", Path: "c"}, "c")
	if n := len(names(t, crashed, "entries")); n != 3*per {
		t.Errorf("entries/ holds %d files after a third new entry; want %d", n, 3*per)
	}
}

// A dropped entry that a Handle still pins keeps its content for that
// Handle, as an unlinked file does: its files are never emptied for
// reuse while pinned.
func TestPinnedDropNotReused(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	k := Key{Peer: "p", Path: "open"}
	fill(t, c, k, "still readable", "1")
	h, ok, err := c.Acquire(k, -1, "", false)
	if err != nil || !ok {
		t.Fatalf("Acquire: %v, %v", ok, err)
	}
	if err := c.Remove(k); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, c, dir, 0, 0) // unlinked at once, not kept
	for i := range 3 {
		write(t, c, Key{Peer: "p", Path: "new" + string(rune('a'+i))}, "new content that is longer")
	}
	if got := contents(t, h); got != "still readable" {
		t.Errorf("pinned dropped copy reads %q", got)
	}
	release(t, h)
}

// smallEntries fills c with n clean entries of one byte (peer "p", paths
// f0s, f1ns...), and returns their keys.
func smallEntries(t *testing.T, c *Cache, n int) []Key {
	t.Helper()
	keys := make([]Key, 0, n)
	for i := range n {
		k := Key{Peer: "p", Path: "f" + time.Duration(i).String()}
		fill(t, c, k, "x", "1")
		keys = append(keys, k)
	}
	return keys
}

// removeAll removes keys from c.
func removeAll(t *testing.T, c *Cache, keys []Key) {
	t.Helper()
	for _, k := range keys {
		if err := c.Remove(k); err != nil {
			t.Fatal(err)
		}
	}
}

// Past maxSpares the files of dropped entries are deleted (once the
// cache is quiet), and Close deletes the spares: nothing is left.
func TestSparesBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("makes over a thousand entries")
	}
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	n := maxSpares + 50
	removeAll(t, c, smallEntries(t, c, n))
	waitFiles(t, c, dir, 0, maxSpares)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("%d files left after Close", len(got))
	}
}

// TestDropsPastSparesWakeLittle: once the spares are full, dropped
// entries' files wait for a quiet moment to be unlinked, and queueing one
// does not wake removeLoop (rm -r would pay a wake-up of another thread
// per unlink): a burst of drops wakes it a few times (its timer), not
// once per drop; their files are deleted all the same.
func TestDropsPastSparesWakeLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("makes over a thousand entries")
	}
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	const burst = 300
	n := maxSpares + burst
	keys := smallEntries(t, c, n)
	removeAll(t, c, keys[:maxSpares])
	waitFiles(t, c, dir, burst, maxSpares)
	before := c.wakes.Load()
	for _, k := range keys[maxSpares:] {
		if err := c.Remove(k); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond) // as an rm -r, not all at once
	}
	waitFiles(t, c, dir, 0, maxSpares)
	// Once per removeQuiet while the burst lasts (well under a second
	// here), and once when it ends; a wake-up per drop would be burst.
	if woke := c.wakes.Load() - before; woke > burst/4 {
		t.Errorf("removeLoop woke %d times for %d drops past full spares, want a few", woke, burst)
	}
	testutil.Eventually(t, "no bytes counted as waiting once all is unlinked", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.waitBytes == 0
	})
}

// TestBigDropPastSparesWakes: past maxDeferredBytes the unlinks that wait
// run at once (reuse.go), also for drops past full spares, which arm a
// timer instead of waking removeLoop: a clean copy of maxDeferredBytes
// (sparse) dropped with the spares full wakes it (no timer armed), and
// its file goes. (A review of the timer found it waiting removeQuiet.)
func TestBigDropPastSparesWakes(t *testing.T) {
	if testing.Short() {
		t.Skip("makes over a thousand entries")
	}
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	big := Key{Peer: "p", Path: "big"}
	h, err := c.Create(big, 0o640, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(maxDeferredBytes); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.MarkClean(h.Generation(), maxDeferredBytes, "1"); !ok || err != nil {
		t.Fatalf("MarkClean: %v, %v", ok, err)
	}
	release(t, h)
	c.mu.Lock()
	bigData := c.dataPath(c.entries[big].id)
	c.mu.Unlock()
	removeAll(t, c, smallEntries(t, c, maxSpares))
	waitFiles(t, c, dir, 1, maxSpares)
	if err := c.Remove(big); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	armed := c.dropTimer != nil
	c.mu.Unlock()
	if armed {
		t.Errorf("a drop of %d bytes past full spares armed the timer instead of waking removeLoop", int64(maxDeferredBytes))
	}
	testutil.Eventually(t, "the big copy's data file deleted", func() bool {
		_, err := os.Stat(bigData)
		return errors.Is(err, fs.ErrNotExist)
	})
}
