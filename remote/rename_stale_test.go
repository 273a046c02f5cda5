package remote

import (
	"io"
	"os"
	"testing"
	"time"
)

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
