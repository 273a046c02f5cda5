package cache

import (
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
	fill(t, c, clean, "clean copy", 7)
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
		fill(t, c, k, "x", 1)
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
