package peer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/peerfs/peerfs/peerproto"
)

// jailTempPrefix starts the name of every in-flight upload. Such names are
// reserved: clients can neither see nor touch them.
const jailTempPrefix = ".peerfs-tmp-"

// jailMaxSymlinks bounds symbolic link hops while resolving a name, like
// the kernel's own limit.
const jailMaxSymlinks = 40

// jail is an export directory opened as an os.Root. Every file operation of
// the server goes through it, so a request can reach nothing outside the
// export: a path is resolved by the kernel with openat2(RESOLVE_BENEATH),
// or, where that is missing, by os.Root; both refuse ".." and symbolic
// links that lead out, even if the tree changes between a check and a use.
// What the server then does to a path's last element (create, stat,
// rename, unlink) it does relative to a directory so opened, by a single
// name that never follows a link.
//
// A jail is safe for concurrent use: its fields are read-only after
// jailOpen.
type jail struct {
	root    *os.Root
	dir     string // absolute path of the export, for messages and logs
	fd      int    // the export, opened O_PATH: the base of openat2
	beneath bool   // openat2 with RESOLVE_BENEATH works here; else os.Root resolves
}

// jailNoOpenat2 makes jailOpen resolve through os.Root even where openat2
// works, so tests can cover the path older kernels (before 5.6) and
// seccomp filters that refuse openat2 take.
var jailNoOpenat2 = false

// jailOpen opens dir as a jail.
func jailOpen(dir string) (*jail, error) {
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
	j := &jail{root: root, dir: abs, fd: fd}
	if !jailNoOpenat2 {
		probe, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: jailResolve})
		if err == nil {
			unix.Close(probe)
			j.beneath = true
		}
	}
	return j, nil
}

func (j *jail) close() error {
	unix.Close(j.fd)
	return j.root.Close()
}

// jailResolve is how openat2 resolves a request's path: beneath the
// export (no "..", absolute or symbolic link out of it) and never through
// the /proc magic links.
const jailResolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// errJailEscape is openat2's EXDEV: the path would leave the export.
var errJailEscape = errors.New("path escapes from parent")

// open opens p (relative to the export; "" is the export) with open(2)
// flags and returns the descriptor, close-on-exec, which the caller must
// close. Symbolic links are followed while they stay inside the export;
// one that leads out is an error jailEscapes recognises.
func (j *jail) open(p string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	if !j.beneath {
		return j.openViaRoot(p, flags)
	}
	how := unix.OpenHow{Flags: uint64(flags), Resolve: jailResolve}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(j.fd, jailRel(p), &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR, err == unix.EAGAIN && try < 16:
			// EAGAIN: a rename raced with a ".." in a link; the kernel
			// asks for a retry rather than risk an escape.
			continue
		case err == unix.EXDEV:
			err = errJailEscape
		}
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
}

// openViaRoot is open through os.Root, for kernels without openat2. The
// *os.File is traded for a bare duplicate of its descriptor.
func (j *jail) openViaRoot(p string, flags int) (int, error) {
	f, err := j.root.OpenFile(jailRel(p), flags&^unix.O_CLOEXEC, 0)
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

// openDir opens directory dir ("" for the export) for use as the dirfd of
// *at calls on its entries and for fstatfs, and for fsync too if sync.
// Close it with closeDir: without sync, for the export, it is j.fd itself.
func (j *jail) openDir(dir string, sync bool) (int, error) {
	switch {
	case !j.beneath || sync:
		// os.Root does not follow links with O_PATH; fsync needs a
		// descriptor open for reading.
		return j.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	case dir == "":
		return j.fd, nil
	}
	// O_PATH: no read permission needed, nothing but a handle.
	return j.open(dir, unix.O_PATH|unix.O_DIRECTORY)
}

// closeDir closes a descriptor from openDir.
func (j *jail) closeDir(fd int) {
	if fd != j.fd {
		unix.Close(fd)
	}
}

// renameAt renames clean path from to to with renameat(2) relative to
// their parent directories, opened beneath the export (rename never
// follows a link in its last elements), and reports whether it did, and
// renameat's error if it refused. On false nothing changed: the caller
// takes the general path, which also words any refusal, unless the error
// is one of rename(2)'s own (a non-empty target directory...), which the
// general path would report as another (os.Rename refuses any existing
// target directory with EEXIST).
func (j *jail) renameAt(from, to string) (bool, error) {
	if !j.beneath {
		return false, nil
	}
	fdir, fbase := jailSplit(from)
	tdir, tbase := jailSplit(to)
	ffd, err := j.openDir(fdir, false)
	if err != nil {
		return false, nil
	}
	defer j.closeDir(ffd)
	tfd := ffd
	if tdir != fdir {
		if tfd, err = j.openDir(tdir, false); err != nil {
			return false, nil
		}
		defer j.closeDir(tfd)
	}
	err = unix.Renameat(ffd, fbase, tfd, tbase)
	return err == nil, err
}

// renameError words a refusal of os.Root.Rename (the general path of a
// rename) as rename(2) would: os.Rename refuses every existing target
// directory with EEXIST, where rename(2) says EISDIR for a file over it
// and ENOTEMPTY for a directory over a non-empty one.
func (j *jail) renameError(from, to string, err error) error {
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	tfi, terr := j.root.Lstat(jailRel(to))
	ffi, ferr := j.root.Lstat(jailRel(from))
	if terr != nil || ferr != nil || !tfi.IsDir() {
		return err
	}
	if !ffi.IsDir() {
		return syscall.EISDIR
	}
	d, derr := j.root.Open(jailRel(to))
	if derr != nil {
		return err
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return syscall.ENOTEMPTY
	}
	return err
}

// jailSplit splits a clean path into its directory ("" for the export)
// and last element.
func jailSplit(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// jailStatAt is fstatat(2) of one name in directory dfd, not following a
// symbolic link. The error is a *fs.PathError about p.
func jailStatAt(dfd int, base, p string) (unix.Stat_t, error) {
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

// jailFstat is fstat(2), with the error about p.
func jailFstat(fd int, p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return st, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return st, nil
}

// jailStatEntry converts fstat's attributes to a protocol entry; ok is
// false for anything but a regular file or a directory.
func jailStatEntry(st *unix.Stat_t) (e peerproto.Entry, ok bool) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type = peerproto.TypeFile
	case unix.S_IFDIR:
		e.Type = peerproto.TypeDir
	default:
		return e, false
	}
	e.Mode = st.Mode & 0o7777
	e.Size = st.Size
	e.Mtime = st.Mtim.Nano()
	return e, true
}

// jailPathError is a name refused before it reaches the filesystem, or a
// filesystem error that says the name escapes the export.
type jailPathError struct {
	code    string // a peerproto.Code* constant
	text    string // for people
	hostile bool   // an attempt to leave the export, worth a warning in the log
}

func (e *jailPathError) Error() string { return e.code + " " + e.text }

// clean validates a decoded request name and returns it in canonical form
// ("" for the export root).
func (j *jail) clean(name string) (string, error) {
	p, err := peerproto.CleanPath(name)
	switch {
	case errors.Is(err, peerproto.ErrPathEscapes), errors.Is(err, peerproto.ErrPathAbsolute):
		return "", &jailPathError{code: peerproto.CodeDenied, text: fmt.Sprintf("path escapes the export: %q", name), hostile: true}
	case errors.Is(err, peerproto.ErrPathNUL):
		return "", &jailPathError{code: peerproto.CodeInvalid, text: fmt.Sprintf("NUL byte in name %q", name)}
	case errors.Is(err, peerproto.ErrPathTooLong):
		return "", &jailPathError{code: peerproto.CodeNameTooLong, text: fmt.Sprintf("name too long (limit %d bytes, %d per element)", peerproto.MaxName, peerproto.MaxComponent)}
	case err != nil:
		return "", &jailPathError{code: peerproto.CodeInvalid, text: fmt.Sprintf("bad name %q: %v", name, err)}
	}
	for _, elem := range strings.Split(p, "/") {
		if jailReserved(elem) {
			return "", &jailPathError{code: peerproto.CodeInvalid, text: fmt.Sprintf("name %q is reserved (%s*, %s)", name, jailTempPrefix, exportIDFile)}
		}
	}
	return p, nil
}

// jailReserved reports whether a single path element is a reserved name:
// an upload in progress, or the file of the export's identity.
func jailReserved(elem string) bool {
	return strings.HasPrefix(elem, jailTempPrefix) || elem == exportIDFile
}

// jailRel returns p as os.Root wants it: "." for the root.
func jailRel(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// jailEscapes reports whether err is os.Root's refusal of a path that
// leads outside the root. os does not export that error, so it is
// recognised by its text at the bottom of the chain.
func jailEscapes(err error) bool {
	if errors.Is(err, errJailEscape) {
		return true
	}
	for err != nil {
		if err.Error() == "path escapes from parent" {
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}

// jailMapError turns a filesystem error about name into the code and text of a
// refusal, and reports whether it smells hostile (an escape).
func jailMapError(name string, err error) (code, text string, hostile bool) {
	var pe *jailPathError
	if errors.As(err, &pe) {
		return pe.code, pe.text, pe.hostile
	}
	if jailEscapes(err) {
		return peerproto.CodeDenied, fmt.Sprintf("path escapes the export: %q leads outside through a symbolic link", name), true
	}
	code = peerproto.CodeOf(err)
	switch code {
	case peerproto.CodeNotFound:
		text = fmt.Sprintf("no such file or directory %q", name)
	case peerproto.CodeExists:
		text = fmt.Sprintf("%q already exists", name)
	case peerproto.CodeNotEmpty:
		text = fmt.Sprintf("directory %q is not empty", name)
	case peerproto.CodeNotDir:
		text = fmt.Sprintf("%q (or one of its parents) is not a directory", name)
	case peerproto.CodeIsDir:
		text = fmt.Sprintf("%q is a directory", name)
	case peerproto.CodeDenied:
		text = fmt.Sprintf("permission denied on %q", name)
	case peerproto.CodeNoSpace:
		text = fmt.Sprintf("no space left on the export writing %q", name)
	case peerproto.CodeTooLarge:
		text = fmt.Sprintf("%q: size over a limit of the filesystem", name)
	case peerproto.CodeNameTooLong:
		text = fmt.Sprintf("%q: name over a limit of the filesystem", name)
	case peerproto.CodeReadOnly:
		text = "export is on a read-only filesystem"
	default:
		text = fmt.Sprintf("%q: %v", name, jailBareError(err))
	}
	if errors.Is(err, syscall.ELOOP) {
		code, text = peerproto.CodeInvalid, fmt.Sprintf("too many levels of symbolic links in %q", name)
	}
	return code, text, false
}

// jailBareError strips the *PathError wrapper, whose path is relative to
// the export and would repeat the name.
func jailBareError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// stat returns the attributes of p, following symbolic links inside the
// export.
func (j *jail) stat(p string) (fs.FileInfo, error) { return j.root.Stat(jailRel(p)) }

// lstat returns the attributes of p itself.
func (j *jail) lstat(p string) (fs.FileInfo, error) { return j.root.Lstat(jailRel(p)) }

// resolve follows symbolic links in p, component by component, and returns
// the path, relative to the export, of what p finally names. A last
// component that does not exist is kept as it is, so resolve also names
// the target of a file about to be created. Links that are absolute or
// climb above the export are refused as escapes. resolve only chooses a
// name: the operation that uses it goes through os.Root again, so a tree
// changed in between still cannot escape.
func (j *jail) resolve(p string) (string, error) {
	if p == "" {
		return "", nil
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
				return "", &jailPathError{code: peerproto.CodeDenied, text: fmt.Sprintf("path escapes the export: %q leads outside through a symbolic link", p), hostile: true}
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
		if hops++; hops > jailMaxSymlinks {
			return "", &fs.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := j.root.Readlink(cur)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			return "", &jailPathError{code: peerproto.CodeDenied, text: fmt.Sprintf("path escapes the export: %q leads outside through a symbolic link", p), hostile: true}
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return path.Join(done...), nil
}

// syncfs flushes the export's whole filesystem to disk.
func (j *jail) syncfs() error {
	d, err := j.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// removeStaleTemps deletes the temporary files that uploads cut short by a
// crash left behind, anywhere in the export. It returns how many it removed
// and the first error met; it does not follow symbolic links.
func (j *jail) removeStaleTemps() (int, error) {
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
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), jailTempPrefix) {
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

// jailModeBits converts a FileMode to the Unix permission bits (07777) the
// protocol carries.
func jailModeBits(m fs.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// jailFileMode converts protocol permission bits to a FileMode.
func jailFileMode(b uint32) fs.FileMode {
	m := fs.FileMode(b & 0o777)
	if b&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if b&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if b&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// jailEntry converts attributes to a protocol entry; ok is false for
// anything but a regular file or a directory.
func jailEntry(name string, fi fs.FileInfo) (e peerproto.Entry, ok bool) {
	switch {
	case fi.Mode().IsRegular():
		e.Type = peerproto.TypeFile
	case fi.IsDir():
		e.Type = peerproto.TypeDir
	default:
		return e, false
	}
	e.Name = name
	e.Mode = jailModeBits(fi.Mode())
	e.Size = fi.Size()
	e.Mtime = fi.ModTime().UnixNano()
	return e, true
}

// jailDisplay names the export root "." in messages.
func jailDisplay(name string) string {
	if name == "" {
		return "."
	}
	return name
}

// visible returns the attributes of p, following symbolic links inside the
// export, if p is something a client may see: a regular file or a
// directory. Anything else (a FIFO, a device, a socket) is "not found",
// as it is absent from LIST.
func (j *jail) visible(p string) (fs.FileInfo, error) {
	fi, err := j.stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, &jailPathError{code: peerproto.CodeNotFound, text: fmt.Sprintf("%q is not a regular file or directory", jailDisplay(p))}
	}
	return fi, nil
}

// statfs reports the size, free space and space available to this process
// on the export's filesystem, in bytes.
func (j *jail) statfs() (total, free, avail int64, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(j.fd, &st); err != nil {
		return 0, 0, 0, &fs.PathError{Op: "statfs", Path: j.dir, Err: err}
	}
	bs := int64(st.Bsize)
	return int64(st.Blocks) * bs, int64(st.Bfree) * bs, int64(st.Bavail) * bs, nil
}
