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
