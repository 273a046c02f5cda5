package export

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/internal/testfs"
)

func TestServerJailEscapes(t *testing.T) {
	export, outside := testfs.Escapes(t)
	_, addr := testServe(t, Options{Export: export})
	c := testConnect(t, addr)

	for _, tc := range []struct{ req, want string }{
		{"GET ../x", `GET FAIL denied path escapes the export: "../x"`},
		{"GET /etc/passwd", `GET FAIL denied path escapes the export: "/etc/passwd"`},
		{"GET a/../../x", `GET FAIL denied path escapes the export: "a/../../x"`},
		{"GET a%2F..%2F..%2Fx", `GET FAIL denied path escapes the export: "a/../../x"`},
		{"GET sub/../hello.txt", `GET FAIL denied path escapes the export: "sub/../hello.txt"`},
		{"GET ..", `GET FAIL denied path escapes the export: ".."`},
		{"GET out", `GET FAIL denied path escapes the export: "out" leads outside through a symbolic link`},
		{"GET abs", `GET FAIL denied path escapes the export: "abs" leads outside through a symbolic link`},
		{"GET sub/sneaky", `GET FAIL denied path escapes the export: "sub/sneaky" leads outside through a symbolic link`},
		{"GET outdir/secret.txt", `GET FAIL denied path escapes the export: "outdir/secret.txt" leads outside through a symbolic link`},
		{"GET absdir/secret.txt", `GET FAIL denied path escapes the export: "absdir/secret.txt" leads outside through a symbolic link`},
		{"STAT out", `STAT FAIL denied path escapes the export: "out" leads outside through a symbolic link`},
		{"LIST outdir", `LIST FAIL denied path escapes the export: "outdir" leads outside through a symbolic link`},
		{"LIST absdir", `LIST FAIL denied path escapes the export: "absdir" leads outside through a symbolic link`},
		{"PUT out 5", `PUT FAIL denied path escapes the export: "out" leads outside through a symbolic link`},
		{"PUT abs 5", `PUT FAIL denied path escapes the export: "abs" leads outside through a symbolic link`},
		{"PUT outdir/new.txt 5", `PUT FAIL denied path escapes the export: "outdir/new.txt" leads outside through a symbolic link`},
		{"PUT ../new.txt 5", `PUT FAIL denied path escapes the export: "../new.txt"`},
		{"DELETE out", `DELETE FAIL denied path escapes the export: "out" leads outside through a symbolic link`},
		{"MKDIR outdir/d", `MKDIR FAIL denied path escapes the export: "outdir/d" leads outside through a symbolic link`},
		{"SETATTR out mode=0777", `SETATTR FAIL denied path escapes the export: "out" leads outside through a symbolic link`},
		{"SETATTR out size=0", `SETATTR FAIL denied path escapes the export: "out" leads outside through a symbolic link`},
		{"RENAME hello.txt ../stolen", `RENAME FAIL denied path escapes the export: "../stolen"`},
		{"RENAME hello.txt outdir/stolen", `RENAME FAIL denied path escapes the export: "hello.txt" or "outdir/stolen" leads outside through a symbolic link`},
		{"GET a%00b", `GET FAIL invalid NUL byte in name "a\x00b"`},
		{"PUT a%00b 1", `PUT FAIL invalid NUL byte in name "a\x00b"`},
		{"GET loop", `GET FAIL invalid too many levels of symbolic links in "loop"`},
		{"PUT " + jail.TempPrefix + "x 1", `PUT FAIL invalid name ".peerfs-tmp-x" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		{"GET sub/" + jail.TempPrefix + "x", `GET FAIL invalid name "sub/.peerfs-tmp-x" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		{"RENAME hello.txt " + jail.TempPrefix + "x", `RENAME FAIL invalid name ".peerfs-tmp-x" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		{"GET " + strings.Repeat("a", 256), `GET FAIL nametoolong name too long (limit 4096 bytes, 255 per element)`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", shortLine([]byte(tc.req)), got, tc.want)
		}
	}

	// Nothing outside changed, nothing appeared.
	if b, err := os.ReadFile(filepath.Join(outside, "secret.txt")); string(b) != "secret" || err != nil {
		t.Errorf("secret.txt: %q, %v", b, err)
	}
	fi, err := os.Stat(filepath.Join(outside, "secret.txt"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("secret.txt mode changed: %v, %v", fi.Mode(), err)
	}
	if es, _ := os.ReadDir(outside); len(es) != 1 {
		t.Errorf("outside has %d entries, want just the secret", len(es))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(export), "stolen")); err == nil {
		t.Error("a file was renamed out of the export")
	}
	if _, err := os.Lstat(filepath.Join(export, "out")); err != nil {
		t.Errorf("the escaping link was deleted: %v", err)
	}

	// LIST leaves out links that escape (or loop) and follows those inside.
	if got, want := entryNames(c.list("")), []string{"hello.txt", "in", "indir", "sub"}; !slices.Equal(got, want) {
		t.Errorf("LIST: %q, want %q", got, want)
	}
	if got, want := entryNames(c.list("sub")), []string{"inner.txt", "up"}; !slices.Equal(got, want) {
		t.Errorf("LIST sub: %q, want %q", got, want)
	}
	if got := entryNames(c.list("indir")); !slices.Equal(got, []string{"inner.txt", "up"}) {
		t.Errorf("LIST indir: %q", got)
	}
}

func TestServerJailSymlinksInside(t *testing.T) {
	export, _ := testfs.Escapes(t)
	_, addr := testServe(t, Options{Export: export})
	c := testConnect(t, addr)
	if got := string(c.get("in")); got != "hello" {
		t.Errorf("GET in = %q", got)
	}
	if got := string(c.get("indir/inner.txt")); got != "inner" {
		t.Errorf("GET indir/inner.txt = %q", got)
	}
	if got := string(c.get("sub/up")); got != "hello" {
		t.Errorf("GET sub/up = %q", got)
	}
	if got := c.roundTrip("STAT indir"); !strings.HasPrefix(got, "STAT OK d ") {
		t.Errorf("STAT indir = %q", got)
	}
	// PUT through a link writes its target and keeps the link.
	if r := c.put("sub/up", []byte("HELLO!")); !strings.HasPrefix(r, "PUT DONE 6 ") {
		t.Fatalf("PUT sub/up: %q", r)
	}
	if b, _ := os.ReadFile(filepath.Join(export, "hello.txt")); string(b) != "HELLO!" {
		t.Errorf("hello.txt = %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(export, "sub/up")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("sub/up is no longer a link: %v, %v", fi.Mode(), err)
	}
	if r := c.put("indir/new.txt", []byte("x")); !strings.HasPrefix(r, "PUT DONE 1 ") {
		t.Fatalf("PUT indir/new.txt: %q", r)
	}
	if _, err := os.Stat(filepath.Join(export, "sub/new.txt")); err != nil {
		t.Error(err)
	}
}

func TestServerSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	writeFile(t, dir, "f.txt", "f")
	_, addr := testServe(t, Options{Export: dir, IOTimeout: 2 * time.Second})
	c := testConnect(t, addr)
	for _, tc := range []struct{ req, want string }{
		// None of these may block on the FIFO.
		{"GET fifo", `GET FAIL invalid "fifo" is not a regular file`},
		{"LIST fifo", `LIST FAIL notdir "fifo" (or one of its parents) is not a directory`},
		{"STAT fifo", `STAT FAIL notfound "fifo" is not a regular file or directory`},
		{"SETATTR fifo size=0", `SETATTR FAIL notfound "fifo" is not a regular file or directory`},
		{"PUT fifo 1", `PUT FAIL invalid "fifo" exists and is not a regular file`},
		{"DELETE fifo", `DELETE FAIL notfound "fifo" is not a regular file or directory`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	if got := entryNames(c.list("")); !slices.Equal(got, []string{"f.txt"}) {
		t.Errorf("LIST: %q", got)
	}
}
