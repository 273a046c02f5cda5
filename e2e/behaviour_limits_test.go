package e2e

// Behaviours of names and depth (issue #12, item 6) and the errno of each
// failure (item 7).

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// descend makes levels directories of 250-byte names, each in the last,
// by descriptor (mkdirat, openat), so that no argument holds more than a
// name however deep they go. It returns a descriptor of the deepest, the
// number of levels made, and the error that stopped it.
func descend(dir string, levels int) (fd, made int, err error) {
	name := strings.Repeat("d", 250)
	err = again(func() error {
		var e error
		fd, e = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return e
	})
	if err != nil {
		return -1, 0, err
	}
	for made < levels {
		if err = again(func() error { return unix.Mkdirat(fd, name, 0o755) }); err != nil {
			return fd, made, err
		}
		var next int
		err = again(func() error {
			var e error
			next, e = unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			return e
		})
		if err != nil {
			return fd, made, err
		}
		unix.Close(fd)
		fd = next
		made++
	}
	return fd, made, nil
}

// deepWorks checks a file at the bottom of a tree of levels levels:
// created, written, read back, renamed, listed, removed, all relative to
// a descriptor of its directory.
func deepWorks(t testing.TB, dir string, levels int) {
	t.Helper()
	fd, made, err := descend(dir, levels)
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if err != nil {
		t.Fatalf("mkdir at depth %d (%d bytes below %s): %s", made+1, (made+1)*251, dir, errName(err))
	}
	var f int
	okDo(t, again(func() error {
		var e error
		f, e = unix.Openat(fd, "f", unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
		return e
	}), "create a file at the bottom")
	_, werr := unix.Write(f, []byte("deep"))
	okDo(t, werr, "write it")
	okDo(t, unix.Close(f), "close it")
	okDo(t, again(func() error { return unix.Renameat(fd, "f", fd, "g") }), "rename it")
	var st unix.Stat_t
	okDo(t, again(func() error { return unix.Fstatat(fd, "g", &st, unix.AT_SYMLINK_NOFOLLOW) }), "stat it")
	if st.Size != 4 {
		t.Errorf("size %d at the bottom, want 4", st.Size)
	}
	okDo(t, again(func() error {
		var e error
		f, e = unix.Openat(fd, "g", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return e
	}), "open it again")
	buf := make([]byte, 8)
	n, rerr := unix.Read(f, buf)
	unix.Close(f)
	if rerr != nil || string(buf[:n]) != "deep" {
		t.Errorf("read back %q %v", buf[:n], rerr)
	}
	okDo(t, again(func() error { return unix.Unlinkat(fd, "g", 0) }), "unlink it")
}

// deepPathRefused is limits/deeper-than-16k on a peer folder: paths up
// to 16384 bytes below the export root work, a deeper one is
// ENAMETOOLONG.
func deepPathRefused(t testing.TB, dir string) {
	// 60 levels are 15060 bytes below dir, and dir is less than 1 KiB
	// below the export root; 70 levels are 17570 bytes.
	fd, made, err := descend(dir, 70)
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if made < 60 || err == nil || !strings.Contains(errName(err), "ENAMETOOLONG") {
		t.Errorf("70 levels of 251 bytes: %d made, then %s; want 60 or more, then ENAMETOOLONG", made, errName(err))
	}
	if fd < 0 {
		return
	}
	// A file there is refused by its open, not by its close.
	f, err := unix.Openat(fd, strings.Repeat("f", 250), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err == nil {
		cerr := unix.Close(f)
		t.Errorf("a file past the limit: created, then closed with %s; want ENAMETOOLONG from open", errName(cerr))
	} else if !strings.Contains(errName(err), "ENAMETOOLONG") {
		t.Errorf("a file past the limit: open %s, want ENAMETOOLONG", errName(err))
	}
}

func limitBehaviours() []behaviour {
	n255, n256 := strings.Repeat("x", 255), strings.Repeat("y", 256)
	return []behaviour{
		{name: "limits/name-255", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, n255), "x")
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			okDo(t, os.Mkdir(join(dir, "d", n255), 0o755), "mkdir of a 255-byte name")
			okDo(t, renameErr(join(dir, n255), join(dir, "d", n255, n255)), "rename to a 255-byte name")
			if got := getFile(t, join(dir, "d", n255, n255)); got != "x" {
				t.Errorf("read back %q", got)
			}
		}},
		{name: "limits/name-256", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			p := join(dir, n256)
			wantErr(t, os.WriteFile(p, nil, 0o644), unix.ENAMETOOLONG, "create")
			wantErr(t, os.Mkdir(p, 0o755), unix.ENAMETOOLONG, "mkdir")
			wantErr(t, renameErr(join(dir, "f"), p), unix.ENAMETOOLONG, "rename")
			wantErr(t, again(func() error { return unix.Symlink("f", p) }), unix.ENAMETOOLONG, "symlink")
			wantErr(t, again(func() error { return unix.Link(join(dir, "f"), p) }), unix.ENAMETOOLONG, "link")
			wantErr(t, statErr(p, false), unix.ENAMETOOLONG, "lstat")
		}},
		{name: "limits/path-arg-over-4096", check: func(t testing.TB, dir string) {
			p := dir + strings.Repeat("/"+strings.Repeat("z", 250), 17)
			wantErr(t, statErr(p, false), unix.ENAMETOOLONG, "lstat of a 4000+-byte argument")
		}},
		{name: "limits/deeper-than-path-max", check: func(t testing.TB, dir string) {
			deepWorks(t, dir, 20) // 5020 bytes below dir
		}},
		{name: "limits/deeper-than-16k", check: func(t testing.TB, dir string) {
			deepWorks(t, dir, 70) // 17570 bytes below dir
		}},
	}
}

func errnoBehaviours() []behaviour {
	setup := func(t testing.TB, dir string) {
		t.Helper()
		putFile(t, join(dir, "f"), "x")
		okDo(t, os.MkdirAll(join(dir, "full", "sub"), 0o755), "mkdir full/sub")
		okDo(t, os.Mkdir(join(dir, "empty"), 0o755), "mkdir empty")
	}
	return []behaviour{
		{name: "errno/eexist", check: func(t testing.TB, dir string) {
			setup(t, dir)
			wantErr(t, os.Mkdir(join(dir, "empty"), 0o755), unix.EEXIST, "mkdir over a directory")
			wantErr(t, os.Mkdir(join(dir, "f"), 0o755), unix.EEXIST, "mkdir over a file")
			_, err := os.OpenFile(join(dir, "f"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			wantErr(t, err, unix.EEXIST, "O_CREAT|O_EXCL over a file")
			_, err = os.OpenFile(join(dir, "empty"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			wantErr(t, err, unix.EEXIST, "O_CREAT|O_EXCL over a directory")
			wantErr(t, again(func() error { return unix.Mkfifo(join(dir, "f"), 0o644) }), unix.EEXIST, "mkfifo over a file")
		}},
		{name: "errno/enotempty", check: func(t testing.TB, dir string) {
			setup(t, dir)
			wantErr(t, os.Remove(join(dir, "full")), unix.ENOTEMPTY, "rmdir of a non-empty directory")
			wantErr(t, renameErr(join(dir, "empty"), join(dir, "full")), unix.ENOTEMPTY, "rename over a non-empty directory")
		}},
		{name: "errno/enotdir", check: func(t testing.TB, dir string) {
			setup(t, dir)
			_, err := os.Open(join(dir, "f", "x"))
			wantErr(t, err, unix.ENOTDIR, "open beneath a file")
			wantErr(t, os.Mkdir(join(dir, "f", "d"), 0o755), unix.ENOTDIR, "mkdir beneath a file")
			wantErr(t, again(func() error { return unix.Rmdir(join(dir, "f")) }), unix.ENOTDIR, "rmdir of a file")
			wantErr(t, renameErr(join(dir, "empty"), join(dir, "f")), unix.ENOTDIR, "rename of a directory over a file")
			_, err = os.OpenFile(join(dir, "f"), os.O_RDONLY|unix.O_DIRECTORY, 0)
			wantErr(t, err, unix.ENOTDIR, "open(O_DIRECTORY) of a file")
		}},
		{name: "errno/eisdir", check: func(t testing.TB, dir string) {
			setup(t, dir)
			_, err := os.OpenFile(join(dir, "empty"), os.O_WRONLY, 0)
			wantErr(t, err, unix.EISDIR, "open a directory to write")
			wantErr(t, again(func() error { return unix.Unlink(join(dir, "empty")) }), unix.EISDIR, "unlink of a directory")
			wantErr(t, renameErr(join(dir, "f"), join(dir, "empty")), unix.EISDIR, "rename of a file over a directory")
			wantErr(t, again(func() error { return unix.Truncate(join(dir, "empty"), 0) }), unix.EISDIR, "truncate of a directory")
		}},
		{name: "errno/einval", check: func(t testing.TB, dir string) {
			setup(t, dir)
			wantErr(t, renameErr(join(dir, "full"), join(dir, "full", "sub", "x")), unix.EINVAL, "rename of a directory into itself")
			wantErr(t, again(func() error { return unix.Rmdir(dir + "/empty/.") }), unix.EINVAL, "rmdir of .") // join would clean the .
			wantErr(t, again(func() error { _, err := unix.Readlink(join(dir, "f"), make([]byte, 10)); return err }), unix.EINVAL, "readlink of a file")
		}},
		{name: "errno/enoent", check: func(t testing.TB, dir string) {
			_, err := os.Open(join(dir, "missing"))
			wantErr(t, err, unix.ENOENT, "open of a missing file")
			wantErr(t, os.Remove(join(dir, "missing")), unix.ENOENT, "unlink of a missing file")
			wantErr(t, renameErr(join(dir, "missing"), join(dir, "x")), unix.ENOENT, "rename of a missing file")
			wantErr(t, os.Mkdir(join(dir, "missing", "d"), 0o755), unix.ENOENT, "mkdir in a missing directory")
			wantErr(t, again(func() error { return unix.Symlink("t", join(dir, "missing", "l")) }), unix.ENOENT, "symlink in a missing directory")
		}},
		{name: "errno/exdev", cross: func(t testing.TB, dir, other string) {
			putFile(t, join(dir, "f"), "x")
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			wantErr(t, renameErr(join(dir, "f"), join(other, "f")), unix.EXDEV, "rename of a file to another filesystem")
			wantErr(t, renameErr(join(dir, "d"), join(other, "d")), unix.EXDEV, "rename of a directory to another filesystem")
			if got := getFile(t, join(dir, "f")); got != "x" {
				t.Errorf("the file after a refused rename: %q", got)
			}
		}},
	}
}
