package remote

import (
	"fmt"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// fileEntry and dirEntry are listing entries of a file and of a
// directory named name.
func fileEntry(name string) peerproto.Entry {
	return peerproto.Entry{Name: name, Type: peerproto.TypeFile, Size: 1, Mode: 0o644}
}

func dirEntry(name string) peerproto.Entry {
	return peerproto.Entry{Name: name, Type: peerproto.TypeDir, Mode: 0o755}
}

// A rename over a file the caches know as a file (or know absent) keeps
// what is cached elsewhere and gives the target the moved file's
// attributes; over a directory, or a name the caches know nothing
// fresh of, everything cached under the target is forgotten.
func TestAttrsMovedTarget(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAttrCache(time.Second, func() time.Time { return now })
	a.remember("d/src", fileEntry("src"), true)
	a.remember("d/doc", fileEntry("doc"), true)
	a.remember("d/absent", peerproto.Entry{}, false)
	a.remember("d/sub", dirEntry("sub"), true)
	a.remember("d/sub/x", fileEntry("x"), true)
	a.remember("d/old", dirEntry("old"), true)
	a.remember("d/old/y", fileEntry("y"), true)
	a.remember("other/z", fileEntry("z"), true)

	a.moved("d/src", "d/doc")
	if e, ok, known := a.cached("d/doc"); !known || !ok || e.IsDir() || e.Name != "doc" {
		t.Errorf("d/doc after mv d/src d/doc: %+v exists %v known %v; want the moved file", e, ok, known)
	}
	if _, ok, known := a.cached("d/src"); !known || ok {
		t.Errorf("d/src after the rename: exists %v known %v; want known absent", ok, known)
	}
	for _, p := range []string{"d/sub/x", "other/z"} {
		if _, ok, known := a.cached(p); !known || !ok {
			t.Errorf("%s forgotten by a rename over a file", p)
		}
	}

	a.remember("d/src2", fileEntry("src2"), true)
	a.moved("d/src2", "d/absent")
	if e, ok, known := a.cached("d/absent"); !known || !ok || e.IsDir() {
		t.Errorf("d/absent after a rename onto it: %+v exists %v known %v", e, ok, known)
	}

	a.remember("d/emptydir", dirEntry("emptydir"), true)
	a.moved("d/emptydir", "d/old") // over a directory: what was under it goes
	if _, _, known := a.cached("d/old/y"); known {
		t.Errorf("d/old/y still cached after a rename over d/old")
	}

	now = now.Add(2 * time.Second) // what the caches know of d/sub is stale now
	a.remember("d/new", fileEntry("new"), true)
	a.remember("d/sub/x", fileEntry("x"), true)
	a.moved("d/new", "d/sub")
	if _, _, known := a.cached("d/sub/x"); known {
		t.Errorf("d/sub/x still cached after a rename over d/sub, which the caches no longer knew fresh")
	}
}

// BenchmarkAttrsMovedOverFile is an editor's save as the attribute cache
// sees it (mv doc.tmp doc) with many other names cached: it must not cost
// a scan of them all.
func BenchmarkAttrsMovedOverFile(b *testing.B) {
	for _, cached := range []int{100, 10000} {
		b.Run(fmt.Sprint(cached), func(b *testing.B) {
			now := time.Unix(1000, 0)
			a := newAttrCache(time.Hour, func() time.Time { return now })
			for i := range cached {
				a.remember(fmt.Sprintf("big/f%d", i), fileEntry(fmt.Sprintf("f%d", i)), true)
			}
			a.remember("edit/doc", fileEntry("doc"), true)
			for b.Loop() {
				a.remember("edit/doc.tmp", fileEntry("doc.tmp"), true)
				a.moved("edit/doc.tmp", "edit/doc")
			}
		})
	}
}
