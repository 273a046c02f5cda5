package export

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

func TestServerNamespaceOps(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.txt", "aaa")
	writeFile(t, dir, "b.txt", "bbbbbb")
	writeFile(t, dir, "full/x.txt", "x")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	mtime := time.Unix(1600000000, 5).UnixNano()
	for _, tc := range []struct{ req, want string }{
		// RENAME replaces an existing target atomically.
		{"RENAME a.txt b.txt", "RENAME OK"},
		{"RENAME a.txt c.txt", `RENAME FAIL notfound cannot rename "a.txt" to "c.txt": no such file or directory`},
		{"RENAME b.txt nodir/c.txt", `RENAME FAIL notfound cannot rename "b.txt" to "nodir/c.txt": no such file or directory`},
		{"RENAME . x", `RENAME FAIL denied cannot rename the export root`},
		{"RENAME b.txt", `RENAME FAIL invalid usage: RENAME <from> <to>`},
		// MKDIR
		{"MKDIR d", "MKDIR OK"},
		{"MKDIR d", `MKDIR FAIL exists "d" already exists`},
		{"MKDIR private 0700", "MKDIR OK"},
		{"MKDIR nodir/d", `MKDIR FAIL notfound no such file or directory "nodir/d"`},
		{"MKDIR . ", `MKDIR FAIL exists the export root already exists`},
		{"MKDIR e 9999", `MKDIR FAIL invalid mode "9999" is not an octal permission (0000-7777)`},
		// RENAME refuses as rename(2) does.
		{"RENAME d full", `RENAME FAIL notempty cannot rename "d" to "full": directory not empty`},
		{"RENAME b.txt d", `RENAME FAIL isdir cannot rename "b.txt" to "d": is a directory`},
		{"RENAME d b.txt", `RENAME FAIL notdir cannot rename "d" to "b.txt": not a directory`},
		{"RENAME d d/sub", `RENAME FAIL invalid cannot rename "d" to "d/sub": invalid argument`},
		// RMDIR
		{"RMDIR full", `RMDIR FAIL notempty directory "full" is not empty`},
		{"RMDIR b.txt", `RMDIR FAIL notdir "b.txt" is not a directory (use DELETE)`},
		{"RMDIR nope", `RMDIR FAIL notfound no such file or directory "nope"`},
		{"RMDIR .", `RMDIR FAIL denied cannot remove the export root`},
		{"RMDIR d", "RMDIR OK"},
		// DELETE
		{"DELETE full", `DELETE FAIL isdir "full" is a directory (use RMDIR)`},
		{"DELETE nope", `DELETE FAIL notfound no such file or directory "nope"`},
		{"DELETE full/x.txt", "DELETE OK"},
		{"RMDIR full", "RMDIR OK"},
		// SETATTR
		{fmt.Sprintf("SETATTR b.txt size=2 mode=0600 mtime=%d", mtime), fmt.Sprintf("SETATTR OK f 0600 2 %d", mtime)},
		{"SETATTR b.txt size=10", "SETATTR OK f 0600 10 "}, // a want ending in a space is a prefix
		{"SETATTR private size=1", `SETATTR FAIL isdir cannot set the size of directory "private"`},
		{"SETATTR nope mode=0644", `SETATTR FAIL notfound no such file or directory "nope"`},
		{"SETATTR b.txt colour=red", `SETATTR FAIL invalid unknown attribute "colour" (want size, mode, mtime, atime, uid or gid)`},
		{"STAT gone", `STAT FAIL notfound no such file or directory "gone"`},
		{"STATFS x", `STATFS FAIL invalid usage: STATFS`},
	} {
		got := c.roundTrip(tc.req)
		if got != tc.want && !(strings.HasSuffix(tc.want, " ") && strings.HasPrefix(got, tc.want)) {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b.txt")); string(b) != "aa\x00\x00\x00\x00\x00\x00\x00\x00" {
		t.Errorf("b.txt = %q, want a.txt's content truncated to 2, extended to 10", b)
	}
	for name, want := range map[string]os.FileMode{"private": 0o700 | os.ModeDir, "b.txt": 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}
	for _, name := range []string{"a.txt", "d", "full"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s still exists: %v", name, err)
		}
	}

	reply, err := peerproto.ParseReply([]byte(c.roundTrip("STATFS")), peerproto.VerbStatfs)
	if err != nil {
		t.Fatal(err)
	}
	sf := reply.(peerproto.StatfsOK)
	if sf.Total <= 0 || sf.Free > sf.Total || sf.Avail > sf.Free {
		t.Errorf("STATFS %+v: want total >= free >= avail, total > 0", sf)
	}
}

func TestServerReadOnly(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f.txt", "content")
	writeFile(t, dir, "d/g.txt", "g")
	_, addr := testServe(t, Options{Export: dir, ReadOnly: true})
	c := testConnect(t, addr)
	for _, req := range []string{
		"PUT new.txt 1", "PUT f.txt 1", "DELETE f.txt", "RENAME f.txt g.txt", "MKDIR m",
		"RMDIR d", "SETATTR f.txt mode=0777", "SETATTR f.txt size=0",
	} {
		verb, _, _ := strings.Cut(req, " ")
		if got, want := c.roundTrip(req), verb+" FAIL readonly export is read-only"; got != want {
			t.Errorf("%s: %q, want %q", req, got, want)
		}
	}
	if got := string(c.get("f.txt")); got != "content" {
		t.Errorf("GET on a read-only export: %q", got)
	}
	if got := entryNames(c.list("")); len(got) != 2 {
		t.Errorf("LIST: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f.txt")); string(b) != "content" {
		t.Errorf("f.txt changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.txt")); !os.IsNotExist(err) {
		t.Errorf("new.txt: %v", err)
	}
}

// TestServerFsyncFiles: FSYNC with names syncs those files; a name gone
// since (renamed, removed) falls back to the whole filesystem; a name
// outside the export is refused.
func TestServerFsyncFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a", "a")
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "d/b c", "b")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	c.send("FSYNC a d/b%20c\n")
	c.expectPrefix("FSYNC OK")
	c.send("FSYNC gone\n")
	c.expectPrefix("FSYNC OK")
	c.send("FSYNC ../x\n")
	c.expectPrefix("FSYNC FAIL denied")
	c.send("FSYNC\n")
	c.expectPrefix("FSYNC OK")

	cl, err := peer.Dial(context.Background(), addr, peer.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.FsyncFiles(context.Background(), []string{"a", "d/b c"}); err != nil {
		t.Fatal(err)
	}
}

// TestServerFsyncUnopenable: FSYNC naming something the server cannot
// open (a socket here; a write-only file for a non-root peer) still
// succeeds, by syncing the whole filesystem, as the plain FSYNC would.
func TestServerFsyncUnopenable(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if os.Getuid() != 0 {
		if err := os.WriteFile(filepath.Join(dir, "w"), []byte("x"), 0o200); err != nil {
			t.Fatal(err)
		}
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	c.send("FSYNC sock\n")
	c.expect("FSYNC OK")
	if os.Getuid() != 0 {
		c.send("FSYNC w\n")
		c.expect("FSYNC OK")
	}
}

// TestServerFsyncOddNames: FSYNC naming a symbolic link (a PUT through it
// stored the file in the target's directory) or a FIFO falls back to
// syncing everything and succeeds.
func TestServerFsyncOddNames(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "real/f", "x")
	if err := os.Symlink("real/f", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	c.send("FSYNC alias\n")
	c.expect("FSYNC OK")
	c.send("FSYNC fifo\n")
	c.expect("FSYNC OK")
}

// TestServerSetattrUnreadable: SETATTR works on a file the server cannot
// open (mode 0), so a mode taken away can be given back.
func TestServerSetattrUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root opens anything")
	}
	dir := t.TempDir()
	writeFile(t, dir, "f.txt", "data")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	if got := c.roundTrip("SETATTR f.txt mode=0"); !strings.HasPrefix(got, "SETATTR OK f 00 4 ") {
		t.Fatal(got)
	}
	if got := c.roundTrip("SETATTR f.txt mode=0640 mtime=1000000000"); got != "SETATTR OK f 0640 4 1000000000" {
		t.Fatal(got)
	}
	if got := string(c.get("f.txt")); got != "data" {
		t.Fatalf("GET: %q", got)
	}
}

// TestServerSetattrThroughLink: SETATTR on a link inside the export
// changes its target, once, through one descriptor; the link stays.
func TestServerSetattrThroughLink(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f.txt", "0123456789")
	if err := os.Symlink("f.txt", filepath.Join(dir, "ln")); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	if got := c.roundTrip("SETATTR ln size=3 mode=0600 mtime=2000000000"); got != "SETATTR OK f 0600 3 2000000000" {
		t.Fatal(got)
	}
	fi, err := os.Stat(filepath.Join(dir, "f.txt"))
	if err != nil || fi.Size() != 3 || fi.Mode().Perm() != 0o600 || fi.ModTime().UnixNano() != 2000000000 {
		t.Fatalf("f.txt: %v, %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "ln")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("ln: %v, %v", fi, err)
	}
	if got := c.roundTrip("SETATTR d size=0"); got != `SETATTR FAIL notfound no such file or directory "d"` {
		t.Fatal(got)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := c.roundTrip("SETATTR d size=0"); got != `SETATTR FAIL isdir cannot set the size of directory "d"` {
		t.Fatal(got)
	}
	if got := c.roundTrip("SETATTR d mode=0700"); !strings.HasPrefix(got, "SETATTR OK d 0700 ") {
		t.Fatal(got)
	}
	if got := c.roundTrip("SETATTR . mtime=3000000000"); !strings.HasPrefix(got, "SETATTR OK d ") || !strings.HasSuffix(got, " 3000000000") {
		t.Fatal(got)
	}
}

// TestServerDeleteKinds: DELETE removes files and links (not what they
// name) and refuses directories, special files and escaping links.
func TestServerDeleteKinds(t *testing.T) {
	export, outside := testfs.Escapes(t)
	_, addr := testServe(t, Options{Export: export})
	c := testConnect(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"DELETE sub", `DELETE FAIL isdir "sub" is a directory (use RMDIR)`},
		{"DELETE indir", `DELETE FAIL isdir "indir" is a directory (use RMDIR)`},
		{"DELETE .", `DELETE FAIL isdir "." is a directory (use RMDIR)`},
		{"DELETE nothere", `DELETE FAIL notfound no such file or directory "nothere"`},
		{"DELETE nodir/x", `DELETE FAIL notfound no such file or directory "nodir/x"`},
		{"DELETE hello.txt/x", `DELETE FAIL notdir "hello.txt/x" (or one of its parents) is not a directory`},
		{"DELETE outdir/secret.txt", `DELETE FAIL denied path escapes the export: "outdir/secret.txt" leads outside through a symbolic link`},
		{"DELETE sub/sneaky", `DELETE FAIL denied path escapes the export: "sub/sneaky" leads outside through a symbolic link`},
		{"DELETE in", "DELETE OK"},
		{"DELETE indir/inner.txt", "DELETE OK"},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(export, "hello.txt")); err != nil {
		t.Errorf("the link's target went with it: %v", err)
	}
	if _, err := os.Stat(filepath.Join(export, "sub/inner.txt")); !os.IsNotExist(err) {
		t.Errorf("sub/inner.txt: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret.txt")); err != nil {
		t.Errorf("outside: %v", err)
	}
}

// TestServerMkdirExactMode: MKDIR's mode arrives as asked, whatever the
// peer's umask, on both kinds of connection; setuid and setgid are still
// dropped (without AllowSetuid), a setgid parent's bit still inherited.
func TestServerMkdirExactMode(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "sg"), 0o775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	for _, posix := range []bool{false, true} {
		c := testConnect(t, addr)
		if posix {
			c.send("FEATURES posix\n")
			c.expectPrefix("FEATURES OK ")
		}
		for _, tc := range []struct {
			name, mode string
			want       os.FileMode
		}{
			{"a", "0777", 0o777},
			{"b", "", 0o755},
			{"c", "0750", 0o750},
			{"d", "01777", 0o777 | os.ModeSticky},
			{"e", "06777", 0o777},
			{"sg/f", "0700", 0o700 | os.ModeSetgid},
			{"sg/g", "02711", 0o711 | os.ModeSetgid},
		} {
			p := fmt.Sprintf("%s-%v", tc.name, posix)
			req := strings.TrimSpace("MKDIR " + p + " " + tc.mode)
			if got := c.roundTrip(req); got != "MKDIR OK" {
				t.Fatalf("%s: %q", req, got)
			}
			if fi, err := os.Lstat(filepath.Join(dir, p)); err != nil || fi.Mode() != tc.want|os.ModeDir {
				t.Errorf("%s: mode %v (%v), want %v", req, fi.Mode(), err, tc.want|os.ModeDir)
			}
		}
	}
}

// TestServerPosixDelete: on a posix connection DELETE removes anything
// but a directory, a link as itself; RMDIR a directory only.
func TestServerPosixDelete(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "d/f", "f")
	if err := os.Symlink("d", filepath.Join(dir, "todir")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"DELETE d", `DELETE FAIL isdir "d" is a directory (use RMDIR)`},
		{"DELETE .", `DELETE FAIL isdir the export root is a directory (use RMDIR)`},
		{"DELETE nope", `DELETE FAIL notfound no such file or directory "nope"`},
		{"RMDIR todir", `RMDIR FAIL notdir "todir" is not a directory (use DELETE)`},
		{"RMDIR fifo", `RMDIR FAIL notdir "fifo" is not a directory (use DELETE)`},
		{"RMDIR d", `RMDIR FAIL notempty directory "d" is not empty`},
		{"DELETE todir", "DELETE OK"},
		{"DELETE fifo", "DELETE OK"},
		{"DELETE d/f", "DELETE OK"},
		{"RMDIR d", "RMDIR OK"},
		{"RMDIR d", `RMDIR FAIL notfound no such file or directory "d"`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("left: %v", es)
	}
}
