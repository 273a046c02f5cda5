package jail

// Attributes, link targets and the resolution of paths in the jail.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// Stat returns the attributes of p, following symbolic links inside the
// export; in the Strict view, of p itself.
func (j *Jail) Stat(p string) (fs.FileInfo, error) {
	if j.noFollow {
		return j.Lstat(p)
	}
	return j.root.Stat(Rel(p))
}

// Lstat returns the attributes of p itself.
func (j *Jail) Lstat(p string) (fs.FileInfo, error) {
	if !j.noFollow {
		return j.root.Lstat(Rel(p))
	}
	fd, err := j.Open(p, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	name := path.Base(p)
	if p == "" {
		name = "."
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return f.Stat()
}

// StatLink is fstatat(2) of p itself, not following it if it is a
// symbolic link, relative to its directory (OpenDir); p "" is the export.
func (j *Jail) StatLink(p string) (unix.Stat_t, error) {
	if p == "" {
		return Fstat(j.fd, p)
	}
	dir, base := Split(p)
	dfd, err := j.OpenDir(dir, false)
	if err != nil {
		return unix.Stat_t{}, err
	}
	defer j.CloseDir(dfd)
	return StatAt(dfd, base, p)
}

// Readlink returns the target of symbolic link p, read relative to its
// directory (OpenDir). A p that is not a link is EINVAL, as readlink(2)
// says.
func (j *Jail) Readlink(p string) (string, error) {
	if p == "" {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.EINVAL}
	}
	dir, base := Split(p)
	dfd, err := j.OpenDir(dir, false)
	if err != nil {
		return "", err
	}
	defer j.CloseDir(dfd)
	return ReadlinkAt(dfd, base, p)
}

// ReadlinkAt is readlinkat(2) of one name in directory dfd. The error is
// a *fs.PathError about p.
func ReadlinkAt(dfd int, base, p string) (string, error) {
	// A target is at most PATH_MAX-1 bytes: one more tells it was cut.
	buf := make([]byte, unix.PathMax)
	for {
		n, err := unix.Readlinkat(dfd, base, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return "", &fs.PathError{Op: "readlink", Path: p, Err: err}
		case n >= len(buf):
			return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.ENAMETOOLONG}
		}
		return string(buf[:n]), nil
	}
}

// Resolve follows symbolic links in p, component by component, and returns
// the path, relative to the export, of what p finally names. A last
// component that does not exist is kept as it is, so Resolve also names
// the target of a file about to be created. Links that are absolute or
// climb above the export are refused as escapes. Resolve only chooses a
// name: the operation that uses it goes through os.Root again, so a tree
// changed in between still cannot escape.
func (j *Jail) Resolve(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if j.noFollow {
		return "", errors.New("jail: Resolve on a Strict view")
	}
	var done []string
	todo := strings.Split(p, "/")
	hops := 0
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", escapeRefusal(p)
			}
			done = done[:len(done)-1]
			continue
		}
		cur := path.Join(append(done, elem)...)
		if Reserved(elem) {
			// A link must not lead clients to what they cannot name
			// (an upload in flight, an undo record).
			return "", &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("%q leads to a reserved name (%s*, %s)", p, TempPrefix, IDFile)}
		}
		fi, err := j.root.Lstat(cur)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && len(todo) == 0 {
				return cur, nil
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, elem)
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", &fs.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := j.root.Readlink(cur)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			return "", escapeRefusal(p)
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return path.Join(done...), nil
}

// escapeRefusal refuses p, whose symbolic links lead out of the export.
func escapeRefusal(p string) *Refusal {
	return &Refusal{Code: peerproto.CodeDenied, Text: fmt.Sprintf("path escapes the export: %q leads outside through a symbolic link", p), Hostile: true}
}

// Visible returns the attributes of p, following symbolic links inside the
// export, if p is something a client may see: a regular file or a
// directory. Anything else (a FIFO, a device, a socket) is "not found",
// as it is absent from LIST.
func (j *Jail) Visible(p string) (fs.FileInfo, error) {
	fi, err := j.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, &Refusal{Code: peerproto.CodeNotFound, Text: fmt.Sprintf("%q is not a regular file or directory", Display(p))}
	}
	return fi, nil
}

// Statfs reports the size, free space and space available to this process
// on the export's filesystem, in bytes.
func (j *Jail) Statfs() (total, free, avail int64, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(j.fd, &st); err != nil {
		return 0, 0, 0, &fs.PathError{Op: "statfs", Path: j.dir, Err: err}
	}
	bs := int64(st.Bsize)
	return int64(st.Blocks) * bs, int64(st.Bfree) * bs, int64(st.Bavail) * bs, nil
}

// StatAt is fstatat(2) of one name in directory dfd, not following a
// symbolic link. The error is a *fs.PathError about p.
func StatAt(dfd int, base, p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return st, &fs.PathError{Op: "stat", Path: p, Err: err}
		}
		return st, nil
	}
}

// Fstat is fstat(2), with the error about p.
func Fstat(fd int, p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return st, nil
}
