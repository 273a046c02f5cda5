package peer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// srvJailFixture builds base/export (served) next to base/outside (with a
// secret), and symbolic links from the export both ways.
func srvJailFixture(t *testing.T) (export, outside string) {
	t.Helper()
	base := t.TempDir()
	export = filepath.Join(base, "export")
	outside = filepath.Join(base, "outside")
	srvWriteFile(t, outside, "secret.txt", "secret")
	srvWriteFile(t, export, "hello.txt", "hello")
	srvWriteFile(t, export, "sub/inner.txt", "inner")
	for link, target := range map[string]string{
		"out":        "../outside/secret.txt",
		"abs":        filepath.Join(outside, "secret.txt"),
		"outdir":     "../outside",
		"absdir":     outside,
		"sub/sneaky": "../../outside/secret.txt",
		"in":         "hello.txt",
		"indir":      "sub",
		"sub/up":     "../hello.txt",
		"loop":       "loop",
	} {
		if err := os.Symlink(target, filepath.Join(export, link)); err != nil {
			t.Fatal(err)
		}
	}
	return export, outside
}

func TestServerJailEscapes(t *testing.T) {
	export, outside := srvJailFixture(t)
	_, addr := srvTestServe(t, ServerOptions{Export: export})
	c := srvTestConnect(t, addr)

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
		{"PUT " + jailTempPrefix + "x 1", `PUT FAIL invalid name ".peerfs-tmp-x" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		{"GET sub/" + jailTempPrefix + "x", `GET FAIL invalid name "sub/.peerfs-tmp-x" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		{"RENAME hello.txt " + jailTempPrefix + "x", `RENAME FAIL invalid name ".peerfs-tmp-x" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		{"GET " + strings.Repeat("a", 256), `GET FAIL nametoolong name too long (limit 4096 bytes, 255 per element)`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", srvShort([]byte(tc.req)), got, tc.want)
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
	if got, want := srvNames(c.list("")), []string{"hello.txt", "in", "indir", "sub"}; !slices.Equal(got, want) {
		t.Errorf("LIST: %q, want %q", got, want)
	}
	if got, want := srvNames(c.list("sub")), []string{"inner.txt", "up"}; !slices.Equal(got, want) {
		t.Errorf("LIST sub: %q, want %q", got, want)
	}
	if got := srvNames(c.list("indir")); !slices.Equal(got, []string{"inner.txt", "up"}) {
		t.Errorf("LIST indir: %q", got)
	}
}

func TestServerJailSymlinksInside(t *testing.T) {
	export, _ := srvJailFixture(t)
	_, addr := srvTestServe(t, ServerOptions{Export: export})
	c := srvTestConnect(t, addr)
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
	srvWriteFile(t, dir, "f.txt", "f")
	_, addr := srvTestServe(t, ServerOptions{Export: dir, IOTimeout: 2 * time.Second})
	c := srvTestConnect(t, addr)
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
	if got := srvNames(c.list("")); !slices.Equal(got, []string{"f.txt"}) {
		t.Errorf("LIST: %q", got)
	}
}

func TestJailResolve(t *testing.T) {
	export, _ := srvJailFixture(t)
	j, err := jailOpen(export)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	for _, tc := range []struct {
		in, want string
		code     string // refusal code, "" for success
	}{
		{"hello.txt", "hello.txt", ""},
		{"in", "hello.txt", ""},
		{"sub/up", "hello.txt", ""},
		{"indir/up", "hello.txt", ""},
		{"indir/inner.txt", "sub/inner.txt", ""},
		{"indir/new.txt", "sub/new.txt", ""},
		{"new.txt", "new.txt", ""},
		{"nodir/new.txt", "", peerproto.CodeNotFound},
		{"out", "", peerproto.CodeDenied},
		{"abs", "", peerproto.CodeDenied},
		{"outdir/x", "", peerproto.CodeDenied},
		{"loop", "", peerproto.CodeInvalid},
	} {
		got, err := j.resolve(tc.in)
		code := ""
		if err != nil {
			code, _, _ = jailMapError(tc.in, err)
		}
		if got != tc.want || code != tc.code {
			t.Errorf("resolve(%q) = %q, %v (code %q); want %q, code %q", tc.in, got, err, code, tc.want, tc.code)
		}
	}
}

func TestJailClean(t *testing.T) {
	for _, tc := range []struct{ in, want, code string }{
		{"", "", ""},
		{".", "", ""},
		{"a//b/./c/", "a/b/c", ""},
		{"..", "", peerproto.CodeDenied},
		{"a/../b", "", peerproto.CodeDenied},
		{"/a", "", peerproto.CodeDenied},
		{"a\x00", "", peerproto.CodeInvalid},
		{"x/" + jailTempPrefix + "1/y", "", peerproto.CodeInvalid},
		{"x" + jailTempPrefix, "x" + jailTempPrefix, ""},
	} {
		got, err := (&jail{}).clean(tc.in)
		code := ""
		if err != nil {
			code, _, _ = jailMapError(tc.in, err)
		}
		if got != tc.want || code != tc.code {
			t.Errorf("clean(%q) = %q, code %q; want %q, code %q", tc.in, got, code, tc.want, tc.code)
		}
	}
}
