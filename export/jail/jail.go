package jail

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
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
// crash left behind, anywhere in the export, but for the undo records in
// its root (UndoRecords): their changes must be rolled back before they
// go. It returns how many files it removed and the first error met; it
// does not follow symbolic links.
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
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), TempPrefix) {
			return nil
		}
		if p == d.Name() && strings.HasPrefix(p, UndoPrefix) {
			return nil
		}
		if err := j.root.Remove(p); err != nil && first == nil {
			first = err
		} else if err == nil {
			removed++
		}
		return nil
	})
	if first == nil {
		first = err
	}
	return removed, first
}

// UndoRecords returns the names of the undo records in the export's root,
// where every record lies (UndoPrefix).
func (j *Jail) UndoRecords() ([]string, error) {
	des, err := fs.ReadDir(j.root.FS(), ".")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range des {
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), UndoPrefix) {
			names = append(names, d.Name())
		}
	}
	return names, nil
}
