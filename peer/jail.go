package peer

import (
	"crypto/rand"
	"encoding/hex"
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
// export: os.Root refuses ".." and symbolic links that lead out, even if
// the tree changes between a check and a use.
//
// A jail is safe for concurrent use: it holds no state besides the root.
type jail struct {
	root *os.Root
	dir  string // absolute path of the export, for messages and logs
}

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
	return &jail{root: root, dir: abs}, nil
}

func (j *jail) close() error { return j.root.Close() }

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
		return "", &jailPathError{code: peerproto.CodeTooLarge, text: fmt.Sprintf("name too long (limit %d bytes, %d per element)", peerproto.MaxName, peerproto.MaxComponent)}
	case err != nil:
		return "", &jailPathError{code: peerproto.CodeInvalid, text: fmt.Sprintf("bad name %q: %v", name, err)}
	}
	for _, elem := range strings.Split(p, "/") {
		if jailReserved(elem) {
			return "", &jailPathError{code: peerproto.CodeInvalid, text: fmt.Sprintf("name %q is reserved (prefix %s)", name, jailTempPrefix)}
		}
	}
	return p, nil
}

// jailReserved reports whether a single path element is a reserved name.
func jailReserved(elem string) bool { return strings.HasPrefix(elem, jailTempPrefix) }

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
		text = fmt.Sprintf("%q: name or size over a limit of the filesystem", name)
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

// createTemp creates an empty, exclusive temporary file in directory dir
// (relative to the export) and returns it with its path.
func (j *jail) createTemp(dir string) (*os.File, string, error) {
	var rnd [8]byte
	for range 10 {
		if _, err := rand.Read(rnd[:]); err != nil {
			return nil, "", err
		}
		p := path.Join(dir, jailTempPrefix+hex.EncodeToString(rnd[:]))
		f, err := j.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, p, err
	}
	return nil, "", fmt.Errorf("peer: no free temporary name in %q", dir)
}

// openRegular opens p for reading or writing (flag) and insists on a
// regular file. O_NONBLOCK keeps a FIFO planted in the export from hanging
// the open; it has no effect on regular files.
func (j *jail) openRegular(p string, flag int) (*os.File, fs.FileInfo, error) {
	f, err := j.root.OpenFile(jailRel(p), flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if fi.IsDir() {
		f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &jailPathError{code: peerproto.CodeInvalid, text: fmt.Sprintf("%q is not a regular file", p)}
	}
	return f, fi, nil
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

// syncDir fsyncs directory dir, making a rename in it durable.
func (j *jail) syncDir(dir string) error {
	d, err := j.root.Open(jailRel(dir))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
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
		if d.Type().IsRegular() && jailReserved(d.Name()) {
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
	d, err := j.root.Open(".")
	if err != nil {
		return 0, 0, 0, err
	}
	defer d.Close()
	sc, err := d.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var st unix.Statfs_t
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = unix.Fstatfs(int(fd), &st) }); err != nil {
		return 0, 0, 0, err
	}
	if serr != nil {
		return 0, 0, 0, &fs.PathError{Op: "statfs", Path: j.dir, Err: serr}
	}
	bs := int64(st.Bsize)
	return int64(st.Blocks) * bs, int64(st.Bfree) * bs, int64(st.Bavail) * bs, nil
}
