package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// An op is one call a worker can make. fn gets the expanded arguments
// (between min and max of them) and returns the call's value ("" for a
// call without one) or its error.
type op struct {
	usage    string
	min, max int
	fn       func(w *worker, a []string) (string, error)
}

// ops are the calls of the step language, each one system call (or a
// very small fixed sequence: open+close, socket+bind+close). Paths are
// relative to the worker's working directory (the case's directory,
// unless a chdir step moved it); N names a descriptor kept by openfd.
var ops = map[string]op{
	"open":      {"open PATH FLAGS [MODE]  (open, then close)", 2, 3, opOpen},
	"openfd":    {"openfd N PATH FLAGS [MODE]  (keep the descriptor as N)", 3, 4, opOpenFD},
	"close":     {"close N", 1, 1, func(w *worker, a []string) (string, error) { return "", w.closeFD(a[0]) }},
	"write":     {"write N TEXT", 2, 2, opWrite},
	"pread":     {"pread N COUNT OFFSET  (the bytes read, in hex)", 3, 3, opPread},
	"fstat":     {"fstat N FIELD", 2, 2, opFstat},
	"ftruncate": {"ftruncate N LENGTH", 2, 2, opFtruncate},
	"fchmod":    {"fchmod N MODE", 2, 2, opFchmod},
	"fchown":    {"fchown N UID GID", 3, 3, opFchown},
	"futimens":  {"futimens N ATIME MTIME", 3, 3, opFutimens},
	"stat":      {"stat PATH FIELD", 2, 2, func(w *worker, a []string) (string, error) { return statField(a[0], a[1], 0) }},
	"lstat": {"lstat PATH FIELD", 2, 2, func(w *worker, a []string) (string, error) {
		return statField(a[0], a[1], unix.AT_SYMLINK_NOFOLLOW)
	}},
	"unlink":    {"unlink PATH", 1, 1, func(w *worker, a []string) (string, error) { return "", unix.Unlink(a[0]) }},
	"rmdir":     {"rmdir PATH", 1, 1, func(w *worker, a []string) (string, error) { return "", unix.Rmdir(a[0]) }},
	"mkdir":     {"mkdir PATH MODE", 2, 2, opMkdir},
	"rename":    {"rename FROM TO", 2, 2, func(w *worker, a []string) (string, error) { return "", unix.Rename(a[0], a[1]) }},
	"link":      {"link FROM TO  (linkat without AT_SYMLINK_FOLLOW)", 2, 2, opLink},
	"symlink":   {"symlink TARGET PATH", 2, 2, func(w *worker, a []string) (string, error) { return "", unix.Symlink(a[0], a[1]) }},
	"readlink":  {"readlink PATH", 1, 1, opReadlink},
	"truncate":  {"truncate PATH LENGTH", 2, 2, opTruncate},
	"chmod":     {"chmod PATH MODE", 2, 2, opChmod},
	"chown":     {"chown PATH UID GID  (-1: unchanged)", 3, 3, chownOp(0)},
	"lchown":    {"lchown PATH UID GID", 3, 3, chownOp(unix.AT_SYMLINK_NOFOLLOW)},
	"mkfifo":    {"mkfifo PATH MODE", 2, 2, opMkfifo},
	"mknod":     {"mknod PATH TYPE MODE [MAJOR MINOR]  (TYPE f, p, s, c or b)", 3, 5, opMknod},
	"socket":    {"socket PATH  (bind a UNIX socket there, then close it)", 1, 1, opSocket},
	"utimensat": {"utimensat PATH ATIME MTIME [nofollow]  (times: ns since 1970, now or omit)", 3, 4, opUtimensat},
	"access":    {"access PATH MODE  (F_OK or R_OK|W_OK|X_OK)", 2, 2, opAccess},
	"chdir":     {"chdir PATH", 1, 1, func(w *worker, a []string) (string, error) { return "", unix.Chdir(a[0]) }},
	"readdir":   {"readdir PATH  (every name, . and .. included, sorted, comma-separated)", 1, 1, readdirOp(false)},
	"lsl":       {"lsl PATH  (name:type of every entry but . and .., sorted; types f d l p s c b)", 1, 1, readdirOp(true)},
	"umask":     {"umask MODE  (the previous mask)", 1, 1, opUmask},
	"now":       {"now  (the clock, ns since 1970)", 0, 0, func(*worker, []string) (string, error) { return fmt.Sprint(time.Now().UnixNano()), nil }},
	"sleep":     {"sleep MS", 1, 1, opSleep},
	"reset":     {"reset  (close every kept descriptor, umask 0)", 0, 0, opReset},
}

// worker is the state a worker process keeps across calls.
type worker struct {
	fds map[string]int
}

// call runs one call and turns its error into an errno's name.
func (w *worker) call(c []string) result {
	if len(c) == 0 {
		return result{Err: "empty call"}
	}
	o, ok := ops[c[0]]
	if !ok {
		return result{Err: fmt.Sprintf("unknown call %q", c[0])}
	}
	if a := c[1:]; len(a) < o.min || len(a) > o.max {
		return result{Err: "usage: " + o.usage}
	}
	v, err := o.fn(w, c[1:])
	var errno unix.Errno
	switch {
	case errors.As(err, &errno):
		return result{Errno: unix.ErrnoName(errno)}
	case err != nil:
		return result{Err: err.Error()}
	case v == "":
		return result{Value: "0"}
	}
	return result{Value: v}
}

func (w *worker) fd(name string) (int, error) {
	fd, ok := w.fds[name]
	if !ok {
		return -1, fmt.Errorf("no descriptor %q", name)
	}
	return fd, nil
}

func (w *worker) closeFD(name string) error {
	fd, err := w.fd(name)
	if err != nil {
		return err
	}
	delete(w.fds, name)
	return unix.Close(fd)
}

// opReset ends a case: every kept descriptor closed, the umask back to 0.
func opReset(w *worker, _ []string) (string, error) {
	for name := range w.fds {
		_ = w.closeFD(name)
	}
	unix.Umask(0)
	return "", nil
}

var openFlags = map[string]int{
	"O_RDONLY": unix.O_RDONLY, "O_WRONLY": unix.O_WRONLY, "O_RDWR": unix.O_RDWR,
	"O_CREAT": unix.O_CREAT, "O_EXCL": unix.O_EXCL, "O_TRUNC": unix.O_TRUNC,
	"O_APPEND": unix.O_APPEND, "O_NONBLOCK": unix.O_NONBLOCK, "O_DIRECTORY": unix.O_DIRECTORY,
	"O_NOFOLLOW": unix.O_NOFOLLOW, "O_PATH": unix.O_PATH,
}

func parseFlags(s string, table map[string]int) (int, error) {
	flags := 0
	for _, w := range strings.Split(s, "|") {
		f, ok := table[w]
		if !ok {
			return 0, fmt.Errorf("unknown flag %q", w)
		}
		flags |= f
	}
	return flags, nil
}

func parseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("mode %q: %w", s, err)
	}
	return uint32(m), nil
}
