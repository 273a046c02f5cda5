package e2e

// Helpers of the behaviour suite: system calls that take a testing.TB,
// retry EINTR as package os does, and say which errno they got.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// again repeats a call interrupted by a signal, as package os does for
// its own calls (golang.org/issue/38033): a signal that reaches a thread
// waiting in a FUSE request makes the kernel interrupt the request, and
// peerfs then fails the call with EINTR. This process gets such signals
// from the Go runtime; the suite is about what the filesystem answers.
func again(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// renameErr is rename(2). (os.Rename refuses a directory as the new
// name itself, with EEXIST, before asking the filesystem.)
func renameErr(from, to string) error {
	return again(func() error { return unix.Rename(from, to) })
}

// errName is an error as the suite reports it: "success", an errno's
// name (EEXIST...), or the error's text.
func errName(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "success"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// okDo fails the assertion if err is not nil.
func okDo(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %s", what, errName(err))
	}
}

// wantErr checks that a call failed with errno want.
func wantErr(t testing.TB, err error, want unix.Errno, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: %s, want %s", what, errName(err), unix.ErrnoName(want))
	}
}

func lstatOf(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	okDo(t, again(func() error { return unix.Lstat(path, &st) }), "lstat "+path)
	return st
}

func statOf(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	okDo(t, again(func() error { return unix.Stat(path, &st) }), "stat "+path)
	return st
}

// statErr is stat's error only.
func statErr(path string, follow bool) error {
	var st unix.Stat_t
	if follow {
		return again(func() error { return unix.Stat(path, &st) })
	}
	return again(func() error { return unix.Lstat(path, &st) })
}

// kindOf names a file type as find's %y does: f d l p s c b.
func kindOf(st unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "f"
	case unix.S_IFDIR:
		return "d"
	case unix.S_IFLNK:
		return "l"
	case unix.S_IFIFO:
		return "p"
	case unix.S_IFSOCK:
		return "s"
	case unix.S_IFCHR:
		return "c"
	case unix.S_IFBLK:
		return "b"
	}
	return "?"
}

// permOf is the 07777 bits of a mode.
func permOf(st unix.Stat_t) uint32 { return st.Mode & 0o7777 }

func readlinkOf(t testing.TB, path string) string {
	t.Helper()
	var target string
	okDo(t, again(func() error {
		var err error
		target, err = os.Readlink(path)
		return err
	}), "readlink "+path)
	return target
}

// putFile writes content to path (created 0644).
func putFile(t testing.TB, path, content string) {
	t.Helper()
	okDo(t, os.WriteFile(path, []byte(content), 0o644), "write "+path)
}

func getFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	okDo(t, err, "read "+path)
	return string(b)
}

// withUmask runs f with the process's umask set to mask. The umask is
// the process's: the suite's subtests run one at a time.
func withUmask(mask int, f func()) {
	old := unix.Umask(mask)
	defer unix.Umask(old)
	f()
}

// pause waits longer than a filesystem clock's tick, so that a time
// stamped after it differs from one stamped before.
func pause() { time.Sleep(30 * time.Millisecond) }

// needRoot skips an assertion that only root can make on a local disk.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root")
	}
}

// command runs a program in dir (2 minutes at most) and returns its
// combined output.
func command(t testing.TB, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out: %w", ctx.Err())
	}
	return string(out), err
}

// mustCommand is command that fails the assertion if the program fails.
func mustCommand(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	out, err := command(t, dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, firstLines(out, 10))
	}
	return out
}

// firstLines is at most n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		return strings.Join(lines[:n], "") + fmt.Sprintf("... (%d lines more)\n", len(lines)-n)
	}
	return s
}

// sameDevice reports whether two paths are on one filesystem.
func sameDevice(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return true
	}
	return sa.Dev == sb.Dev
}

// direntNames lists dir with getdents64, . and .. included (Go's
// os.ReadDir leaves them out).
func direntNames(t testing.TB, dir string) []string {
	t.Helper()
	var fd int
	okDo(t, again(func() error {
		var err error
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	}), "open "+dir)
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		okDo(t, err, "getdents "+dir)
		if n == 0 {
			return names
		}
		for b := buf[:n]; len(b) > 19; {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				t.Fatalf("getdents %s: bad record length %d", dir, reclen)
			}
			names = append(names, strings.TrimRight(string(b[19:reclen]), "\x00"))
			b = b[reclen:]
		}
	}
}

// entryTypes lists dir (os.ReadDir: getdents' d_type, lstat where the
// type is unknown) as "name:kind" words, kind as kindOf says.
func entryTypes(t testing.TB, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	okDo(t, err, "readdir "+dir)
	var words []string
	for _, e := range ents {
		k := "?"
		switch m := e.Type(); {
		case m.IsRegular():
			k = "f"
		case m.IsDir():
			k = "d"
		case m&os.ModeSymlink != 0:
			k = "l"
		case m&os.ModeNamedPipe != 0:
			k = "p"
		case m&os.ModeSocket != 0:
			k = "s"
		case m&os.ModeCharDevice != 0:
			k = "c"
		case m&os.ModeDevice != 0:
			k = "b"
		}
		words = append(words, e.Name()+":"+k)
	}
	return strings.Join(words, " ")
}

// join is filepath.Join, short.
func join(elem ...string) string { return filepath.Join(elem...) }
