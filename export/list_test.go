package export

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
)

func TestServerListAttributes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.txt", "bbb")
	writeFile(t, dir, "a/inner.txt", "x")
	if err := os.Chmod(filepath.Join(dir, "a"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b.txt", filepath.Join(dir, "link-to-b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	// A temporary file appearing while serving (an upload in flight) stays hidden.
	writeFile(t, dir, jail.TempPrefix+"inflight", "zzz")

	es := c.list("")
	if got, want := entryNames(es), []string{"a", "b.txt", "link-to-b"}; !slices.Equal(got, want) {
		t.Fatalf("LIST %q, want %q", got, want)
	}
	if e := es[0]; e.Type != peerproto.TypeDir || e.Mode != 0o750 {
		t.Errorf("a: %+v", e)
	}
	fi, _ := os.Stat(filepath.Join(dir, "b.txt"))
	for _, e := range es[1:] {
		if e.Type != peerproto.TypeFile || e.Mode != 0o644 || e.Size != 3 || e.Mtime != fi.ModTime().UnixNano() {
			t.Errorf("%s: %+v, want the attributes of b.txt", e.Name, e)
		}
	}
	if got := entryNames(c.list("a")); !slices.Equal(got, []string{"inner.txt"}) {
		t.Errorf("LIST a: %q", got)
	}
	for req, want := range map[string]string{
		"LIST nope":  `LIST FAIL notfound no such file or directory "nope"`,
		"LIST b.txt": `LIST FAIL notdir "b.txt" (or one of its parents) is not a directory`,
		"LIST a b":   `LIST FAIL invalid usage: LIST [<dir>]`,
	} {
		if got := c.roundTrip(req); got != want {
			t.Errorf("%s: %q, want %q", req, got, want)
		}
	}
	if got := c.roundTrip("STAT ."); !strings.HasPrefix(got, "STAT OK d ") {
		t.Errorf("STAT .: %q", got)
	}
	if got, want := c.roundTrip("STAT b.txt"), fmt.Sprintf("STAT OK f 0644 3 %d", fi.ModTime().UnixNano()); got != want {
		t.Errorf("STAT b.txt: %q, want %q", got, want)
	}
	if got, want := c.roundTrip("STAT dangling"), `STAT FAIL notfound no such file or directory "dangling"`; got != want {
		t.Errorf("STAT dangling: %q, want %q", got, want)
	}
}
