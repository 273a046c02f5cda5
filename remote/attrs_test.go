package remote

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
)

// A burst of lookups in a directory that was never listed costs a few
// STATs and then one LIST, and still answers every name right, missing
// ones included.
func TestLookupBurstLists(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		bob.writeFile(t, fmt.Sprintf("d/f%d", i), make([]byte, i), 0o644)
	}
	vc.take()
	for i := range n {
		fi, err := s.Stat(ctx, "bob", fmt.Sprintf("d/f%d", i))
		if err != nil || fi.Size() != int64(i) {
			t.Fatalf("Stat d/f%d = %v, %v; want size %d", i, fi, err, i)
		}
	}
	if _, err := s.Stat(ctx, "bob", "d/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing name: %v, want ErrNotExist", err)
	}
	got := vc.take()
	if got["LIST"] != 1 || got["STAT"] > burstStats {
		t.Errorf("%d lookups cost %v; want 1 LIST and at most %d STATs", n+1, got, burstStats)
	}

	// What the owner changes meanwhile shows once the attributes expire.
	bob.writeFile(t, "d/late", []byte("late"), 0o644)
	testutil.Eventually(t, "the owner's new file to show", func() bool {
		fi, err := s.Stat(ctx, "bob", "d/late")
		return err == nil && fi.Size() == 4
	})
}

// A few lookups in a directory do not list it: a large directory where
// a program looks at one or two names costs STATs only.
func TestLookupFewStats(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "a", []byte("a"), 0o644)
	bob.writeFile(t, "b", []byte("bb"), 0o644)
	for _, name := range []string{"a", "b"} {
		if _, err := s.Stat(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
	}
	if got := vc.take(); got["LIST"] != 0 || got["STAT"] != 2 {
		t.Errorf("2 lookups cost %v; want 2 STATs", got)
	}
}

// Filling a directory made through the store asks nothing about the new
// names: it was empty when made, and the store knows what it added.
func TestNewDirectoryNeedsNoLookups(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	if _, err := s.Mkdir(ctx, "bob", "new", 0o755); err != nil {
		t.Fatal(err)
	}
	vc.take()
	for i := range 10 {
		name := fmt.Sprintf("new/f%d", i)
		if _, err := s.Stat(ctx, "bob", name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat %s before creating it: %v, want ErrNotExist", name, err)
		}
		fh := s.open(t, "bob", name, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		s.write(t, fh, "x", 0)
		if err := s.Flush(ctx, fh); err != nil {
			t.Fatal(err)
		}
		s.release(t, fh)
		if fi, err := s.Stat(ctx, "bob", name); err != nil || fi.Size() != 1 {
			t.Fatalf("Stat %s after creating it: %v, %v", name, fi, err)
		}
	}
	got := vc.take()
	if got["STAT"] != 0 || got["LIST"] != 0 || got["PUT"] != 10 {
		t.Errorf("creating 10 files in a new directory cost %v; want 10 PUTs and nothing else", got)
	}
	if bob.content(t, "new/f9") != "x" {
		t.Error("the peer does not have new/f9")
	}
}

// An editor's save (write a temporary file, rename it over the original)
// leaves the store knowing the original's new attributes.
func TestRenameKeepsAttributes(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "doc", []byte("old"), 0o644)
	fh := s.open(t, "bob", ".doc.swp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "new text", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if err := s.Rename(ctx, "bob", ".doc.swp", "doc"); err != nil {
		t.Fatal(err)
	}
	vc.take()
	fi, err := s.Stat(ctx, "bob", "doc")
	if err != nil || fi.Size() != int64(len("new text")) {
		t.Fatalf("Stat doc after the save: %v, %v", fi, err)
	}
	if _, err := s.Stat(ctx, "bob", ".doc.swp"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of the renamed temporary: %v, want ErrNotExist", err)
	}
	if got := vc.take(); len(got) > 1 || len(got) == 1 && got["RENAME"] != 1 {
		t.Errorf("lookups after the save cost %v; want none (the RENAME written behind may be among them)", got)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if bob.content(t, "doc") != "new text" {
		t.Errorf("peer's doc = %q", bob.content(t, "doc"))
	}
}

// A file changed on the peer long after this mount last looked at it,
// then renamed through the mount: reading it under the new name must give
// the new content, not the mount's old cached copy.
func TestRenameDoesNotReviveStaleAttrs(t *testing.T) {
	clock := newFakeClock()
	s, bob, _ := countedStoreWith(t, func(o *Options) { o.AttrTTL, o.Now = 50*time.Millisecond, clock.Now })
	ctx := testCtx(t)
	bob.writeFile(t, "f", []byte("old content"), 0o644)

	read := func(name string) string {
		fh := s.open(t, "bob", name, os.O_RDONLY, 0)
		defer s.release(t, fh)
		buf := make([]byte, 100)
		n, err := s.ReadAt(ctx, fh, buf, 0)
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%s): %v", name, err)
		}
		return string(buf[:n])
	}
	if got := read("f"); got != "old content" {
		t.Fatalf("first read = %q", got)
	}
	// Another writer replaces f (new size, new mtime), well past AttrTTL.
	bob.writeFile(t, "f", []byte("NEW CONTENT, longer"), 0o644)
	clock.advance(200 * time.Millisecond)

	if err := s.Rename(ctx, "bob", "f", "g"); err != nil {
		t.Fatal(err)
	}
	fi, err := s.Stat(ctx, "bob", "g")
	if err != nil {
		t.Fatal(err)
	}
	if got := read("g"); got != "NEW CONTENT, longer" || fi.Size() != 19 {
		t.Fatalf("after rename: Stat size %d, content %q; want the peer's 19 bytes %q", fi.Size(), got, "NEW CONTENT, longer")
	}
}
