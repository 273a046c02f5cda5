package export

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
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
		{"GET " + strings.Repeat("a", 256), `GET FAIL nametoolong name too long (limit 16384 bytes, 255 per element)`},
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

// TestServerPosixNoFollow: a posix connection follows no symbolic link,
// in any element, inside the export or out of it: a path through one is
// refused with loop, a link itself is listed, read, replaced, removed
// and has its times changed as a link, and nothing outside changes.
func TestServerPosixNoFollow(t *testing.T) {
	export, outside := testfs.Escapes(t)
	secretInfo, err := os.Stat(filepath.Join(outside, "secret.txt"))
	if err != nil {
		t.Fatal(err)
	}
	outsideInfo, err := os.Stat(outside)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: export, Owners: true})
	c := testConnectPosix(t, addr)

	loop := func(verb, name string) string {
		return fmt.Sprintf("%s FAIL loop %q: a symbolic link in the path, which this connection does not follow", verb, name)
	}
	notFile := func(name string) string {
		return fmt.Sprintf("GET FAIL invalid %q is a symbolic link, not a regular file (read it with READLINK)", name)
	}
	for _, tc := range []struct{ req, want string }{
		// The jail's old refusals stand.
		{"GET ../x", `GET FAIL denied path escapes the export: "../x"`},
		{"GET /etc/passwd", `GET FAIL denied path escapes the export: "/etc/passwd"`},
		{"PUT " + jail.TempPrefix + "x 1", `PUT FAIL invalid name ".peerfs-tmp-x" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		// A link as the last element is not a file to read...
		{"GET out", notFile("out")},
		{"GET in", notFile("in")},
		{"GET loop", notFile("loop")},
		// ...and a link above it is a path through a link, out or in.
		{"GET outdir/secret.txt", loop("GET", "outdir/secret.txt")},
		{"GET absdir/secret.txt", loop("GET", "absdir/secret.txt")},
		{"GET indir/inner.txt", loop("GET", "indir/inner.txt")},
		{"GET loop/x", loop("GET", "loop/x")},
		{"STAT outdir/secret.txt", loop("STAT", "outdir/secret.txt")},
		{"LIST outdir", loop("LIST", "outdir")},
		{"LIST indir", loop("LIST", "indir")},
		{"PUT outdir/new.txt 5", loop("PUT", "outdir/new.txt")},
		{"MKDIR outdir/d", loop("MKDIR", "outdir/d")},
		{"MKNOD outdir/f p 0644", loop("MKNOD", "outdir/f")},
		{"SYMLINK outdir/l x", loop("SYMLINK", "outdir/l")},
		{"DELETE outdir/secret.txt", loop("DELETE", "outdir/secret.txt")},
		{"RMDIR outdir/x", loop("RMDIR", "outdir/x")},
		{"SETATTR outdir/secret.txt mode=0777", loop("SETATTR", "outdir/secret.txt")},
		{"SETATTR absdir/secret.txt mtime=5", loop("SETATTR", "absdir/secret.txt")},
		{"SETATTR outdir/secret.txt uid=1 gid=1", loop("SETATTR", "outdir/secret.txt")},
		{"READLINK outdir/x", loop("READLINK", "outdir/x")},
		{"LINK outdir/secret.txt stolen", loop("LINK", "outdir/secret.txt")},
		{"LINK hello.txt outdir/stolen", loop("LINK", "outdir/stolen")},
		{"RENAME hello.txt outdir/stolen", loop("RENAME", "outdir/stolen")},
		{"RENAME outdir/secret.txt stolen", loop("RENAME", "outdir/secret.txt")},
		// The mode of a link is not a thing on Linux.
		{"SETATTR out mode=0600", `SETATTR FAIL unsupported cannot change the mode of symbolic link "out"`},
		{"SETATTR out size=0", `SETATTR FAIL invalid cannot set the size of "out": not a regular file`},
		{"READLINK hello.txt", `READLINK FAIL invalid "hello.txt" is not a symbolic link`},
		{"READLINK nope", `READLINK FAIL notfound no such file or directory "nope"`},
		// A link's target is data: stored as it is, whatever it names.
		{"SYMLINK sub/x ../../outside", "SYMLINK OK"},
		{"SYMLINK sub/x elsewhere", `SYMLINK FAIL exists "sub/x" already exists`},
		{"GET sub/x/secret.txt", loop("GET", "sub/x/secret.txt")},
		{"READLINK abs", "READLINK OK " + peerproto.EncodeName(filepath.Join(outside, "secret.txt"))},
		{"READLINK sub/x", "READLINK OK ../../outside"},
		// Times and owners of a link are the link's.
		{"SETATTR absdir mtime=5000000000 atime=6000000000", "SETATTR OK l 0777 "},
		{"SETATTR out uid=0 gid=0", "SETATTR OK l 0777 "},
		// A hard link to a link is a link.
		{"LINK out hardout", "LINK OK"},
		{"DELETE abs", "DELETE OK"},
	} {
		got := c.roundTrip(tc.req)
		if got != tc.want && !(strings.HasSuffix(tc.want, " ") && strings.HasPrefix(got, tc.want)) {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}

	// The links are listed as links, with their targets; a loop too.
	es := c.list("")
	if got, want := entryNames(es), []string{"absdir", "hardout", "hello.txt", "in", "indir", "loop", "out", "outdir", "sub"}; !slices.Equal(got, want) {
		t.Errorf("LIST: %q, want %q", got, want)
	}
	for name, target := range map[string]string{"out": "../outside/secret.txt", "hardout": "../outside/secret.txt", "loop": "loop", "absdir": outside, "indir": "sub"} {
		e := entryNamed(t, es, name)
		if e.Type != peerproto.TypeSymlink || e.Has&peerproto.AttrLink == 0 || e.Target != target || e.Size != int64(len(target)) {
			t.Errorf("%s: %+v, want a link to %q", name, e, target)
		}
	}
	if out, hard := entryNamed(t, es, "out"), entryNamed(t, es, "hardout"); out.Ino != hard.Ino || out.Nlink != 2 {
		t.Errorf("out and hardout: ino %d/%d nlink %d, want one inode with two links", out.Ino, hard.Ino, out.Nlink)
	}
	// (Reading a link's target sets its atime, as it does locally: the
	// mtime tells.)
	if e := entryNamed(t, es, "absdir"); e.Mtime != 5000000000 {
		t.Errorf("absdir: mtime %d, want the link's own set", e.Mtime)
	}
	reply, err := peerproto.ParseReply([]byte(c.roundTrip("SETATTR in mtime=7000000000 atime=8000000000")), peerproto.VerbSetattr)
	if e, ok := reply.(peerproto.SetattrOK); err != nil || !ok || e.Entry.Mtime != 7000000000 || e.Entry.Atime != 8000000000 || e.Entry.Target != "hello.txt" {
		t.Errorf("SETATTR in: %+v, %v", reply, err)
	}
	if fi, err := os.Stat(filepath.Join(export, "hello.txt")); err != nil || fi.ModTime().UnixNano() == 7000000000 {
		t.Errorf("SETATTR of link in changed hello.txt: %v", err)
	}
	if e := c.stat("sub/x"); e.Type != peerproto.TypeSymlink || e.Target != "../../outside" {
		t.Errorf("STAT sub/x: %+v", e)
	}

	// PUT to a link replaces the link, and writes nothing through it.
	if r := c.put("out", []byte("mine")); !strings.HasPrefix(r, "PUT DONE 4 ") {
		t.Fatalf("PUT out: %q", r)
	}
	if fi, err := os.Lstat(filepath.Join(export, "out")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("out after PUT: %v, %v; want a regular file 0644", fi.Mode(), err)
	}

	// Nothing outside changed, nothing appeared.
	if b, err := os.ReadFile(filepath.Join(outside, "secret.txt")); string(b) != "secret" || err != nil {
		t.Errorf("secret.txt: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(outside, "secret.txt")); err != nil || fi.Mode() != secretInfo.Mode() || !fi.ModTime().Equal(secretInfo.ModTime()) ||
		fi.Sys().(*syscall.Stat_t).Uid != secretInfo.Sys().(*syscall.Stat_t).Uid {
		t.Errorf("secret.txt changed: %v", err)
	}
	if fi, err := os.Stat(outside); err != nil || !fi.ModTime().Equal(outsideInfo.ModTime()) {
		t.Errorf("outside's times changed: %v", err)
	}
	if es, _ := os.ReadDir(outside); len(es) != 1 {
		t.Errorf("outside has %d entries, want just the secret", len(es))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(export), "stolen")); err == nil {
		t.Error("a file was renamed out of the export")
	}
}

// TestServerGetOpensNoSpecialFile: a GET of a special file planted in the
// export is refused without the file being opened for I/O, on a plain
// connection too (which follows links inside the export): opening a
// device has effects of its own (a tape rewinds, a FIFO's writer sees a
// reader). inotify's IN_OPEN, which an O_PATH open does not raise, tells.
func TestServerGetOpensNoSpecialFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	if err := os.Symlink("fifo", filepath.Join(dir, "to-fifo")); err != nil {
		t.Fatal(err)
	}
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skip("inotify:", err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, fifo, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir, IOTimeout: 2 * time.Second})
	c := testConnect(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"GET fifo", `GET FAIL invalid "fifo" is not a regular file`},
		{"GET to-fifo", `GET FAIL invalid "to-fifo" is not a regular file`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	buf := make([]byte, 4096)
	if n, err := unix.Read(in, buf); n > 0 {
		t.Errorf("the FIFO was opened (%d bytes of inotify events) by a GET that refused it", n)
	} else if err != unix.EAGAIN {
		t.Fatalf("reading inotify: %v", err)
	}
}
