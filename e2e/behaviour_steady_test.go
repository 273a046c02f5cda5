package e2e

// times/steady: what a change stamps stays, as on a local disk.

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// steadyWait is how long times/steady leaves the tree alone before it
// looks again: past the kernel's and the mount's attribute timeouts (1 s)
// and the window in which the mount takes a peer's reports for its own
// changes' echo (2 s), so that what it then sees is the peer's answer.
const steadyWait = 2500 * time.Millisecond

// steadyChanges are the changes times/steady makes, each in a directory
// of its own (its name), with the paths whose times it looks at after
// (relative to that directory, "." for the directory itself).
var steadyChanges = []struct {
	name string
	do   func(t testing.TB, d string)
	look []string
}{
	{"create", func(t testing.TB, d string) { putFile(t, join(d, "f"), "x") }, []string{".", "f"}},
	{"create-empty", func(t testing.TB, d string) { putFile(t, join(d, "f"), "") }, []string{".", "f"}},
	{"overwrite", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		putFile(t, join(d, "f"), "written again")
	}, []string{".", "f"}},
	{"append", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		f, err := os.OpenFile(join(d, "f"), os.O_WRONLY|os.O_APPEND, 0)
		okDo(t, err, "open f to append")
		_, err = f.WriteString("more")
		okDo(t, err, "append to f")
		okDo(t, f.Close(), "close f")
	}, []string{".", "f"}},
	{"append-big", func(t testing.TB, d string) {
		// A large file's small change goes in place on the peer (through
		// a temporary file beside it, and an undo record).
		okDo(t, os.WriteFile(join(d, "f"), make([]byte, 8<<20), 0o644), "write an 8 MiB f")
		f, err := os.OpenFile(join(d, "f"), os.O_WRONLY|os.O_APPEND, 0)
		okDo(t, err, "open f to append")
		_, err = f.WriteString("more")
		okDo(t, err, "append to f")
		okDo(t, f.Close(), "close f")
	}, []string{".", "f"}},
	// Looked at while open: the kernel keeps what it was shown of a
	// file with changes not stored yet (this machine's times) for the
	// attribute timeout, and the close that stores it must have it drop
	// them, or a stat right after shows them and a later one the peer's.
	{"fstat-open", func(t testing.TB, d string) {
		withOpen(t, join(d, "f"), func(f *os.File) {
			_, err := f.Stat()
			okDo(t, err, "fstat f")
		})
	}, []string{".", "f"}},
	{"fchmod-open", func(t testing.TB, d string) {
		withOpen(t, join(d, "f"), func(f *os.File) { okDo(t, f.Chmod(0o600), "fchmod f") })
	}, []string{".", "f"}},
	{"futimes-open", func(t testing.TB, d string) {
		withOpen(t, join(d, "f"), func(f *os.File) {
			ts := []unix.Timespec{unix.NsecToTimespec(1_500_000_000_000_000_000), unix.NsecToTimespec(1_600_000_000_000_000_000)}
			okDo(t, unix.UtimesNanoAt(unix.AT_FDCWD, f.Name(), ts, 0), "utimensat f while open")
			_, err := f.Stat()
			okDo(t, err, "fstat f")
		})
	}, []string{".", "f"}},
	{"truncate", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "some bytes")
		okDo(t, os.Truncate(join(d, "f"), 2), "truncate f")
	}, []string{".", "f"}},
	{"chmod-file", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		chmod(t, join(d, "f"), 0o600)
	}, []string{".", "f"}},
	{"utimes-file", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		utimens(t, join(d, "f"), 1_500_000_000_000_000_000, 1_600_000_000_000_000_000)
	}, []string{".", "f"}},
	{"rename-file", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		okDo(t, os.Mkdir(join(d, "to"), 0o755), "mkdir to")
		okDo(t, renameErr(join(d, "f"), join(d, "g")), "rename f g")
		okDo(t, renameErr(join(d, "g"), join(d, "to", "h")), "rename g to/h")
	}, []string{".", "to", "to/h"}},
	{"rename-over", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		putFile(t, join(d, "g"), "y")
		okDo(t, renameErr(join(d, "f"), join(d, "g")), "rename f over g")
	}, []string{".", "g"}},
	{"unlink", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		okDo(t, os.Remove(join(d, "f")), "remove f")
	}, []string{"."}},
	{"mkdir", func(t testing.TB, d string) { okDo(t, os.Mkdir(join(d, "sub"), 0o755), "mkdir sub") }, []string{".", "sub"}},
	{"rmdir", func(t testing.TB, d string) {
		okDo(t, os.Mkdir(join(d, "sub"), 0o755), "mkdir sub")
		okDo(t, os.Remove(join(d, "sub")), "rmdir sub")
	}, []string{"."}},
	{"chmod-dir", func(t testing.TB, d string) {
		okDo(t, os.Mkdir(join(d, "sub"), 0o755), "mkdir sub")
		chmod(t, join(d, "sub"), 0o700)
	}, []string{".", "sub"}},
	{"utimes-dir", func(t testing.TB, d string) {
		okDo(t, os.Mkdir(join(d, "sub"), 0o755), "mkdir sub")
		putFile(t, join(d, "sub", "f"), "x")
		utimens(t, join(d, "sub"), 1_500_000_000_000_000_000, 1_600_000_000_000_000_000)
	}, []string{".", "sub", "sub/f"}},
	{"rename-dir", func(t testing.TB, d string) {
		okDo(t, os.Mkdir(join(d, "sub"), 0o755), "mkdir sub")
		okDo(t, os.Mkdir(join(d, "to"), 0o755), "mkdir to")
		okDo(t, renameErr(join(d, "sub"), join(d, "to", "moved")), "rename sub to/moved")
	}, []string{".", "to", "to/moved"}},
	{"symlink", func(t testing.TB, d string) {
		okDo(t, os.Symlink("target", join(d, "l")), "symlink l")
	}, []string{".", "l"}},
	{"link", func(t testing.TB, d string) {
		putFile(t, join(d, "f"), "x")
		okDo(t, os.Link(join(d, "f"), join(d, "g")), "link f g")
	}, []string{".", "f", "g"}},
	{"mkfifo", func(t testing.TB, d string) {
		okDo(t, unix.Mkfifo(join(d, "p"), 0o644), "mkfifo p")
	}, []string{".", "p"}},
	{"tar-like", func(t testing.TB, d string) {
		// What tar -x does: a directory, its files with their times set,
		// then the directory's times (tar -c right after warned "file
		// changed as we read it" of such directories).
		okDo(t, os.Mkdir(join(d, "sub"), 0o755), "mkdir sub")
		for i := range 5 {
			f := join(d, "sub", fmt.Sprint("f", i))
			putFile(t, f, "x")
			chmod(t, f, 0o644)
			utimens(t, f, 1_500_000_000_000_000_000, 1_600_000_000_000_000_000)
		}
		chmod(t, join(d, "sub"), 0o755)
		utimens(t, join(d, "sub"), 1_500_000_000_000_000_000, 1_600_000_000_000_000_000)
	}, []string{".", "sub", "sub/f0", "sub/f4"}},
}

// withOpen creates path, writes to it, calls fn with it open, then closes
// it.
func withOpen(t testing.TB, path string, fn func(f *os.File)) {
	t.Helper()
	f, err := os.Create(path)
	okDo(t, err, "create "+path)
	_, err = f.WriteString("x")
	okDo(t, err, "write "+path)
	fn(f)
	okDo(t, f.Close(), "close "+path)
}

// steadyTimes are the times lstat shows of path.
func steadyTimes(t testing.TB, path string) string {
	t.Helper()
	var st syscall.Stat_t
	okDo(t, syscall.Lstat(path, &st), "lstat "+path)
	return fmt.Sprintf("mtime %d ctime %d", st.Mtim.Nano(), st.Ctim.Nano())
}

func steadyBehaviours() []behaviour {
	return []behaviour{
		// A change stamps the times of what it changed (and of the
		// directories it changed) once: with nothing changed since, they
		// read the same later, also once attribute caches expired.
		// tar -c compares a directory's ctime before and after it
		// archives it.
		{name: "times/steady", trusted: true, check: func(t testing.TB, dir string) {
			type seen struct{ path, times string }
			var first []seen
			for _, c := range steadyChanges {
				d := join(dir, c.name)
				okDo(t, os.Mkdir(d, 0o755), "mkdir "+c.name)
				c.do(t, d)
				for _, p := range c.look {
					first = append(first, seen{join(d, p), steadyTimes(t, join(d, p))})
				}
			}
			time.Sleep(steadyWait)
			var moved []string
			for _, s := range first {
				if now := steadyTimes(t, s.path); now != s.times {
					moved = append(moved, fmt.Sprintf("%s: %s, then %s", strings.TrimPrefix(s.path, dir+"/"), s.times, now))
				}
			}
			if len(moved) > 0 {
				t.Errorf("times moved with nothing changed, %d of %d:\n%s", len(moved), len(first), strings.Join(moved, "\n"))
			}
		}},
		// A directory's chmod, then a removal in it, both written
		// behind: the chmod's answer predates the removal (a review found
		// it taken for the removal's, and the times moving once that was
		// carried out).
		{name: "times/steady-chmod-then-rm", trusted: true, check: func(t testing.TB, dir string) {
			d := join(dir, "sub")
			okDo(t, os.Mkdir(d, 0o755), "mkdir sub")
			putFile(t, join(d, "x"), "x")
			syncDir(t, d) // all carried out
			steadyTimes(t, d)
			steadyTimes(t, join(d, "x"))
			chmod(t, d, 0o700)
			okDo(t, os.Remove(join(d, "x")), "rm sub/x")
			first := steadyTimes(t, d)
			time.Sleep(steadyWait)
			if now := steadyTimes(t, d); now != first {
				t.Errorf("sub's times moved with nothing changed after chmod sub; rm sub/x: %s, then %s", first, now)
			}
		}},
	}
}
