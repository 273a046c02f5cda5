package fusefs

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"bazil.org/fuse"
)

// nameGuard is a localStore that fails the test when a name over
// maxNameLen reaches it: such names must be refused at the FUSE edge,
// before anything is cached or sent.
type nameGuard struct {
	*localStore
	t *testing.T
}

func (g nameGuard) check(paths ...string) {
	for _, p := range paths {
		for _, elem := range strings.Split(p, "/") {
			if len(elem) > maxNameLen {
				g.t.Errorf("a name of %d bytes reached the Store", len(elem))
			}
		}
	}
}

func (g nameGuard) Stat(ctx context.Context, peer, path string) (fs.FileInfo, error) {
	g.check(path)
	return g.localStore.Stat(ctx, peer, path)
}

func (g nameGuard) Mkdir(ctx context.Context, peer, path string, mode fs.FileMode) (fs.FileInfo, error) {
	g.check(path)
	return g.localStore.Mkdir(ctx, peer, path, mode)
}

func (g nameGuard) Remove(ctx context.Context, peer, path string) error {
	g.check(path)
	return g.localStore.Remove(ctx, peer, path)
}

func (g nameGuard) Rmdir(ctx context.Context, peer, path string) error {
	g.check(path)
	return g.localStore.Rmdir(ctx, peer, path)
}

func (g nameGuard) Rename(ctx context.Context, peer, from, to string) error {
	g.check(from, to)
	return g.localStore.Rename(ctx, peer, from, to)
}

func (g nameGuard) Open(ctx context.Context, peer, path string, flags int, mode fs.FileMode) (uint64, fs.FileInfo, error) {
	g.check(path)
	return g.localStore.Open(ctx, peer, path, flags, mode)
}

// TestNamesTooLong: every operation that takes a name refuses one over
// 255 bytes with ENAMETOOLONG without asking the Store (a peer would
// accept the create and refuse the upload at close); 255 bytes are fine.
func TestNamesTooLong(t *testing.T) {
	store := newLocalStore(t.TempDir(), "bob")
	f := newFilesys(nameGuard{store, t}, Options{}, testLogger(t))
	ctx := context.Background()
	bob := mustLookup(t, f.root, "bob").(*dir)
	long := strings.Repeat("n", maxNameLen+1)
	writeFile(t, filepath.Join(store.base, "bob", "a"), "a")
	a := mustLookup(t, bob, "a")

	_, err := lookup(t, bob, long)
	wantErrno(t, "lookup", err, syscall.ENAMETOOLONG)
	_, err = lookup(t, f.root, long)
	wantErrno(t, "lookup in the root", err, syscall.ENAMETOOLONG)
	_, _, err = bob.Create(ctx, &fuse.CreateRequest{Name: long, Mode: 0o644}, &fuse.CreateResponse{})
	wantErrno(t, "create", err, syscall.ENAMETOOLONG)
	_, err = bob.Mkdir(ctx, &fuse.MkdirRequest{Name: long, Mode: 0o755})
	wantErrno(t, "mkdir", err, syscall.ENAMETOOLONG)
	wantErrno(t, "rename to", bob.Rename(ctx, &fuse.RenameRequest{OldName: "a", NewName: long}, bob), syscall.ENAMETOOLONG)
	wantErrno(t, "rename from", bob.Rename(ctx, &fuse.RenameRequest{OldName: long, NewName: "b"}, bob), syscall.ENAMETOOLONG)
	wantErrno(t, "unlink", bob.Remove(ctx, &fuse.RemoveRequest{Name: long}), syscall.ENAMETOOLONG)
	wantErrno(t, "rmdir", bob.Remove(ctx, &fuse.RemoveRequest{Name: long, Dir: true}), syscall.ENAMETOOLONG)
	_, err = bob.Link(ctx, &fuse.LinkRequest{NewName: long}, a)
	wantErrno(t, "link", err, syscall.ENAMETOOLONG)
	_, err = bob.Symlink(ctx, &fuse.SymlinkRequest{NewName: long, Target: "a"})
	wantErrno(t, "symlink", err, syscall.ENAMETOOLONG)
	_, err = bob.Mknod(ctx, &fuse.MknodRequest{Name: long, Mode: 0o644})
	wantErrno(t, "mknod", err, syscall.ENAMETOOLONG)
	_, err = f.root.Mkdir(ctx, &fuse.MkdirRequest{Name: long})
	wantErrno(t, "mkdir in the root", err, syscall.ENAMETOOLONG)

	// 255 bytes is a name like any other.
	ok := strings.Repeat("o", maxNameLen)
	n, h, err := bob.Create(ctx, &fuse.CreateRequest{Name: ok, Mode: 0o644}, &fuse.CreateResponse{})
	if err != nil {
		t.Fatalf("create of a %d-byte name: %v", maxNameLen, err)
	}
	if err := h.(*handle).Flush(ctx, &fuse.FlushRequest{}); err != nil {
		t.Errorf("close: %v", err)
	}
	_ = h.(*handle).Release(ctx, &fuse.ReleaseRequest{})
	if got := mustLookup(t, bob, ok); got != n {
		t.Errorf("lookup of the %d-byte name gave another node", maxNameLen)
	}
	if err := bob.Rename(ctx, &fuse.RenameRequest{OldName: ok, NewName: "short"}, bob); err != nil {
		t.Errorf("rename of the %d-byte name: %v", maxNameLen, err)
	}
}
