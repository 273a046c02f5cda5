package cache

import "testing"

// A stale clean copy of "a" as a file (a was since replaced by a directory
// elsewhere) must not stop Rename("a", "c") from moving the dirty "a/b".
func TestRenameMovesEntriesUnderStaleFile(t *testing.T) {
	c := newCache(t, 1<<30)
	fill(t, c, Key{"bob", "a"}, "old file a", "1")
	write(t, c, Key{"bob", "a/b"}, "dirty b")
	if err := c.Rename(Key{"bob", "a"}, Key{"bob", "c"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookup(t, c, Key{"bob", "a/b"}); ok {
		t.Errorf("a/b still cached under its old name after renaming a to c")
	}
	if _, ok := lookup(t, c, Key{"bob", "c/b"}); !ok {
		t.Errorf("c/b not cached: the dirty copy did not follow the rename")
	}
}
