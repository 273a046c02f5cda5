package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger logs through t at info level, or debug with PEERFS_FUSE_DEBUG=1.
func testLogger(t *testing.T) zerolog.Logger {
	level := zerolog.InfoLevel
	if os.Getenv("PEERFS_FUSE_DEBUG") != "" {
		level = zerolog.DebugLevel
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(level)
}

// newTestFS returns a filesys over a localStore with peers alice and bob,
// for driving nodes directly, restic style (no kernel involved).
func newTestFS(t *testing.T) (*filesys, *localStore) {
	t.Helper()
	store := newLocalStore(t.TempDir(), "alice", "bob")
	f := newFilesys(store, Options{}, testLogger(t))
	return f, store
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lookup(t *testing.T, parent bfs.NodeRequestLookuper, name string) (bfs.Node, error) {
	t.Helper()
	resp := &fuse.LookupResponse{}
	n, err := parent.Lookup(context.Background(), &fuse.LookupRequest{Name: name}, resp)
	if err == nil && resp.EntryValid != time.Second {
		t.Errorf("lookup %q: EntryValid = %v, want 1s", name, resp.EntryValid)
	}
	return n, err
}

func mustLookup(t *testing.T, parent bfs.NodeRequestLookuper, name string) bfs.Node {
	t.Helper()
	n, err := lookup(t, parent, name)
	if err != nil {
		t.Fatalf("lookup %q: %v", name, err)
	}
	return n
}

func attr(t *testing.T, n bfs.Node) fuse.Attr {
	t.Helper()
	var a fuse.Attr
	if err := n.Attr(context.Background(), &a); err != nil {
		t.Fatalf("attr: %v", err)
	}
	return a
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if err != fuse.Errno(want) {
		t.Errorf("%s: error %#v, want bare fuse.Errno(%v)", what, err, want)
	}
}

func TestToErrno(t *testing.T) {
	log := zerolog.Nop()
	for _, tc := range []struct {
		err  error
		want fuse.Errno
	}{
		{nil, 0},
		{context.Canceled, fuse.Errno(syscall.EINTR)},
		{fmt.Errorf("get: %w", context.Canceled), fuse.Errno(syscall.EINTR)},
		{syscall.ENOSPC, fuse.Errno(syscall.ENOSPC)},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.ENOTDIR}, fuse.Errno(syscall.ENOTDIR)},
		{fmt.Errorf("peer: %w", carrier{syscall.EROFS}), fuse.Errno(syscall.EROFS)},
		{fuse.Errno(syscall.EXDEV), fuse.Errno(syscall.EXDEV)},
		{fmt.Errorf("peer: get %q from bob: %w", "a", fs.ErrNotExist), fuse.Errno(syscall.ENOENT)},
		{fs.ErrExist, fuse.Errno(syscall.EEXIST)},
		{fs.ErrPermission, fuse.Errno(syscall.EACCES)},
		{os.ErrDeadlineExceeded, fuse.Errno(syscall.EIO)},
		{context.DeadlineExceeded, fuse.Errno(syscall.EIO)},
		{errors.New("something odd"), fuse.Errno(syscall.EIO)},
		// The request server's own answers.
		{fuseserve.ErrStale, fuse.Errno(syscall.ESTALE)},
		{fuseserve.ErrNotImplemented, fuse.Errno(syscall.ENOSYS)},
		{fuseserve.ErrNotInFlight, fuse.Errno(syscall.EAGAIN)},
		{fuseserve.ErrXattrTooLarge, fuse.Errno(syscall.ERANGE)},
		{fmt.Errorf("%w: boom", fuseserve.ErrPanic), fuse.Errno(syscall.EIO)},
		{&fuseserve.UnsupportedError{Op: "create"}, fuse.Errno(syscall.EPERM)},
		{&fuseserve.UnsupportedError{Op: "mkdir"}, fuse.Errno(syscall.EPERM)},
		{&fuseserve.UnsupportedError{Op: "getxattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "listxattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "setxattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "removexattr"}, fuse.Errno(syscall.ENOTSUP)},
		{&fuseserve.UnsupportedError{Op: "symlink"}, fuse.Errno(syscall.EIO)},
		{&fuseserve.UnsupportedError{Op: "remove"}, fuse.Errno(syscall.EIO)},
		{&fuseserve.UnsupportedError{Op: "read"}, fuse.Errno(syscall.EIO)},
	} {
		if got := toErrno(&log, tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %#v, want %#v", tc.err, got, tc.want)
		}
	}
	f, _ := newTestFS(t)
	if err := f.done("op", "peer", "path", nil); err != nil {
		t.Errorf("done(nil) = %#v, want nil", err)
	}
	if err := f.done("op", "peer", "path", fs.ErrNotExist); err != fuse.Errno(syscall.ENOENT) {
		t.Errorf("done(fs.ErrNotExist) = %#v, want ENOENT", err)
	}
}

// carrier is an error with an Errno method, as a Store may return.
type carrier struct{ errno syscall.Errno }

func (c carrier) Error() string        { return "carrier: " + c.errno.Error() }
func (c carrier) Errno() syscall.Errno { return c.errno }

func TestOpenFlags(t *testing.T) {
	for _, tc := range []struct {
		in   fuse.OpenFlags
		want int
	}{
		{fuse.OpenReadOnly, os.O_RDONLY},
		{fuse.OpenWriteOnly | fuse.OpenTruncate, os.O_WRONLY | os.O_TRUNC},
		{fuse.OpenReadWrite | fuse.OpenAppend, os.O_RDWR | os.O_APPEND},
		{fuse.OpenWriteOnly | fuse.OpenCreate | fuse.OpenExclusive, os.O_WRONLY | os.O_CREATE | os.O_EXCL},
		{fuse.OpenReadOnly | fuse.OpenNonblock | fuse.OpenDirectory, os.O_RDONLY},
	} {
		if got := openFlags(tc.in); got != tc.want {
			t.Errorf("openFlags(%v) = %#o, want %#o", tc.in, got, tc.want)
		}
	}
}

func TestRoot(t *testing.T) {
	f, _ := newTestFS(t)
	ctx := context.Background()
	a := attr(t, f.root)
	if a.Inode != 1 || !a.Mode.IsDir() {
		t.Errorf("root attr = %v", a)
	}
	ents, err := f.root.ReadDirAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 || ents[0].Name != "alice" || ents[1].Name != "bob" || ents[0].Type != fuse.DT_Dir {
		t.Fatalf("root entries = %v", ents)
	}
	alice := mustLookup(t, f.root, "alice")
	if got := attr(t, alice).Inode; got != ents[0].Inode {
		t.Errorf("alice inode %d from lookup, %d from readdir", got, ents[0].Inode)
	}
	if again := mustLookup(t, f.root, "alice"); again != alice {
		t.Error("second lookup of alice returned another node")
	}
	_, err = lookup(t, f.root, "carol")
	wantErrno(t, "lookup carol", err, syscall.ENOENT)
	_, err = f.root.Mkdir(ctx, &fuse.MkdirRequest{Name: "carol", Mode: 0o755})
	wantErrno(t, "mkdir in root", err, syscall.EACCES)
	_, _, err = f.root.Create(ctx, &fuse.CreateRequest{Name: "x", Mode: 0o644}, &fuse.CreateResponse{})
	wantErrno(t, "create in root", err, syscall.EACCES)
	wantErrno(t, "rmdir peer", f.root.Remove(ctx, &fuse.RemoveRequest{Name: "alice", Dir: true}), syscall.EACCES)
}

func TestLookupUsesListing(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	writeFile(t, filepath.Join(store.base, "alice", "a.txt"), "hello")
	writeFile(t, filepath.Join(store.base, "alice", "sub", "b.txt"), "bye")

	alice := mustLookup(t, f.root, "alice").(*dir)
	ents, err := alice.ReadDirAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		t.Fatalf("entries = %v", ents)
	}
	stats := store.stats.Load()
	a := mustLookup(t, alice, "a.txt")
	sub := mustLookup(t, alice, "sub")
	aa, sa := attr(t, a), attr(t, sub)
	if got := store.stats.Load() - stats; got != 0 {
		t.Errorf("%d Stat calls after ReadDirAll; want lookups and attrs answered by the listing", got)
	}
	if aa.Size != 5 || aa.Mode != 0o644 || !sa.Mode.IsDir() {
		t.Errorf("attrs: a.txt %v, sub %v", aa, sa)
	}
	for _, e := range ents {
		want := map[string]uint64{"a.txt": aa.Inode, "sub": sa.Inode}[e.Name]
		if e.Inode != want {
			t.Errorf("readdir inode of %s = %d, lookup says %d", e.Name, e.Inode, want)
		}
	}
	_, err = lookup(t, alice, "missing")
	wantErrno(t, "lookup missing (from listing)", err, syscall.ENOENT)

	// Once primed attributes are used, Attr asks the Store again.
	attr(t, a)
	if got := store.stats.Load() - stats; got != 1 {
		t.Errorf("%d Stat calls for a second Attr, want 1", got)
	}

	// The listing expires with the entry timeout.
	f.names.mu.Lock()
	l := f.names.listings[nodeKey{"alice", ""}]
	l.at = l.at.Add(-time.Hour)
	f.names.listings[nodeKey{"alice", ""}] = l
	f.names.mu.Unlock()
	stats = store.stats.Load()
	mustLookup(t, alice, "a.txt")
	if got := store.stats.Load() - stats; got != 1 {
		t.Errorf("%d Stat calls for a lookup after the listing expired, want 1", got)
	}
}

func TestCreateWriteReadFlush(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	alice := mustLookup(t, f.root, "alice").(*dir)
	n, h, err := alice.Create(ctx, &fuse.CreateRequest{Name: "new.txt", Flags: fuse.OpenReadWrite | fuse.OpenCreate, Mode: 0o600}, &fuse.CreateResponse{})
	if err != nil {
		t.Fatal(err)
	}
	if again := mustLookup(t, alice, "new.txt"); again != n {
		t.Error("lookup after create returned another node")
	}
	hd := h.(*handle)
	wresp := &fuse.WriteResponse{}
	if err := hd.Write(ctx, &fuse.WriteRequest{Data: []byte("hello world"), Offset: 0}, wresp); err != nil || wresp.Size != 11 {
		t.Fatalf("write: %d, %v", wresp.Size, err)
	}
	rresp := &fuse.ReadResponse{Data: make([]byte, 0, 64)}
	if err := hd.Read(ctx, &fuse.ReadRequest{Offset: 6, Size: 64}, rresp); err != nil || string(rresp.Data) != "world" {
		t.Fatalf("read: %q, %v", rresp.Data, err)
	}
	if err := hd.Flush(ctx, &fuse.FlushRequest{}); err != nil {
		t.Fatal(err)
	}
	// Setattr size goes to Truncate; the server then calls Attr, which is primed.
	fl := n.(*file)
	if err := fl.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrSize | fuse.SetattrHandle, Size: 5}, &fuse.SetattrResponse{}); err != nil {
		t.Fatal(err)
	}
	stats := store.stats.Load()
	if a := attr(t, fl); a.Size != 5 || a.Mode != 0o600 {
		t.Errorf("attr after truncate = %v", a)
	}
	if store.stats.Load() != stats {
		t.Error("Attr after Setattr called Stat")
	}
	if err := fl.Fsync(ctx, &fuse.FsyncRequest{}); err != nil {
		t.Fatal(err)
	}

	store.failFlush.Store(true)
	wantErrno(t, "flush with failing store", hd.Flush(ctx, &fuse.FlushRequest{}), syscall.EIO)
	store.failFlush.Store(false)

	if err := hd.Release(ctx, &fuse.ReleaseRequest{}); err != nil {
		t.Fatal(err)
	}
	if store.open() != 0 {
		t.Errorf("%d store handles still open", store.open())
	}
	got, err := os.ReadFile(filepath.Join(store.base, "alice", "new.txt"))
	if err != nil || string(got) != "hello" {
		t.Errorf("backing file = %q, %v", got, err)
	}
}

func TestRenameKeepsNodes(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	writeFile(t, filepath.Join(store.base, "alice", "d", "f.txt"), "data")
	writeFile(t, filepath.Join(store.base, "alice", "old"), "old")
	alice := mustLookup(t, f.root, "alice").(*dir)
	bob := mustLookup(t, f.root, "bob").(*dir)
	d := mustLookup(t, alice, "d").(*dir)
	fl := mustLookup(t, d, "f.txt").(*file)
	ino := attr(t, fl).Inode
	old := mustLookup(t, alice, "old").(*file)

	if err := alice.Rename(ctx, &fuse.RenameRequest{OldName: "d", NewName: "e"}, alice); err != nil {
		t.Fatal(err)
	}
	if fl.key().path != "e/f.txt" {
		t.Errorf("path of moved file = %q", fl.key().path)
	}
	if a := attr(t, fl); a.Inode != ino || a.Size != 4 {
		t.Errorf("moved file attr = %v, want inode %d", a, ino)
	}
	e := mustLookup(t, alice, "e").(*dir)
	if e != d || mustLookup(t, e, "f.txt") != fl {
		t.Error("lookup after rename returned other nodes")
	}

	// Rename over an existing file: the replaced node is unlinked.
	if err := e.Rename(ctx, &fuse.RenameRequest{OldName: "f.txt", NewName: "old"}, alice); err != nil {
		t.Fatal(err)
	}
	if !old.removed {
		t.Error("replaced node not marked removed")
	}
	if a := attr(t, old); a.Nlink != 0 || a.Size != 3 {
		t.Errorf("attr of replaced file = %v", a)
	}
	if got := mustLookup(t, alice, "old"); got != fl || attr(t, got).Inode != ino {
		t.Error("lookup of the new name did not find the moved node")
	}

	err := alice.Rename(ctx, &fuse.RenameRequest{OldName: "old", NewName: "x"}, bob)
	wantErrno(t, "rename across peers", err, syscall.EXDEV)
	err = alice.Rename(ctx, &fuse.RenameRequest{OldName: "old", NewName: "x"}, f.root)
	wantErrno(t, "rename into root", err, syscall.EACCES)
	_, err = alice.Link(ctx, &fuse.LinkRequest{NewName: "hard"}, fl)
	wantErrno(t, "link", err, syscall.EPERM)
	_, err = alice.Symlink(ctx, &fuse.SymlinkRequest{NewName: "sym", Target: "old"})
	wantErrno(t, "symlink", err, syscall.EPERM)
}

func TestRemoveAndMkdir(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	writeFile(t, filepath.Join(store.base, "bob", "f"), "x")
	bob := mustLookup(t, f.root, "bob").(*dir)
	fl := mustLookup(t, bob, "f")
	wantErrno(t, "rmdir of a file", bob.Remove(ctx, &fuse.RemoveRequest{Name: "f", Dir: true}), syscall.ENOTDIR)
	if err := bob.Remove(ctx, &fuse.RemoveRequest{Name: "f"}); err != nil {
		t.Fatal(err)
	}
	_, err := lookup(t, bob, "f")
	wantErrno(t, "lookup removed", err, syscall.ENOENT)

	// A directory made under the same name is a new node.
	d, err := bob.Mkdir(ctx, &fuse.MkdirRequest{Name: "f", Mode: 0o750})
	if err != nil {
		t.Fatal(err)
	}
	if d == fl {
		t.Error("mkdir reused the removed file's node")
	}
	if a := attr(t, d); !a.Mode.IsDir() || a.Mode.Perm() != 0o750 {
		t.Errorf("new dir attr = %v", a)
	}
	_, err = bob.Mkdir(ctx, &fuse.MkdirRequest{Name: "f", Mode: 0o750})
	wantErrno(t, "mkdir existing", err, syscall.EEXIST)
	wantErrno(t, "unlink of a dir", bob.Remove(ctx, &fuse.RemoveRequest{Name: "f"}), syscall.EISDIR)
	if err := bob.Remove(ctx, &fuse.RemoveRequest{Name: "f", Dir: true}); err != nil {
		t.Fatal(err)
	}
}

// A peer's folder, and what is in it, reports that peer's space; the
// root (the FS) the sum over all peers.
func TestStatfs(t *testing.T) {
	f, _ := newTestFS(t)
	ctx := context.Background()
	alice := mustLookup(t, f.root, "alice").(*dir)
	one := &fuse.StatfsResponse{}
	if err := alice.Statfs(ctx, &fuse.StatfsRequest{}, one); err != nil {
		t.Fatal(err)
	}
	all := &fuse.StatfsResponse{}
	if err := f.Statfs(ctx, &fuse.StatfsRequest{Header: fuse.Header{Node: 1}}, all); err != nil {
		t.Fatal(err)
	}
	if one.Blocks == 0 || all.Blocks != 2*one.Blocks {
		t.Errorf("statfs: alice %d blocks, root %d (both peers share a disk)", one.Blocks, all.Blocks)
	}
	if one.Namelen != maxNameLen {
		t.Errorf("statfs: name length %d, want %d", one.Namelen, maxNameLen)
	}
}

// A FORGET answered (by the goroutine the hand-off timer started) between
// a Lookup finding a node and the server giving it a NodeID must not
// leave the node out of the table that invalidations look in: the kernel
// knows it again. This is the node's half: Forget takes it out of the
// table, Revive puts it back unless a newer node took its name. The
// server's half (it calls Revive then, and hands out a new NodeID) is
// fuseserve's TestLookupAfterForgetRevives.
func TestReviveAfterForget(t *testing.T) {
	f, store := newTestFS(t)
	writeFile(t, filepath.Join(store.base, "alice", "f.txt"), "data")
	alice := mustLookup(t, f.root, "alice").(*dir)
	first := mustLookup(t, alice, "f.txt").(*file)
	// A slow Lookup finds the node; meanwhile the kernel's FORGET of it
	// is answered; then the server registers the Lookup's node again.
	found := mustLookup(t, alice, "f.txt").(*file)
	if found != first {
		t.Fatal("the second lookup made a new node; the test needs the same one")
	}
	inTable := func() *node {
		f.names.mu.Lock()
		defer f.names.mu.Unlock()
		return f.names.nodes[first.key()]
	}
	first.Forget()
	if inTable() != nil {
		t.Fatal("Forget left the node in the table; the test tests nothing")
	}
	found.Revive()
	if got := inTable(); got != first.node {
		t.Errorf("after Revive, the table holds %p for f.txt, want the node the kernel now knows (%p)", got, first.node)
	}

	// Forgotten again, and a lookup made a newer node of that name: a
	// late Revive of the old one leaves the newer in place.
	first.Forget()
	newer := mustLookup(t, alice, "f.txt").(*file)
	if newer == first {
		t.Fatal("lookup after Forget returned the forgotten node")
	}
	first.Revive()
	if got := inTable(); got != newer.node {
		t.Errorf("after a late Revive, the table holds %p, want the newer node %p", got, newer.node)
	}
}
