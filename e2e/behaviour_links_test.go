package e2e

// Behaviours of symbolic and hard links (issue #12, items 1 and 2), and
// of links and special files planted in an export behind the mount's back.

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func symlink(t testing.TB, target, path string) {
	t.Helper()
	okDo(t, again(func() error { return unix.Symlink(target, path) }), "symlink "+short(target)+" "+path)
}

func link(t testing.TB, from, to string) {
	t.Helper()
	okDo(t, again(func() error { return unix.Link(from, to) }), "link "+from+" "+to)
}

// isLink checks that path is a symbolic link to target.
func isLink(t testing.TB, path, target string) {
	t.Helper()
	st := lstatOf(t, path)
	if kindOf(st) != "l" {
		t.Fatalf("%s: type %s, want a symbolic link", path, kindOf(st))
	}
	if got := readlinkOf(t, path); got != target {
		t.Errorf("readlink %s = %q, want %q", path, short(got), short(target))
	}
	if st.Size != int64(len(target)) {
		t.Errorf("%s: size %d, want %d (the target's length)", path, st.Size, len(target))
	}
}

// short elides the middle of a long string in a message.
func short(s string) string {
	if len(s) <= 60 {
		return s
	}
	return s[:20] + "..." + s[len(s)-20:]
}

// settle waits until dir lists name, a regular file planted on disk
// beside what a planted behaviour is about. A local directory lists it at
// once; a peer folder within its attribute timeout (changes made on a
// peer's disk behind the mounts' backs are seen after at most
// --attr-timeout, docs/CONSISTENCY.md).
func settle(t testing.TB, dir, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err == nil && slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == name }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s planted on disk is not listed in %s after 10s (%v)", name, dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func linkBehaviours() []behaviour {
	return []behaviour{
		{name: "symlink/create", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "through the link")
			symlink(t, "f", join(dir, "l"))
			isLink(t, join(dir, "l"), "f")
			if got := getFile(t, join(dir, "l")); got != "through the link" {
				t.Errorf("reading through the link: %q", got)
			}
			if st := statOf(t, join(dir, "l")); kindOf(st) != "f" {
				t.Errorf("stat follows the link to a %s, want a regular file", kindOf(st))
			}
		}},
		{name: "symlink/ln-s", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			mustCommand(t, dir, "ln", "-s", "f", "l")
			if out := mustCommand(t, dir, "readlink", "l"); out != "f\n" {
				t.Errorf("readlink l: %q", out)
			}
			isLink(t, join(dir, "l"), "f")
		}},
		{name: "symlink/dangling-listed", check: func(t testing.TB, dir string) {
			symlink(t, "nowhere", join(dir, "dangling"))
			if got := entryTypes(t, dir); got != "dangling:l" {
				t.Errorf("listing: %q, want dangling:l", got)
			}
			isLink(t, join(dir, "dangling"), "nowhere")
			wantErr(t, statErr(join(dir, "dangling"), true), unix.ENOENT, "stat through a dangling link")
		}},
		{name: "symlink/listing-types", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			symlink(t, "f", join(dir, "to-file"))
			symlink(t, "d", join(dir, "to-dir"))
			if got, want := entryTypes(t, dir), "d:d f:f to-dir:l to-file:l"; got != want {
				t.Errorf("listing: %q, want %q", got, want)
			}
		}},
		{name: "symlink/rename", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			putFile(t, join(dir, "g"), "replaced")
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			symlink(t, "../f", join(dir, "l"))
			ino := lstatOf(t, join(dir, "l")).Ino
			okDo(t, renameErr(join(dir, "l"), join(dir, "d", "m")), "rename l d/m")
			isLink(t, join(dir, "d", "m"), "../f")
			if got := lstatOf(t, join(dir, "d", "m")).Ino; got != ino {
				t.Errorf("inode %d after rename, was %d", got, ino)
			}
			wantErr(t, statErr(join(dir, "l"), false), unix.ENOENT, "lstat of the old name")
			symlink(t, "f", join(dir, "l2"))
			okDo(t, renameErr(join(dir, "l2"), join(dir, "g")), "rename a link over a file")
			isLink(t, join(dir, "g"), "f")
		}},
		{name: "symlink/unlink", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "kept")
			symlink(t, "f", join(dir, "l"))
			okDo(t, os.Remove(join(dir, "l")), "unlink l")
			wantErr(t, statErr(join(dir, "l"), false), unix.ENOENT, "lstat of the unlinked link")
			if got := getFile(t, join(dir, "f")); got != "kept" {
				t.Errorf("the target after unlink of the link: %q", got)
			}
		}},
		{name: "symlink/to-dir", check: func(t testing.TB, dir string) {
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			symlink(t, "d", join(dir, "l"))
			putFile(t, join(dir, "l", "via-link"), "x")
			if got := getFile(t, join(dir, "d", "via-link")); got != "x" {
				t.Errorf("a file made through a link to a directory: %q", got)
			}
		}},
		{name: "symlink/relative-dotdot", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "x"), "up there")
			okDo(t, os.MkdirAll(join(dir, "a", "b"), 0o755), "mkdir a/b")
			symlink(t, "../../x", join(dir, "a", "b", "l"))
			if got := getFile(t, join(dir, "a", "b", "l")); got != "up there" {
				t.Errorf("reading ../../x through a/b/l: %q", got)
			}
		}},
		{name: "symlink/long-target", check: func(t testing.TB, dir string) {
			target := strings.Repeat("abcdefg/", 511) + "1234567" // 4095 bytes: the longest
			symlink(t, target, join(dir, "l"))
			isLink(t, join(dir, "l"), target)
			wantErr(t, again(func() error { return unix.Symlink(target+"8", join(dir, "m")) }), unix.ENAMETOOLONG, "a 4096-byte target")
		}},
		{name: "symlink/loop-eloop", check: func(t testing.TB, dir string) {
			symlink(t, "b", join(dir, "a"))
			symlink(t, "a", join(dir, "b"))
			wantErr(t, statErr(join(dir, "a"), true), unix.ELOOP, "stat through a link loop")
			_, err := os.ReadFile(join(dir, "a"))
			wantErr(t, err, unix.ELOOP, "open through a link loop")
			wantErr(t, again(func() error { return os.WriteFile(join(dir, "a", "x"), nil, 0o644) }), unix.ELOOP, "create beneath a link loop")
		}},
		{name: "symlink/nofollow-eloop", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			symlink(t, "f", join(dir, "l"))
			err := again(func() error {
				fd, err := unix.Open(join(dir, "l"), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err == nil {
					unix.Close(fd)
				}
				return err
			})
			wantErr(t, err, unix.ELOOP, "open(O_NOFOLLOW) of a link")
		}},
		{name: "symlink/over-existing", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			symlink(t, "f", join(dir, "l"))
			for _, name := range []string{"f", "d", "l"} {
				wantErr(t, again(func() error { return unix.Symlink("t", join(dir, name)) }), unix.EEXIST, "symlink over "+name)
			}
		}},
		{name: "symlink/times-nofollow", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			symlink(t, "f", join(dir, "l"))
			target := lstatOf(t, join(dir, "f")).Mtim
			ts := []unix.Timespec{unix.NsecToTimespec(1_500_000_000_123_456_789), unix.NsecToTimespec(1_600_000_000_987_654_321)}
			okDo(t, again(func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, join(dir, "l"), ts, unix.AT_SYMLINK_NOFOLLOW) }), "utimensat(AT_SYMLINK_NOFOLLOW) of a link")
			if st := lstatOf(t, join(dir, "l")); st.Mtim != ts[1] || st.Atim != ts[0] {
				t.Errorf("the link's times: atime %v mtime %v, want %v %v", st.Atim, st.Mtim, ts[0], ts[1])
			}
			if got := lstatOf(t, join(dir, "f")).Mtim; got != target {
				t.Errorf("the target's mtime changed to %v (was %v)", got, target)
			}
		}},

		{name: "hardlink/link", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "one file")
			link(t, join(dir, "f"), join(dir, "g"))
			f, g := lstatOf(t, join(dir, "f")), lstatOf(t, join(dir, "g"))
			if f.Ino != g.Ino || f.Nlink != 2 || g.Nlink != 2 {
				t.Errorf("after link: f ino %d nlink %d, g ino %d nlink %d; want one inode, nlink 2", f.Ino, f.Nlink, g.Ino, g.Nlink)
			}
			if got := getFile(t, join(dir, "g")); got != "one file" {
				t.Errorf("g: %q", got)
			}
		}},
		{name: "hardlink/ln", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			mustCommand(t, dir, "ln", "f", "g")
			if f, g := lstatOf(t, join(dir, "f")), lstatOf(t, join(dir, "g")); f.Ino != g.Ino || g.Nlink != 2 {
				t.Errorf("after ln: inodes %d and %d, nlink %d", f.Ino, g.Ino, g.Nlink)
			}
		}},
		{name: "hardlink/unlink-keeps-other", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "survives")
			link(t, join(dir, "f"), join(dir, "g"))
			okDo(t, os.Remove(join(dir, "f")), "unlink f")
			if got := getFile(t, join(dir, "g")); got != "survives" {
				t.Errorf("g after unlink of f: %q", got)
			}
			if n := lstatOf(t, join(dir, "g")).Nlink; n != 1 {
				t.Errorf("g: nlink %d, want 1", n)
			}
		}},
		// A file unlinked while open lives on through its descriptor,
		// written before its name went (and not uploaded yet) or after.
		{name: "hardlink/unlinked-open-keeps-data", check: func(t testing.TB, dir string) {
			f, err := os.Create(join(dir, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("written before"); err != nil {
				t.Fatal(err)
			}
			okDo(t, os.Remove(join(dir, "f")), "unlink f")
			if _, err := f.WriteString(", and after"); err != nil {
				t.Errorf("write after unlink: %v", err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 0 || st.Size != 25 {
				t.Errorf("fstat after unlink: %v, nlink %d size %d, want 0 and 25", err, st.Nlink, st.Size)
			}
			buf := make([]byte, 64)
			if n, err := f.ReadAt(buf, 0); string(buf[:n]) != "written before, and after" {
				t.Errorf("read after unlink: %q, %v", buf[:n], err)
			}
			okDo(t, f.Truncate(7), "ftruncate after unlink")
			if n, _ := f.ReadAt(buf, 0); string(buf[:n]) != "written" {
				t.Errorf("read after ftruncate: %q", buf[:n])
			}
			okDo(t, f.Close(), "close")
			for _, name := range direntNames(t, dir) {
				if name != "." && name != ".." {
					t.Errorf("listing after close: %q is left", name)
				}
			}
		}},
		{name: "hardlink/shared-content", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "old")
			link(t, join(dir, "f"), join(dir, "g"))
			putFile(t, join(dir, "f"), "new content through f")
			if got := getFile(t, join(dir, "g")); got != "new content through f" {
				t.Errorf("g after writing f: %q", got)
			}
			okDo(t, os.Chmod(join(dir, "g"), 0o600), "chmod g")
			if m := permOf(lstatOf(t, join(dir, "f"))); m != 0o600 {
				t.Errorf("f's mode after chmod of g: %04o", m)
			}
		}},
		{name: "hardlink/rename-keeps-ino", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			link(t, join(dir, "f"), join(dir, "g"))
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			okDo(t, renameErr(join(dir, "g"), join(dir, "d", "h")), "rename g d/h")
			if f, h := lstatOf(t, join(dir, "f")), lstatOf(t, join(dir, "d", "h")); f.Ino != h.Ino || h.Nlink != 2 {
				t.Errorf("after rename: inodes %d and %d, nlink %d", f.Ino, h.Ino, h.Nlink)
			}
		}},
		{name: "hardlink/dir-eperm", check: func(t testing.TB, dir string) {
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			wantErr(t, again(func() error { return unix.Link(join(dir, "d"), join(dir, "e")) }), unix.EPERM, "link of a directory")
		}},
		{name: "hardlink/over-existing", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			putFile(t, join(dir, "g"), "y")
			wantErr(t, again(func() error { return unix.Link(join(dir, "f"), join(dir, "g")) }), unix.EEXIST, "link over a file")
			wantErr(t, again(func() error { return unix.Link(join(dir, "f"), join(dir, "f")) }), unix.EEXIST, "link to its own name")
		}},
		{name: "hardlink/cross-exdev", cross: func(t testing.TB, dir, other string) {
			putFile(t, join(dir, "f"), "x")
			wantErr(t, again(func() error { return unix.Link(join(dir, "f"), join(other, "f")) }), unix.EXDEV, "link to another filesystem")
		}},

		{name: "planted/symlinks-shown", planted: func(t testing.TB, dir, disk string) {
			// Made on disk, behind the filesystem's back: a peer shows
			// them as links, dangling and outward ones too, and never
			// follows one itself (the kernel of the mounting machine
			// does, as with NFS).
			if err := os.WriteFile(join(disk, "f"), []byte("planted"), 0o644); err != nil {
				t.Fatal(err)
			}
			links := map[string]string{"l": "f", "dangling": "nowhere", "abs": "/no/such/absolute/path", "up": "../../../outside"}
			for name, target := range links {
				if err := os.Symlink(target, join(disk, name)); err != nil {
					t.Fatal(err)
				}
			}
			settle(t, dir, "f")
			if got, want := entryTypes(t, dir), "abs:l dangling:l f:f l:l up:l"; got != want {
				t.Errorf("listing: %q, want %q", got, want)
			}
			for name, target := range links {
				isLink(t, join(dir, name), target)
			}
			if got := getFile(t, join(dir, "l")); got != "planted" {
				t.Errorf("reading through the planted link: %q", got)
			}
		}},
		{name: "planted/hardlinks-shown", planted: func(t testing.TB, dir, disk string) {
			if err := os.WriteFile(join(disk, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(join(disk, "f"), join(disk, "g")); err != nil {
				t.Fatal(err)
			}
			settle(t, dir, "f")
			if f, g := lstatOf(t, join(dir, "f")), lstatOf(t, join(dir, "g")); f.Ino != g.Ino || f.Nlink != 2 {
				t.Errorf("two names of one file: inodes %d and %d, nlink %d", f.Ino, g.Ino, f.Nlink)
			}
		}},
		{name: "planted/fifo-shown", planted: func(t testing.TB, dir, disk string) {
			if err := unix.Mkfifo(join(disk, "p"), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(join(disk, "f"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			settle(t, dir, "f")
			if st := lstatOf(t, join(dir, "p")); kindOf(st) != "p" || permOf(st) != 0o640 {
				t.Errorf("a FIFO planted on disk: type %s mode %04o", kindOf(st), permOf(st))
			}
			if got := entryTypes(t, dir); got != "f:f p:p" {
				t.Errorf("listing: %q", got)
			}
		}},
	}
}
