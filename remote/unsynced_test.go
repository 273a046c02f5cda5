package remote

import (
	"maps"
	"testing"
)

// A rename within a directory marks the new name for its directory entry
// alone: the FSYNC that follows leaves it out when it names another entry
// of that directory (or the directory), since the peer syncs the
// directory of every name it is given; never does that leave a changed
// directory unsynced.
func TestUnsyncedEntryMarks(t *testing.T) {
	type step func(u *unsynced)
	mv := func(from, to string) step { return func(u *unsynced) { u.moved(from, to) } }
	mark := func(p string) step { return func(u *unsynced) { u.mark(p) } }
	for _, c := range []struct {
		name  string
		steps []step
		also  []string
		want  map[string]bool
	}{
		{"the rename alone is named", []step{mv("d/a", "d/b")}, nil, setOf("d/b")},
		{"the next save's file covers the last save's rename", []step{mv("d/.t", "d/doc")}, []string{"d/.t"}, setOf()},
		{"a file marked in the directory covers it", []step{mv("d/.t", "d/doc"), mark("d/x")}, nil, setOf("d/x")},
		{"a file in another directory does not", []step{mv("d/a", "d/b"), mark("e/x")}, nil, setOf("d/b", "e/x")},
		{"a file in a subdirectory does not", []step{mv("d/a", "d/b"), mark("d/e/x")}, nil, setOf("d/b", "d/e/x")},
		{"the directory named covers its entries", []step{mv("d/a", "d/b"), mark("d")}, nil, setOf("d")},
		{"one of two renames in a directory stays", []step{mv("d/a", "d/b"), mv("d/c", "d/e")}, nil, setOf("d/b")},
		{"renames in the root", []step{mv("a", "b"), mv("c", "e")}, nil, setOf("b")},
		{"content not durable yet keeps its name", []step{mark("d/a"), mv("d/a", "d/b")}, []string{"d/x"}, setOf("d/b")},
		{"a mark of the content after the rename", []step{mv("d/a", "d/b"), mark("d/b")}, []string{"d/x"}, setOf("d/b")},
		{"renamed again, still the entry alone", []step{mv("d/a", "d/b"), mv("d/b", "d/c")}, []string{"d/x"}, setOf()},
		{"a directory renamed with the entries under it", []step{mv("d/a", "d/b"), mv("d", "e")}, nil, setOf("e")},
		{"content renamed over a name marked for its entry", []step{mv("d/a", "d/doc"), mark("d/.s"), mv("d/.s", "d/doc")}, []string{"d/x"}, setOf("d/doc")},
		{"an entry mark renamed over a content mark keeps it", []step{mark("d/doc"), mv("d/a", "d/doc")}, []string{"d/x"}, setOf("d/doc")},
		{"across directories: both named whole", []step{mv("d/a", "e/a")}, []string{"e/x", "d/y"}, setOf("e/a", "d")},
	} {
		t.Run(c.name, func(t *testing.T) {
			var u unsynced
			for _, s := range c.steps {
				s(&u)
			}
			need, names, _ := u.take(c.also...)
			if !need || !maps.Equal(names, c.want) {
				t.Errorf("FSYNC names %v (due %v), want %v", names, need, c.want)
			}
			if need, names, _ := u.take(); need || names != nil {
				t.Errorf("after take: due %v for %v", need, names)
			}
		})
	}
}

// Past maxFsyncNames the FSYNC syncs everything, entry marks included.
func TestUnsyncedEntryMarksOverflow(t *testing.T) {
	var u unsynced
	for i := range maxFsyncNames + 1 {
		u.moved("d/a", "d/"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	if need, names, _ := u.take(); !need || names != nil {
		t.Fatalf("FSYNC names %v (due %v), want everything", names, need)
	}
}

// A file renamed while the FSYNC that took its old name is on its way is
// marked for its content under the new name: if that FSYNC fails, the
// name marked again is the old one, which may name another file (the
// next save's) when the next FSYNC goes, and leaves the renamed one out.
func TestUnsyncedRenameOfNameInFlight(t *testing.T) {
	var u unsynced
	u.mark("d/.swp")
	need, names, _ := u.take() // the FSYNC on its way
	if !need || !maps.Equal(names, setOf("d/.swp")) {
		t.Fatalf("FSYNC names %v (due %v)", names, need)
	}
	u.moved("d/.swp", "d/doc")
	// It fails: what it took is marked again.
	for n := range names {
		u.mark(n)
	}
	u.landed()
	if _, names, _ := u.take(); !names["d/doc"] {
		t.Fatalf("the next FSYNC names %v: d/doc, whose content the failed FSYNC was to make durable, left out", names)
	}
	// Once it has landed, a name it took and marked again is a mark for
	// content, and moves with the rename.
	u.mark("d/.swp")
	_, names, _ = u.take()
	for n := range names {
		u.mark(n) // failed again
	}
	u.landed()
	u.moved("d/.swp", "d/doc") // the mark moves with it: content
	if _, names, _ := u.take("d/.swp"); !names["d/doc"] {
		t.Fatalf("the next FSYNC names %v, want d/doc", names)
	}
}
