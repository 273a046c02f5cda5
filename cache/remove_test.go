package cache

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Removing a clean entry deletes its files in the background, removing a
// dirty one at once (its record would bring the file back after a
// crash); either way the cache forgets the key at once, and Close waits
// for the background deletions.
func TestRemoveFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	clean, dirty := Key{Peer: "p", Path: "clean"}, Key{Peer: "p", Path: "dirty"}
	fill(t, c, clean, "clean copy", "7")
	write(t, c, dirty, "unsent")
	if got := len(names(t, dir, "entries")); got != 4 {
		t.Fatalf("%d files in entries/, want 4", got)
	}
	if err := c.Remove(dirty); err != nil {
		t.Fatal(err)
	}
	if got := len(names(t, dir, "entries")); got != 2 {
		t.Errorf("%d files in entries/ right after removing the dirty entry, want 2", got)
	}
	if err := c.Remove(clean); err != nil {
		t.Fatal(err)
	}
	for _, k := range []Key{clean, dirty} {
		if _, ok := lookup(t, c, k); ok {
			t.Errorf("%v still cached after Remove", k)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(names(t, dir, "entries")) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("entries/ after Remove and Close: %q", got)
	}
	// Many removals in a row (more than the queue holds) all complete.
	c = openCache(t, dir, 0)
	for i := range 5000 {
		k := Key{Peer: "p", Path: string(rune('a'+i%26)) + time.Duration(i).String()}
		fill(t, c, k, "x", "1")
		if err := c.Remove(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("%d files left after 5000 removals and Close", len(got))
	}
}

// A crash can leave the files of a replaced clean copy behind (they are
// deleted in the background): Open then prefers the dirty record, and a
// stale clean one never answers for the file's new attributes.
func TestStaleCopyAfterCrash(t *testing.T) {
	for _, dirtySrc := range []bool{false, true} {
		dir := t.TempDir()
		c, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		k, src := Key{Peer: "p", Path: "doc"}, Key{Peer: "p", Path: ".doc.swp"}
		fill(t, c, k, "old text", "100")
		old := copyDir(t, dir) // the old copy's files, as a crash would leave them
		if dirtySrc {
			write(t, c, src, "new text")
		} else {
			fill(t, c, src, "new text", "200")
		}
		if err := c.Rename(src, k); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		// Put the old copy's files back next to the new record.
		for _, n := range names(t, old, "entries") {
			b, err := os.ReadFile(filepath.Join(old, "entries", n))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "entries", n), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c = openCache(t, dir, 0)
		if dirtySrc {
			got, ok := lookup(t, c, k)
			if !ok || got != "new text" {
				t.Errorf("dirty rename over a stale copy: %q, %v after a crash; want the new text", got, ok)
			}
			continue
		}
		h, ok, err := c.Acquire(k, int64(len("new text")), "200", false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if got := contents(t, h); got != "new text" {
				t.Errorf("clean copy for the new attributes is %q", got)
			}
			release(t, h)
		}
		if h, ok, _ := c.Acquire(k, int64(len("old text")), "100", false); ok {
			release(t, h) // the stale one may win the key; it only matches the old attributes
		}
	}
}
