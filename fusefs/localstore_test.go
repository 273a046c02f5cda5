package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errUpload is what localStore.Flush fails with when failFlush is set: a
// plain error, so it exercises the "unexpected error -> EIO" path.
var errUpload = errors.New("upload to peer failed")

// localStore is a Store backed by a local directory: every subdirectory
// of base is a peer, handles are *os.File.
type localStore struct {
	base string

	failFlush atomic.Bool
	owners    atomic.Bool                   // entries carry their real owners (Stat.Owners), and Chown works
	stall     atomic.Pointer[chan struct{}] // if set, Stat of a name "slow" waits for it to close
	stalled   atomic.Int64                  // Stat calls that began waiting on stall
	stats     atomic.Int64                  // Stat calls
	lists     atomic.Int64                  // List calls
	flushes   atomic.Int64                  // Flush calls

	mu       sync.Mutex // protects the fields below
	calls    []string   // "truncate" and "chmod", in the order they came
	watchers []func(peer, dir string)
	files    map[uint64]*os.File
	next     uint64
}

var _ Store = (*localStore)(nil)

func newLocalStore(base string, peers ...string) *localStore {
	for _, p := range peers {
		if err := os.MkdirAll(filepath.Join(base, p), 0o755); err != nil {
			panic(err)
		}
	}
	return &localStore{base: base, files: map[uint64]*os.File{}}
}

// record notes a call of the Store's (calls).
func (s *localStore) record(call string) {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
}

// takeCalls returns the calls recorded and forgets them.
func (s *localStore) takeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// notify fires the Watch callbacks, as a peer daemon would.
func (s *localStore) notify(peer, dir string) {
	s.mu.Lock()
	ws := slices.Clone(s.watchers)
	s.mu.Unlock()
	for _, w := range ws {
		w(peer, dir)
	}
}

func (s *localStore) full(peer, path string) (string, error) {
	if peer == "" || strings.ContainsRune(peer, '/') || peer == "." || peer == ".." {
		return "", fmt.Errorf("peer %q: %w", peer, fs.ErrNotExist)
	}
	if path != "" && !fs.ValidPath(path) {
		return "", fmt.Errorf("path %q: %w", path, fs.ErrInvalid)
	}
	return filepath.Join(s.base, peer, filepath.FromSlash(path)), nil
}

func (s *localStore) Peers() []string {
	ents, err := os.ReadDir(s.base)
	if err != nil {
		return nil
	}
	var peers []string
	for _, e := range ents {
		if e.IsDir() {
			peers = append(peers, e.Name())
		}
	}
	return peers
}

func (s *localStore) Watch(fn func(peer, dir string)) {
	s.mu.Lock()
	s.watchers = append(s.watchers, fn)
	s.mu.Unlock()
}

func (s *localStore) Stat(ctx context.Context, peer, path string) (fs.FileInfo, error) {
	s.stats.Add(1)
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	if ch := s.stall.Load(); ch != nil && filepath.Base(p) == "slow" {
		s.stalled.Add(1)
		select {
		case <-*ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.lstat(p)
}

// lstat is os.Lstat with the Store's Stat in Sys, as a peer in
// whole-filesystem mode gives it.
func (s *localStore) lstat(p string) (fs.FileInfo, error) {
	info, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	return s.withStat(info), nil
}

// localInfo is an os.FileInfo whose Sys is the Store's Stat.
type localInfo struct {
	fs.FileInfo
	st *Stat
}

func (i localInfo) Sys() any { return i.st }

func (s *localStore) withStat(info fs.FileInfo) fs.FileInfo {
	sys, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return info
	}
	return localInfo{info, &Stat{
		Ino: sys.Ino, Nlink: uint32(sys.Nlink), Owners: s.owners.Load(), Uid: sys.Uid, Gid: sys.Gid,
		Atime: time.Unix(sys.Atim.Unix()), Ctime: time.Unix(sys.Ctim.Unix()), Blocks: sys.Blocks,
		Major: uint32((sys.Rdev >> 8) & 0xfff), Minor: uint32(sys.Rdev&0xff | (sys.Rdev>>12)&0xfff00),
	}}
}

func (s *localStore) List(ctx context.Context, peer, dir string) ([]fs.FileInfo, error) {
	s.lists.Add(1)
	p, err := s.full(peer, dir)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	infos := make([]fs.FileInfo, 0, len(ents))
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		infos = append(infos, s.withStat(info))
	}
	return infos, nil
}

func (s *localStore) Mkdir(ctx context.Context, peer, path string, mode fs.FileMode) (fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	if err := syscall.Mkdir(p, unixMode(mode)); err != nil {
		return nil, err
	}
	s.record("chmod")
	if err := syscall.Chmod(p, unixMode(mode)); err != nil {
		return nil, err
	}
	return s.lstat(p)
}

func (s *localStore) Remove(ctx context.Context, peer, path string) error {
	p, err := s.full(peer, path)
	if err != nil {
		return err
	}
	return syscall.Unlink(p)
}

func (s *localStore) Rmdir(ctx context.Context, peer, path string) error {
	p, err := s.full(peer, path)
	if err != nil {
		return err
	}
	return syscall.Rmdir(p)
}

func (s *localStore) Rename(ctx context.Context, peer, from, to string) error {
	pf, err := s.full(peer, from)
	if err != nil {
		return err
	}
	pt, err := s.full(peer, to)
	if err != nil {
		return err
	}
	return os.Rename(pf, pt)
}

func (s *localStore) Truncate(ctx context.Context, peer, path string, size int64) (fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	s.record("truncate")
	if err := os.Truncate(p, size); err != nil {
		return nil, err
	}
	return s.lstat(p)
}

func (s *localStore) Chmod(ctx context.Context, peer, path string, mode fs.FileMode) (fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	s.record("chmod")
	if err := syscall.Chmod(p, unixMode(mode)); err != nil {
		return nil, err
	}
	return s.lstat(p)
}

// unixMode is mode's 07777 bits as chmod(2) takes them.
func unixMode(mode fs.FileMode) uint32 {
	m := uint32(mode.Perm())
	for _, b := range []struct {
		fs   fs.FileMode
		unix uint32
	}{{fs.ModeSetuid, syscall.S_ISUID}, {fs.ModeSetgid, syscall.S_ISGID}, {fs.ModeSticky, syscall.S_ISVTX}} {
		if mode&b.fs != 0 {
			m |= b.unix
		}
	}
	return m
}

func (s *localStore) Chown(ctx context.Context, peer, path string, uid, gid int) (fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	if !s.owners.Load() {
		return nil, fmt.Errorf("localstore: chown %s: %w", path, ErrNotPermitted)
	}
	if err := os.Lchown(p, uid, gid); err != nil {
		return nil, err
	}
	return s.lstat(p)
}

func (s *localStore) Chtimes(ctx context.Context, peer, path string, atime, mtime TimeChange) (fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	ts := []unix.Timespec{timespec(atime), timespec(mtime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "utimensat", Path: p, Err: err}
	}
	return s.lstat(p)
}

// timespec is c as utimensat(2) takes it.
func timespec(c TimeChange) unix.Timespec {
	switch {
	case !c.Set:
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	case c.Now:
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	}
	return unix.NsecToTimespec(c.T.UnixNano())
}

func (s *localStore) Symlink(ctx context.Context, peer, path, target string) (fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	if err := os.Symlink(target, p); err != nil {
		return nil, err
	}
	return s.lstat(p)
}

func (s *localStore) Readlink(ctx context.Context, peer, path string) (string, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return "", err
	}
	return os.Readlink(p)
}

func (s *localStore) Link(ctx context.Context, peer, oldPath, newPath string) (fs.FileInfo, error) {
	po, err := s.full(peer, oldPath)
	if err != nil {
		return nil, err
	}
	pn, err := s.full(peer, newPath)
	if err != nil {
		return nil, err
	}
	if err := os.Link(po, pn); err != nil {
		return nil, err
	}
	return s.lstat(pn)
}

func (s *localStore) Mknod(ctx context.Context, peer, path string, mode fs.FileMode, major, minor uint32) (fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return nil, err
	}
	var typ uint32
	switch mode.Type() {
	case fs.ModeNamedPipe:
		typ = syscall.S_IFIFO
	case fs.ModeSocket:
		typ = syscall.S_IFSOCK
	case fs.ModeDevice | fs.ModeCharDevice:
		typ = syscall.S_IFCHR
	case fs.ModeDevice:
		typ = syscall.S_IFBLK
	default:
		return nil, fmt.Errorf("localstore: mknod %s of mode %v: %w", path, mode, fs.ErrInvalid)
	}
	if err := unix.Mknod(p, typ|unixMode(mode), int(unix.Mkdev(major, minor))); err != nil {
		return nil, &fs.PathError{Op: "mknod", Path: p, Err: err}
	}
	s.record("chmod")
	if err := syscall.Chmod(p, unixMode(mode)); err != nil {
		return nil, err
	}
	return s.lstat(p)
}

func (s *localStore) Statfs(ctx context.Context, peer string) (total, free, avail uint64, err error) {
	p, err := s.full(peer, "")
	if err != nil {
		return 0, 0, 0, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return 0, 0, 0, err
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bfree * bs, st.Bavail * bs, nil
}

func (s *localStore) Sync(ctx context.Context) error { return nil }

func (s *localStore) Open(ctx context.Context, peer, path string, flags int, mode fs.FileMode) (uint64, fs.FileInfo, error) {
	p, err := s.full(peer, path)
	if err != nil {
		return 0, nil, err
	}
	if flags&os.O_TRUNC != 0 {
		s.record("truncate") // open(O_TRUNC) truncates
	}
	// The kernel supplies append offsets; os.File refuses WriteAt with
	// O_APPEND.
	f, err := os.OpenFile(p, flags&^os.O_APPEND, mode)
	if err != nil {
		return 0, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, nil, err
	}
	info = s.withStat(info)
	if info.IsDir() {
		f.Close()
		return 0, nil, syscall.EISDIR
	}
	s.mu.Lock()
	s.next++
	fh := s.next
	s.files[fh] = f
	s.mu.Unlock()
	return fh, info, nil
}

func (s *localStore) file(fh uint64) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[fh]
	if !ok {
		return nil, syscall.EBADF
	}
	return f, nil
}

func (s *localStore) ReadAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	f, err := s.file(fh)
	if err != nil {
		return 0, err
	}
	return f.ReadAt(p, off)
}

func (s *localStore) WriteAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	f, err := s.file(fh)
	if err != nil {
		return 0, err
	}
	return f.WriteAt(p, off)
}

func (s *localStore) Flush(ctx context.Context, fh uint64) error {
	s.flushes.Add(1)
	if _, err := s.file(fh); err != nil {
		return err
	}
	if s.failFlush.Load() {
		return fmt.Errorf("localstore: flush %d: %w", fh, errUpload)
	}
	return nil
}

func (s *localStore) Fsync(ctx context.Context, fh uint64) error {
	f, err := s.file(fh)
	if err != nil {
		return err
	}
	return f.Sync()
}

func (s *localStore) StatHandle(ctx context.Context, fh uint64) (fs.FileInfo, error) {
	f, err := s.file(fh)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return s.withStat(info), nil
}

func (s *localStore) TruncateHandle(ctx context.Context, fh uint64, size int64) (fs.FileInfo, error) {
	f, err := s.file(fh)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	return s.StatHandle(ctx, fh)
}

func (s *localStore) Release(fh uint64) error {
	s.mu.Lock()
	f, ok := s.files[fh]
	delete(s.files, fh)
	s.mu.Unlock()
	if !ok {
		return syscall.EBADF
	}
	return f.Close()
}

// open reports how many handles are open (all must be released).
func (s *localStore) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}
