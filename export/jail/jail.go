package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/peerfs/peerfs/peerproto"
)

// maxSymlinks bounds symbolic link hops while resolving a name, like the
// kernel's own limit.
const maxSymlinks = 40

// Options configures Open.
type Options struct {
	// NoOpenat2 resolves every path through os.Root even where openat2
	// works, so that tests cover the path that older kernels (before 5.6)
	// and seccomp filters refusing openat2 take.
	NoOpenat2 bool
}

// Jail is an export directory opened as an os.Root. Every file operation
// of the export server goes through it, so a request can reach nothing
// outside the export: a path is resolved by the kernel with
// openat2(RESOLVE_BENEATH), or, where that is missing, by os.Root; both
// refuse ".." and symbolic links that lead out, even if the tree changes
// between a check and a use. What the server then does to a path's last
// element (create, stat, rename, unlink) it does relative to a directory
// so opened, by a single name that never follows a link.
//
// Its Strict view follows no symbolic link at all, in any element of a
// path: the rules of a whole-filesystem connection.
//
// A path longer than one system call takes (PATH_MAX) is resolved in
// segments of whole elements, each relative to the directory the last
// one opened, by the same rules.
//
// A Jail is safe for concurrent use: its fields are read-only after Open.
type Jail struct {
	root    *os.Root // nil in the Strict view, which never resolves through it
	dir     string   // absolute path of the export, for messages and logs
	fd      int      // the export, opened O_PATH: the base of openat2
	beneath bool     // openat2 with RESOLVE_BENEATH works here; else os.Root resolves
	// noFollow marks the Strict view: no symbolic link is followed, in
	// any element; with openat2 by RESOLVE_NO_SYMLINKS, else by opening
	// one element at a time with O_NOFOLLOW.
	noFollow bool
	strict   *Jail // the Strict view of this jail (itself, in the view)
}

// Open opens dir as a jail.
func Open(dir string, opts Options) (*Jail, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		root.Close()
		return nil, &fs.PathError{Op: "open", Path: abs, Err: err}
	}
	j := &Jail{root: root, dir: abs, fd: fd}
	if !opts.NoOpenat2 {
		probe, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveNoSymlinks})
		if err == nil {
			unix.Close(probe)
			j.beneath = true
		}
	}
	j.strict = &Jail{dir: abs, fd: fd, beneath: j.beneath, noFollow: true}
	j.strict.strict = j.strict
	return j, nil
}

// Close closes the export. The Strict view shares the jail's
// descriptors: closing it does nothing.
func (j *Jail) Close() error {
	if j.noFollow {
		return nil
	}
	unix.Close(j.fd)
	return j.root.Close()
}

// Strict returns the jail as a whole-filesystem connection sees it: no
// symbolic link is followed in any element of a path (a path through one
// is an error matching ErrSymlink), and Stat and Visible do not follow the
// last one either. Its Open and OpenDir take that rule; Root is nil, and
// Resolve and RenameError, which resolve through it, are not for it.
func (j *Jail) Strict() *Jail { return j.strict }

// IsStrict reports whether j is a Strict view.
func (j *Jail) IsStrict() bool { return j.noFollow }

// Dir returns the absolute path of the export.
func (j *Jail) Dir() string { return j.dir }

// FD returns the export's own descriptor, opened O_PATH: for fstat,
// fstatfs and the *xattr calls on the export itself. It stays the Jail's.
func (j *Jail) FD() int { return j.fd }

// Root returns the export as an os.Root, for the operations that take a
// name (os.Root refuses names that lead out, as the Jail does); nil in
// the Strict view, since os.Root follows links inside the export.
func (j *Jail) Root() *os.Root { return j.root }

// Beneath reports whether paths resolve with openat2(RESOLVE_BENEATH);
// false: through os.Root (Options.NoOpenat2, or a kernel without it).
func (j *Jail) Beneath() bool { return j.beneath }

// resolveBeneath is how openat2 resolves a request's path: beneath the
// export (no "..", absolute or symbolic link out of it) and never through
// the /proc magic links. resolveNoSymlinks is the Strict view's: through
// no link at all.
const (
	resolveBeneath    = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS
	resolveNoSymlinks = resolveBeneath | unix.RESOLVE_NO_SYMLINKS
)

// maxArg is the longest path one system call takes: PATH_MAX less its
// NUL. Longer paths are resolved in segments.
const maxArg = unix.PathMax - 1

// errEscape is openat2's EXDEV: the path would leave the export.
var errEscape = errors.New("path escapes from parent")

// Open opens p (relative to the export; "" is the export) with open(2)
// flags and returns the descriptor, close-on-exec, which the caller must
// close. Symbolic links are followed while they stay inside the export;
// one that leads out is an error Escapes recognises. In the Strict view
// none is followed: a link in the path, or as its last element unless
// flags has O_PATH and O_NOFOLLOW (which open the link itself), is an
// error matching ErrSymlink.
func (j *Jail) Open(p string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	switch {
	case j.noFollow && !j.beneath:
		return j.openWalk(p, flags)
	case !j.beneath:
		return j.openViaRoot(p, flags)
	}
	resolve := uint64(resolveBeneath)
	if j.noFollow {
		resolve = resolveNoSymlinks
	}
	// A path longer than one call takes: its leading segments, each of
	// whole elements and as long as a call takes, are opened in turn,
	// each beneath the last by the same rules.
	base, rest := j.fd, p
	defer func() {
		if base != j.fd {
			unix.Close(base)
		}
	}()
	for len(rest) > maxArg {
		i := strings.LastIndexByte(rest[:maxArg+1], '/')
		if i <= 0 {
			return -1, &fs.PathError{Op: "open", Path: p, Err: syscall.ENAMETOOLONG}
		}
		fd, err := j.openat2(base, rest[:i], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, resolve)
		if err != nil {
			return -1, j.openError(p, err)
		}
		if base != j.fd {
			unix.Close(base)
		}
		base, rest = fd, rest[i+1:]
	}
	fd, err := j.openat2(base, Rel(rest), flags, resolve)
	if err != nil {
		return -1, j.openError(p, err)
	}
	return fd, nil
}

// openat2 is openat2(2) of p beneath directory dfd, retried where the
// kernel asks.
func (j *Jail) openat2(dfd int, p string, flags int, resolve uint64) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags), Resolve: resolve}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dfd, p, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR, err == unix.EAGAIN && try < 16:
			// EAGAIN: a rename raced with a ".." in a link; the kernel
			// asks for a retry rather than risk an escape.
			continue
		}
		return -1, err
	}
}

// openError words an error of opening p: EXDEV is an escape, and in the
// Strict view ELOOP is a link in the path (it follows none, so it meets
// no loop).
func (j *Jail) openError(p string, err error) error {
	switch {
	case err == unix.EXDEV:
		err = errEscape
	case err == unix.ELOOP && j.noFollow:
		err = ErrSymlink
	}
	return &fs.PathError{Op: "open", Path: p, Err: err}
}

// openWalk is Open in the Strict view without openat2: one element at a
// time, each opened O_PATH|O_NOFOLLOW relative to the last and checked
// with fstat before the next (a link, or anything but a directory, ends
// the walk), then the last element with flags and O_NOFOLLOW. Elements are
// never ".." (Clean refuses them), so nothing above the export is reached.
func (j *Jail) openWalk(p string, flags int) (int, error) {
	if p == "" {
		fd, err := unix.Openat(j.fd, ".", flags, 0)
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
	elems := strings.Split(p, "/")
	dfd := j.fd
	defer func() {
		if dfd != j.fd {
			unix.Close(dfd)
		}
	}()
	for _, e := range elems[:len(elems)-1] {
		fd, err := openatRetry(dfd, e, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return -1, j.openError(p, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		switch {
		case err != nil:
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			err = unix.ELOOP
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			err = unix.ENOTDIR
		}
		if dfd != j.fd {
			unix.Close(dfd)
		}
		dfd = fd
		if err != nil {
			return -1, j.openError(p, err)
		}
	}
	last := elems[len(elems)-1]
	fd, err := openatRetry(dfd, last, flags|unix.O_NOFOLLOW)
	if err == unix.ENOTDIR || err == unix.ENXIO {
		// O_DIRECTORY or O_NOFOLLOW on a link (or a socket's ENXIO) say
		// other things than openat2 with RESOLVE_NO_SYMLINKS would: a
		// link is ELOOP.
		var st unix.Stat_t
		if unix.Fstatat(dfd, last, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP
		}
	}
	if err != nil {
		return -1, j.openError(p, err)
	}
	if flags&unix.O_PATH != 0 && flags&unix.O_NOFOLLOW == 0 {
		// O_PATH|O_NOFOLLOW opened a link itself; the caller did not ask
		// for that, and openat2 would refuse it.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(fd)
			if err == nil {
				err = unix.ELOOP
			}
			return -1, j.openError(p, err)
		}
	}
	return fd, nil
}

// openatRetry is openat(2), retried on EINTR.
func openatRetry(dfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// OpenFile opens p with open(2) flags if it is a regular file or a
// directory, and returns the descriptor with its attributes. Anything
// else is refused (a *Refusal, invalid) without being opened for I/O:
// opening a device or a FIFO has effects of its own. In the Strict view
// that includes a link as p's last element. p is first opened O_PATH,
// checked, then reopened through /proc: the very file checked.
func (j *Jail) OpenFile(p string, flags int) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	pfd, err := j.Open(p, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return -1, st, err
	}
	defer unix.Close(pfd)
	if st, err = Fstat(pfd, p); err != nil {
		return -1, st, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
	case unix.S_IFLNK:
		return -1, st, &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("%q is a symbolic link, not a regular file (read it with READLINK)", Display(p))}
	default:
		return -1, st, &Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("%q is not a regular file", Display(p))}
	}
	fd, err := openatRetry(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(pfd), flags|unix.O_CLOEXEC)
	if err != nil {
		return -1, st, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, st, nil
}

// openViaRoot is Open through os.Root, for kernels without openat2. The
// *os.File is traded for a bare duplicate of its descriptor.
func (j *Jail) openViaRoot(p string, flags int) (int, error) {
	f, err := j.root.OpenFile(Rel(p), flags&^unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	sc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := sc.Control(func(raw uintptr) { fd, derr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, &fs.PathError{Op: "dup", Path: p, Err: derr}
	}
	return fd, nil
}

// OpenDir opens directory dir ("" for the export) for use as the dirfd of
// *at calls on its entries and for fstatfs, and for fsync too if sync.
// Close it with CloseDir: without sync, for the export, it is the Jail's
// own descriptor.
func (j *Jail) OpenDir(dir string, sync bool) (int, error) {
	switch {
	case !j.beneath && !j.noFollow || sync:
		// os.Root does not follow links with O_PATH; fsync needs a
		// descriptor open for reading.
		return j.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	case dir == "":
		return j.fd, nil
	}
	// O_PATH: no read permission needed, nothing but a handle.
	return j.Open(dir, unix.O_PATH|unix.O_DIRECTORY)
}

// CloseDir closes a descriptor from OpenDir.
func (j *Jail) CloseDir(fd int) {
	if fd != j.fd {
		unix.Close(fd)
	}
}

// RenameAt renames clean path from to to with renameat(2) relative to
// their parent directories, opened beneath the export (rename never
// follows a link in its last elements), and reports whether it did, and
// renameat's error if it refused. On false nothing changed: the caller
// takes the general path, which also words any refusal, unless the error
// is one of rename(2)'s own (a non-empty target directory...), which the
// general path would report as another (os.Rename refuses any existing
// target directory with EEXIST). The Strict view has no general path: it
// always renames this way, and its error is final, opening a parent's
// included.
func (j *Jail) RenameAt(from, to string) (bool, error) {
	if !j.beneath && !j.noFollow {
		return false, nil
	}
	fdir, fbase := Split(from)
	tdir, tbase := Split(to)
	ffd, err := j.OpenDir(fdir, false)
	if err != nil {
		return false, j.finalOnly(err)
	}
	defer j.CloseDir(ffd)
	tfd := ffd
	if tdir != fdir {
		if tfd, err = j.OpenDir(tdir, false); err != nil {
			return false, j.finalOnly(err)
		}
		defer j.CloseDir(tfd)
	}
	for {
		err = unix.Renameat(ffd, fbase, tfd, tbase)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil && j.noFollow {
		err = &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return err == nil, err
}

// finalOnly returns err in the Strict view, where it is final, and nil
// elsewhere, where the general path words it.
func (j *Jail) finalOnly(err error) error {
	if j.noFollow {
		return err
	}
	return nil
}

// RenameError words a refusal of os.Root.Rename (the general path of a
// rename) as rename(2) would: os.Rename refuses every existing target
// directory with EEXIST, where rename(2) says EISDIR for a file over it
// and ENOTEMPTY for a directory over a non-empty one.
func (j *Jail) RenameError(from, to string, err error) error {
	if !errors.Is(err, fs.ErrExist) || j.noFollow {
		return err
	}
	tfi, terr := j.root.Lstat(Rel(to))
	ffi, ferr := j.root.Lstat(Rel(from))
	if terr != nil || ferr != nil || !tfi.IsDir() {
		return err
	}
	if !ffi.IsDir() {
		return syscall.EISDIR
	}
	d, derr := j.root.Open(Rel(to))
	if derr != nil {
		return err
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return syscall.ENOTEMPTY
	}
	return err
}

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

// Syncfs flushes the export's whole filesystem to disk.
func (j *Jail) Syncfs() error {
	fd, err := j.Open("", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &fs.PathError{Op: "syncfs", Path: j.dir, Err: err}
	}
	return nil
}

// RemoveStaleTemps deletes the temporary files that uploads cut short by a
// crash left behind, anywhere in the export. It returns how many it removed
// and the first error met; it does not follow symbolic links.
func (j *Jail) RemoveStaleTemps() (int, error) {
	var removed int
	var first error
	fsys := j.root.FS()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if first == nil {
				first = err
			}
			if d != nil && d.IsDir() && p != "." {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), TempPrefix) {
			if err := j.root.Remove(p); err != nil && first == nil {
				first = err
			} else if err == nil {
				removed++
			}
		}
		return nil
	})
	if first == nil {
		first = err
	}
	return removed, first
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
