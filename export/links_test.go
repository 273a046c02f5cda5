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

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// TestServerSymlink: SYMLINK stores any target as it is, READLINK gives
// it back, and both refuse what they must; a dangling link is listed.
func TestServerSymlink(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "d/f.txt", "f")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	odd := "h\xe9 %\n/../" + strings.Repeat("x", 200)
	for _, tc := range []struct{ req, want string }{
		{"SYMLINK d/rel ../d/f.txt", "SYMLINK OK"},
		{"SYMLINK dangling nowhere/at/all", "SYMLINK OK"},
		{"SYMLINK odd " + peerproto.EncodeName(odd), "SYMLINK OK"},
		{"SYMLINK d/f.txt x", `SYMLINK FAIL exists "d/f.txt" already exists`},
		{"SYMLINK nodir/l x", `SYMLINK FAIL notfound no such file or directory "nodir/l"`},
		{"SYMLINK d/f.txt/l x", `SYMLINK FAIL notdir "d/f.txt/l" (or one of its parents) is not a directory`},
		{"SYMLINK . x", `SYMLINK FAIL exists the export root already exists`},
		{"SYMLINK ../l x", `SYMLINK FAIL denied path escapes the export: "../l"`},
		{"SYMLINK .peerfs-id x", `SYMLINK FAIL invalid name ".peerfs-id" is reserved (.peerfs-tmp-*, .peerfs-id)`},
		{"SYMLINK l a%00b", `SYMLINK FAIL invalid NUL byte in target`},
		{"SYMLINK l " + strings.Repeat("t", peerproto.MaxTarget+1), "SYMLINK FAIL invalid target of 4096 bytes (want 1-4095)"},
		{"READLINK d/rel", "READLINK OK ../d/f.txt"},
		{"READLINK dangling", "READLINK OK nowhere/at/all"},
		{"READLINK odd", "READLINK OK " + peerproto.EncodeName(odd)},
		{"READLINK d", `READLINK FAIL invalid "d" is not a symbolic link`},
		{"READLINK .", `READLINK FAIL invalid "." is not a symbolic link`},
		{"READLINK nope", `READLINK FAIL notfound no such file or directory "nope"`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%.60s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "odd")); err != nil || target != odd {
		t.Errorf("odd on disk: %q, %v", target, err)
	}
	es := c.list("")
	if got, want := entryNames(es), []string{"d", "dangling", "odd"}; !slices.Equal(got, want) {
		t.Errorf("LIST: %q, want %q", got, want)
	}
	if e := entryNamed(t, es, "dangling"); e.Type != peerproto.TypeSymlink || e.Target != "nowhere/at/all" || e.Mode != 0o777 || e.Ver != "" {
		t.Errorf("dangling: %+v", e)
	}
	// DELETE takes the link, RENAME moves it, neither touches its target.
	for _, tc := range []struct{ req, want string }{
		{"RENAME d/rel d/moved", "RENAME OK"},
		{"DELETE dangling", "DELETE OK"},
		{"DELETE d/moved", "DELETE OK"},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.req, got, tc.want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "d/f.txt")); string(b) != "f" || err != nil {
		t.Errorf("d/f.txt: %q, %v", b, err)
	}
	if got := entryNames(c.list("d")); !slices.Equal(got, []string{"f.txt"}) {
		t.Errorf("LIST d: %q", got)
	}
}

// TestServerHardLink: LINK makes a second name of one inode: both show it
// with nlink 2, a write through one shows through the other, and
// removing one keeps the other.
func TestServerHardLink(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.txt", "first")
	writeFile(t, dir, "d/x", "")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"LINK a.txt d/b.txt", "LINK OK"},
		{"LINK a.txt d/b.txt", `LINK FAIL exists "d/b.txt" already exists`},
		{"LINK nope x", `LINK FAIL notfound no such file or directory "nope"`},
		{"LINK a.txt nodir/x", `LINK FAIL notfound no such file or directory "nodir/x"`},
		{"LINK d d2", `LINK FAIL denied permission denied on "d2"`},
		{"LINK . x", "LINK FAIL denied cannot link the export root"},
		{"LINK a.txt ../x", `LINK FAIL denied path escapes the export: "../x"`},
		{"LINK .peerfs-id x", `LINK FAIL invalid name ".peerfs-id" is reserved (.peerfs-tmp-*, .peerfs-id)`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	a, b := c.stat("a.txt"), c.stat("d/b.txt")
	if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 || a.Ver != b.Ver || a.Ver == "" {
		t.Fatalf("a.txt %+v and d/b.txt %+v: want one inode, two links, one version", a, b)
	}
	// A PUT through one name changes the file every name shows, in place.
	if r := c.put("d/b.txt", []byte("second!")); !strings.HasPrefix(r, "PUT DONE 7 ") {
		t.Fatalf("PUT d/b.txt: %q", r)
	}
	if got := string(c.get("a.txt")); got != "second!" {
		t.Errorf("a.txt after a PUT to d/b.txt: %q", got)
	}
	a2, b2 := c.stat("a.txt"), c.stat("d/b.txt")
	if a2.Ino != a.Ino || b2.Ino != a.Ino || a2.Nlink != 2 || a2.Ver == a.Ver || a2.Ver != b2.Ver {
		t.Errorf("after PUT: a.txt %+v, d/b.txt %+v; want the same inode, a new version", a2, b2)
	}
	// A conditional PUT on the old version is refused, on the new one taken.
	c.send(fmt.Sprintf("PUT a.txt 1 inline ver=%s\nX", a.Ver))
	c.expectPrefix("PUT FAIL conflict ")
	c.send(fmt.Sprintf("PUT a.txt 1 inline ver=%s\nY", a2.Ver))
	c.expectPrefix("PUT DONE 1 ")
	if got := string(c.get("d/b.txt")); got != "Y" {
		t.Errorf("d/b.txt after a conditional PUT to a.txt: %q", got)
	}
	if r := c.roundTrip("DELETE a.txt"); r != "DELETE OK" {
		t.Fatal(r)
	}
	if e := c.stat("d/b.txt"); e.Nlink != 1 || e.Ino != a.Ino || e.Size != 1 {
		t.Errorf("d/b.txt after DELETE a.txt: %+v", e)
	}
	// With one link left, a PUT replaces the file as ever.
	if r := c.put("d/b.txt", []byte("third")); !strings.HasPrefix(r, "PUT DONE 5 ") {
		t.Fatalf("PUT d/b.txt: %q", r)
	}
	if got := string(c.get("d/b.txt")); got != "third" {
		t.Errorf("d/b.txt: %q", got)
	}
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

// TestServerMknod: FIFOs and sockets are always made, devices only with
// AllowDevices (and the privilege); each arrives with its exact mode and
// is listed with its kind.
func TestServerMknod(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllowDevices=%v", allow), func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "f.txt", "x")
			_, addr := testServe(t, Options{Export: dir, AllowDevices: allow})
			c := testConnect(t, addr)
			c.send("FEATURES posix\n")
			if got := c.line(); strings.Contains(got, " devices") != allow {
				t.Errorf("FEATURES: %q", got)
			}
			for _, tc := range []struct{ req, want string }{
				{"MKNOD fifo p 0664", "MKNOD OK"},
				{"MKNOD sock s 0755", "MKNOD OK"},
				{"MKNOD sticky p 01666", "MKNOD OK"},
				{"MKNOD suid p 04644", "MKNOD OK"},
				{"MKNOD fifo p 0644", `MKNOD FAIL exists "fifo" already exists`},
				{"MKNOD f.txt/x p 0644", `MKNOD FAIL notdir "f.txt/x" (or one of its parents) is not a directory`},
				{"MKNOD x q 0644", `MKNOD FAIL invalid usage: MKNOD <name> p|s <mode> | MKNOD <name> c|b <mode> <major> <minor>`},
			} {
				if got := c.roundTrip(tc.req); got != tc.want {
					t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
				}
			}
			for name, want := range map[string]os.FileMode{
				"fifo":   os.ModeNamedPipe | 0o664,
				"sock":   os.ModeSocket | 0o755,
				"sticky": os.ModeNamedPipe | os.ModeSticky | 0o666,
				"suid":   os.ModeNamedPipe | 0o644,
			} {
				if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || fi.Mode() != want {
					t.Errorf("%s: %v (%v), want %v", name, fi.Mode(), err, want)
				}
			}
			dev := c.roundTrip("MKNOD null c 0666 1 3")
			switch {
			case !allow:
				if want := `MKNOD FAIL denied this peer does not create device nodes (it runs without --allow-devices): "null"`; dev != want {
					t.Errorf("MKNOD null: %q, want %q", dev, want)
				}
				if _, err := os.Lstat(filepath.Join(dir, "null")); err == nil {
					t.Error("a device was made without AllowDevices")
				}
			case os.Geteuid() != 0:
				if !strings.HasPrefix(dev, "MKNOD FAIL denied ") {
					t.Errorf("MKNOD null, not root: %q", dev)
				}
			default:
				if dev != "MKNOD OK" {
					t.Fatalf("MKNOD null: %q", dev)
				}
				if r := c.roundTrip("MKNOD disk b 0600 7 200"); r != "MKNOD OK" {
					t.Fatalf("MKNOD disk: %q", r)
				}
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(dir, "null"), &st); err != nil || st.Mode != unix.S_IFCHR|0o666 || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
					t.Errorf("null: mode %o rdev %d,%d (%v)", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), err)
				}
				if e := c.stat("disk"); e.Type != peerproto.TypeBlockDevice || e.Has&peerproto.AttrRdev == 0 || e.RdevMajor != 7 || e.RdevMinor != 200 || e.Mode != 0o600 {
					t.Errorf("STAT disk: %+v", e)
				}
				// Nothing opens a device for a client.
				for _, req := range []string{"GET null", "SETATTR null size=0"} {
					if r := c.roundTrip(req); !strings.Contains(r, " FAIL invalid ") {
						t.Errorf("%s: %q", req, r)
					}
				}
			}
			es := c.list("")
			for name, typ := range map[string]byte{"fifo": peerproto.TypeFIFO, "sock": peerproto.TypeSocket, "f.txt": peerproto.TypeFile} {
				if e := entryNamed(t, es, name); e.Type != typ {
					t.Errorf("LIST %s: type %c, want %c", name, e.Type, typ)
				}
			}
			for _, tc := range []struct{ req, want string }{
				{"GET fifo", `GET FAIL invalid "fifo" is not a regular file`},
				{"GET sock", `GET FAIL invalid "sock" is not a regular file`},
				{"PUT fifo 1", `PUT FAIL invalid "fifo" exists and is not a regular file`},
				{"LIST fifo", `LIST FAIL notdir "fifo" (or one of its parents) is not a directory`},
				{"SETATTR fifo mode=0600", "SETATTR OK p 0600 0 "},
				{"DELETE fifo", "DELETE OK"},
				{"DELETE sock", "DELETE OK"},
			} {
				if got := c.roundTrip(tc.req); got != tc.want && !(strings.HasSuffix(tc.want, " ") && strings.HasPrefix(got, tc.want)) {
					t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
				}
			}
			if _, err := os.Lstat(filepath.Join(dir, "sock")); err == nil {
				t.Error("sock is still there")
			}
		})
	}
}

// TestServerLinksReadOnly: the new requests that write are refused on a
// read-only export, READLINK is served.
func TestServerLinksReadOnly(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "x")
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir, ReadOnly: true, AllowDevices: true, Owners: true})
	c := testConnectPosix(t, addr)
	for _, req := range []string{"SYMLINK x f", "LINK f g", "MKNOD p p 0644", "MKNOD n c 0644 1 3", "SETATTR l uid=0"} {
		verb := strings.Fields(req)[0]
		if got, want := c.roundTrip(req), verb+" FAIL readonly export is read-only"; got != want {
			t.Errorf("%s: %q, want %q", req, got, want)
		}
	}
	if got := c.roundTrip("READLINK l"); got != "READLINK OK f" {
		t.Errorf("READLINK l: %q", got)
	}
}

// TestServerPosixList: on a posix connection LIST and STAT show every
// kind of entry, as lstat does, with all the attribute words; a plain
// connection on the same export sees what it always saw.
func TestServerPosixList(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f.txt", "hello")
	writeFile(t, dir, "d/sub1/x", "")
	writeFile(t, dir, "d/sub2/x", "")
	writeFile(t, dir, "d/file", "")
	if err := os.Link(filepath.Join(dir, "f.txt"), filepath.Join(dir, "d/hard")); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"dangling": "nowhere", "tofile": "f.txt", "todir": "d"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	atime, mtime := int64(1600000000111111111), int64(1700000000222222222)
	if err := unix.UtimesNano(filepath.Join(dir, "f.txt"), []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	writeFile(t, dir, ".peerfs-tmp-inflight", "zzz") // an upload in flight stays hidden

	es := c.list("")
	if got, want := entryNames(es), []string{"d", "dangling", "f.txt", "fifo", "todir", "tofile"}; !slices.Equal(got, want) {
		t.Fatalf("LIST: %q, want %q", got, want)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "f.txt"), &st); err != nil {
		t.Fatal(err)
	}
	all := peerproto.AttrIno | peerproto.AttrNlink | peerproto.AttrUid | peerproto.AttrGid | peerproto.AttrAtime | peerproto.AttrCtime | peerproto.AttrBlocks
	f := entryNamed(t, es, "f.txt")
	if f.Type != peerproto.TypeFile || f.Has != all || f.Ino != st.Ino || f.Nlink != 2 || f.Uid != st.Uid || f.Gid != st.Gid ||
		f.Atime != atime || f.Mtime != mtime || f.Ctime != st.Ctim.Nano() || f.Blocks != st.Blocks || f.Size != 5 || f.Ver == "" {
		t.Errorf("f.txt: %+v, want the attributes of %+v", f, st)
	}
	d := entryNamed(t, es, "d")
	if d.Type != peerproto.TypeDir || d.Nlink != 4 || d.Ver != "" || d.Has != all {
		t.Errorf("d: %+v, want a directory with nlink 2 + 2 subdirectories", d)
	}
	for name, want := range map[string]peerproto.Entry{
		"dangling": {Type: peerproto.TypeSymlink, Target: "nowhere", Size: 7},
		"tofile":   {Type: peerproto.TypeSymlink, Target: "f.txt", Size: 5},
		"todir":    {Type: peerproto.TypeSymlink, Target: "d", Size: 1},
		"fifo":     {Type: peerproto.TypeFIFO},
	} {
		e := entryNamed(t, es, name)
		hasLink := e.Has&peerproto.AttrLink != 0
		if e.Type != want.Type || e.Target != want.Target || e.Size != want.Size || hasLink != (want.Target != "") || e.Ver != "" || e.Has&all != all {
			t.Errorf("%s: %+v, want %+v", name, e, want)
		}
	}
	if e := entryNamed(t, es, "fifo"); e.Mode != 0o640 {
		t.Errorf("fifo: mode %o", e.Mode)
	}
	if h := entryNamed(t, c.list("d"), "hard"); h.Ino != f.Ino || h.Nlink != 2 || h.Ver != f.Ver {
		t.Errorf("d/hard: %+v, want f.txt's inode and version", h)
	}
	// STAT says the same as LIST, and is lstat.
	for _, name := range []string{"f.txt", "dangling", "todir", "fifo", "d"} {
		e := c.stat(name)
		e.Name = name
		want := entryNamed(t, es, name)
		e.Atime, want.Atime = 0, 0 // reading a link's target moves its atime
		if e != want {
			t.Errorf("STAT %s: %+v, want %+v", name, e, want)
		}
	}
	if e := c.stat(""); e.Type != peerproto.TypeDir || e.Has != all {
		t.Errorf("STAT .: %+v", e)
	}

	// A plain connection: files and directories, links followed, the rest
	// left out, no attribute words but ver.
	p := testConnect(t, addr)
	p.send("FEATURES attrs\n")
	p.expectPrefix("FEATURES OK ")
	pes := p.list("")
	if got, want := entryNames(pes), []string{"d", "f.txt", "todir", "tofile"}; !slices.Equal(got, want) {
		t.Errorf("plain LIST: %q, want %q", got, want)
	}
	for _, e := range pes {
		if e.Has != 0 || e.Target != "" || !e.IsDir() && !e.IsRegular() {
			t.Errorf("plain LIST %s: %+v", e.Name, e)
		}
	}
	if got := p.roundTrip("STAT dangling"); got != `STAT FAIL notfound no such file or directory "dangling"` {
		t.Errorf("plain STAT dangling: %q", got)
	}
}

// TestLinkKeepsDerivedVersion: a LINK changes a file's ctime only, so its
// version token holds, also where it is derived from the file's
// attributes (a file the peer's owner put there, without peerfs's
// version attribute), as a RENAME keeps it: a client that knew the token
// before replaces the file on it after (its open copy's upload is no
// conflict with itself).
func TestLinkKeepsDerivedVersion(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "planted.txt", "put there by the peer's owner")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	v := c.stat("planted.txt").Ver
	time.Sleep(10 * time.Millisecond) // a ctime of its own for the link
	if r := c.roundTrip("LINK planted.txt other.txt"); r != "LINK OK" {
		t.Fatal(r)
	}
	if got := c.stat("planted.txt").Ver; got != v {
		t.Errorf("token after LINK: %s, want %s (kept)", got, v)
	}
	c.send(fmt.Sprintf("PUT planted.txt 3 inline ver=%s\nnew", v))
	c.expectPrefix("PUT DONE 3 ")
}
