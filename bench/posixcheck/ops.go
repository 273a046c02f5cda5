package main

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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

func open(a []string) (int, error) {
	flags, err := parseFlags(a[1], openFlags)
	if err != nil {
		return -1, err
	}
	var mode uint32
	if len(a) > 2 {
		if mode, err = parseMode(a[2]); err != nil {
			return -1, err
		}
	}
	return unix.Open(a[0], flags|unix.O_CLOEXEC, mode)
}

func opOpen(w *worker, a []string) (string, error) {
	fd, err := open(a)
	if err != nil {
		return "", err
	}
	return "", unix.Close(fd)
}

func opOpenFD(w *worker, a []string) (string, error) {
	fd, err := open(a[1:])
	if err != nil {
		return "", err
	}
	if old, ok := w.fds[a[0]]; ok {
		unix.Close(old)
	}
	w.fds[a[0]] = fd
	return "", nil
}

func opWrite(w *worker, a []string) (string, error) {
	fd, err := w.fd(a[0])
	if err != nil {
		return "", err
	}
	n, err := unix.Write(fd, []byte(a[1]))
	if err == nil && n != len(a[1]) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(a[1]))
	}
	return "", err
}

func opPread(w *worker, a []string) (string, error) {
	fd, err := w.fd(a[0])
	if err != nil {
		return "", err
	}
	count, err1 := strconv.Atoi(a[1])
	off, err2 := strconv.ParseInt(a[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return "", err
	}
	buf := make([]byte, count)
	n, err := unix.Pread(fd, buf, off)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "empty", nil
	}
	return hex.EncodeToString(buf[:n]), nil
}

func opFstat(w *worker, a []string) (string, error) {
	fd, err := w.fd(a[0])
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	return formatField(&st, a[1])
}

func opFtruncate(w *worker, a []string) (string, error) {
	fd, err := w.fd(a[0])
	if err != nil {
		return "", err
	}
	n, err := strconv.ParseInt(a[1], 10, 64)
	if err != nil {
		return "", err
	}
	return "", unix.Ftruncate(fd, n)
}

func opFchmod(w *worker, a []string) (string, error) {
	fd, err := w.fd(a[0])
	if err != nil {
		return "", err
	}
	m, err := parseMode(a[1])
	if err != nil {
		return "", err
	}
	return "", unix.Fchmod(fd, m)
}

func opFchown(w *worker, a []string) (string, error) {
	fd, err := w.fd(a[0])
	if err != nil {
		return "", err
	}
	uid, err1 := strconv.Atoi(a[1])
	gid, err2 := strconv.Atoi(a[2])
	if err := errors.Join(err1, err2); err != nil {
		return "", err
	}
	return "", unix.Fchown(fd, uid, gid)
}

func opFutimens(w *worker, a []string) (string, error) {
	fd, err := w.fd(a[0])
	if err != nil {
		return "", err
	}
	ts, err := parseTimes(a[1], a[2])
	if err != nil {
		return "", err
	}
	return "", unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
}

// statField stats path (flags: 0 or AT_SYMLINK_NOFOLLOW) and formats one
// field.
func statField(path, field string, flags int) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(unix.AT_FDCWD, path, &st, flags); err != nil {
		return "", err
	}
	return formatField(&st, field)
}

// formatField formats one field of st: type (regular, dir, symlink,
// fifo, socket, char, block), mode (the 07777 bits, 4 octal digits),
// nlink, uid, gid, size, ino, blocks, rdev (major,minor), atime, mtime,
// ctime (ns since 1970).
func formatField(st *unix.Stat_t, field string) (string, error) {
	switch field {
	case "type":
		return typeName(st.Mode), nil
	case "mode":
		return fmt.Sprintf("%04o", st.Mode&0o7777), nil
	case "nlink":
		return fmt.Sprint(st.Nlink), nil
	case "uid":
		return fmt.Sprint(st.Uid), nil
	case "gid":
		return fmt.Sprint(st.Gid), nil
	case "size":
		return fmt.Sprint(st.Size), nil
	case "ino":
		return fmt.Sprint(st.Ino), nil
	case "blocks":
		return fmt.Sprint(st.Blocks), nil
	case "rdev":
		return fmt.Sprintf("%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), nil
	case "atime":
		return fmt.Sprint(st.Atim.Nano()), nil
	case "mtime":
		return fmt.Sprint(st.Mtim.Nano()), nil
	case "ctime":
		return fmt.Sprint(st.Ctim.Nano()), nil
	}
	return "", fmt.Errorf("unknown stat field %q", field)
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	}
	return fmt.Sprintf("unknown(%o)", mode&unix.S_IFMT)
}

func opMkdir(w *worker, a []string) (string, error) {
	m, err := parseMode(a[1])
	if err != nil {
		return "", err
	}
	return "", unix.Mkdir(a[0], m)
}

func opLink(w *worker, a []string) (string, error) {
	return "", unix.Linkat(unix.AT_FDCWD, a[0], unix.AT_FDCWD, a[1], 0)
}

func opReadlink(w *worker, a []string) (string, error) {
	buf := make([]byte, unix.PathMax+1)
	n, err := unix.Readlink(a[0], buf)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "empty", nil
	}
	return string(buf[:n]), nil
}

func opTruncate(w *worker, a []string) (string, error) {
	n, err := strconv.ParseInt(a[1], 10, 64)
	if err != nil {
		return "", err
	}
	return "", unix.Truncate(a[0], n)
}

func opChmod(w *worker, a []string) (string, error) {
	m, err := parseMode(a[1])
	if err != nil {
		return "", err
	}
	return "", unix.Chmod(a[0], m)
}

// chownOp is chown (flags 0) or lchown (AT_SYMLINK_NOFOLLOW).
func chownOp(flags int) func(*worker, []string) (string, error) {
	return func(w *worker, a []string) (string, error) {
		uid, err1 := strconv.Atoi(a[1])
		gid, err2 := strconv.Atoi(a[2])
		if err := errors.Join(err1, err2); err != nil {
			return "", err
		}
		return "", unix.Fchownat(unix.AT_FDCWD, a[0], uid, gid, flags)
	}
}

func opMkfifo(w *worker, a []string) (string, error) {
	m, err := parseMode(a[1])
	if err != nil {
		return "", err
	}
	return "", unix.Mkfifo(a[0], m)
}

var nodeTypes = map[string]uint32{
	"f": unix.S_IFREG, "p": unix.S_IFIFO, "s": unix.S_IFSOCK, "c": unix.S_IFCHR, "b": unix.S_IFBLK,
}

func opMknod(w *worker, a []string) (string, error) {
	typ, ok := nodeTypes[a[1]]
	if !ok {
		return "", fmt.Errorf("unknown node type %q", a[1])
	}
	m, err := parseMode(a[2])
	if err != nil {
		return "", err
	}
	var dev uint64
	if len(a) == 5 {
		major, err1 := strconv.ParseUint(a[3], 10, 32)
		minor, err2 := strconv.ParseUint(a[4], 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return "", err
		}
		dev = unix.Mkdev(uint32(major), uint32(minor))
	}
	return "", unix.Mknod(a[0], typ|m, int(dev))
}

func opSocket(w *worker, a []string) (string, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return "", unix.Bind(fd, &unix.SockaddrUnix{Name: a[0]})
}

// parseTimes reads utimensat's two times: ns since 1970 (negative
// before), now (UTIME_NOW) or omit (UTIME_OMIT).
func parseTimes(atime, mtime string) ([]unix.Timespec, error) {
	ts := make([]unix.Timespec, 2)
	for i, s := range []string{atime, mtime} {
		switch s {
		case "now":
			ts[i] = unix.Timespec{Nsec: unix.UTIME_NOW}
		case "omit":
			ts[i] = unix.Timespec{Nsec: unix.UTIME_OMIT}
		default:
			ns, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("time %q: %w", s, err)
			}
			ts[i] = unix.NsecToTimespec(ns)
		}
	}
	return ts, nil
}

func opUtimensat(w *worker, a []string) (string, error) {
	ts, err := parseTimes(a[1], a[2])
	if err != nil {
		return "", err
	}
	flags := 0
	if len(a) == 4 {
		if a[3] != "nofollow" {
			return "", fmt.Errorf("utimensat: unknown flag %q", a[3])
		}
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	return "", unix.UtimesNanoAt(unix.AT_FDCWD, a[0], ts, flags)
}

var accessModes = map[string]int{"F_OK": unix.F_OK, "R_OK": unix.R_OK, "W_OK": unix.W_OK, "X_OK": unix.X_OK}

func opAccess(w *worker, a []string) (string, error) {
	m, err := parseFlags(a[1], accessModes)
	if err != nil {
		return "", err
	}
	return "", unix.Access(a[0], uint32(m))
}

// readdirOp is readdir (names) and lsl (withTypes): every entry of a
// directory from getdents64, which (unlike Go's os.ReadDir) shows . and
// .. and d_type.
func readdirOp(withTypes bool) func(*worker, []string) (string, error) {
	return func(w *worker, a []string) (string, error) { return readdir(a[0], withTypes) }
}

func readdir(path string, withTypes bool) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return "", err
		}
		if n == 0 {
			break
		}
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return "", fmt.Errorf("getdents: bad record length %d", reclen)
			}
			typ := b[18]
			name := string(b[19:reclen])
			if i := strings.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if withTypes {
				if name == "." || name == ".." {
					continue
				}
				name += ":" + direntType(typ)
			}
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "empty", nil
	}
	return strings.Join(names, ","), nil
}

func direntType(t byte) string {
	switch t {
	case unix.DT_REG:
		return "f"
	case unix.DT_DIR:
		return "d"
	case unix.DT_LNK:
		return "l"
	case unix.DT_FIFO:
		return "p"
	case unix.DT_SOCK:
		return "s"
	case unix.DT_CHR:
		return "c"
	case unix.DT_BLK:
		return "b"
	}
	return "?"
}

func opUmask(w *worker, a []string) (string, error) {
	m, err := parseMode(a[0])
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%04o", unix.Umask(int(m))), nil
}

func opSleep(w *worker, a []string) (string, error) {
	ms, err := strconv.Atoi(a[0])
	if err != nil {
		return "", err
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return "", nil
}
