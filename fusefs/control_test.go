package fusefs

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// controlStore is a localStore that is also a Controller, a FileStater
// and a PeerStater.
type controlStore struct {
	*localStore
	syncs   int
	syncErr error
}

func (s *controlStore) StatusText() []byte { return []byte("all is well\n") }

func (s *controlStore) Sync(ctx context.Context) error {
	s.syncs++
	return s.syncErr
}

func (s *controlStore) FileState(peer, path string) (string, error) {
	return "stored round=3", nil
}

func (s *controlStore) PeerState(peer string) (string, error) {
	return "down since=2026-05-01T10:00:00Z addr=10.0.0.9:7071 tracker=unlisted", nil
}

func TestControlFolder(t *testing.T) {
	ctx := context.Background()
	plain, _ := newTestFS(t)
	if _, err := lookup(t, plain.root, ControlDir); !errors.Is(err, fuse.Errno(syscall.ENOENT)) {
		t.Fatalf("lookup .peerfs without a Controller: %v", err)
	}

	cs := &controlStore{localStore: newLocalStore(t.TempDir(), "alice")}
	f := newFilesys(cs, Options{}, testLogger(t))
	ents, err := f.root.ReadDirAll(ctx)
	if err != nil || len(ents) != 4 || ents[0].Name != "." || ents[1].Name != ".." || ents[3].Name != ControlDir {
		t.Fatalf("root listing = %v, %v", ents, err)
	}
	n, err := lookup(t, f.root, ControlDir)
	if err != nil {
		t.Fatal(err)
	}
	d := n.(*controlDir)
	if again, _ := lookup(t, f.root, ControlDir); again != n {
		t.Error("a second lookup gave another node")
	}
	st, err := d.Lookup(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	var a fuse.Attr
	if err := st.Attr(ctx, &a); err != nil || a.Mode != 0o444 || a.Size != uint64(len("all is well\n")) {
		t.Fatalf("status attr = %v %v", a, err)
	}
	resp := &fuse.OpenResponse{}
	h, err := st.(bfs.NodeOpener).Open(ctx, &fuse.OpenRequest{Flags: fuse.OpenReadOnly}, resp)
	if err != nil || resp.Flags&fuse.OpenDirectIO == 0 {
		t.Fatalf("open status: %v %v", err, resp.Flags)
	}
	rr := &fuse.ReadResponse{}
	if err := h.(bfs.HandleReader).Read(ctx, &fuse.ReadRequest{Offset: 4, Size: 100}, rr); err != nil || string(rr.Data) != "is well\n" {
		t.Fatalf("read status = %q %v", rr.Data, err)
	}
	if _, err := st.(bfs.NodeOpener).Open(ctx, &fuse.OpenRequest{Flags: fuse.OpenWriteOnly}, &fuse.OpenResponse{}); err == nil {
		t.Error("status opened for writing")
	}

	sy, _ := d.Lookup(ctx, "sync")
	h, err = sy.(bfs.NodeOpener).Open(ctx, &fuse.OpenRequest{Flags: fuse.OpenWriteOnly}, &fuse.OpenResponse{})
	if err != nil {
		t.Fatal(err)
	}
	wr := &fuse.WriteResponse{}
	if err := h.(bfs.HandleWriter).Write(ctx, &fuse.WriteRequest{Data: []byte("1\n")}, wr); err != nil || wr.Size != 2 || cs.syncs != 1 {
		t.Fatalf("write sync: %v size %d syncs %d", err, wr.Size, cs.syncs)
	}
	cs.syncErr = syscall.EIO
	if err := h.(bfs.HandleWriter).Write(ctx, &fuse.WriteRequest{Data: []byte("1\n")}, wr); !errors.Is(err, fuse.Errno(syscall.EIO)) {
		t.Fatalf("write sync with a failing round: %v", err)
	}
	if _, err := d.Lookup(ctx, "other"); err == nil {
		t.Error("lookup of an unknown control file succeeded")
	}
}

func TestFileStateXattr(t *testing.T) {
	ctx := context.Background()
	cs := &controlStore{localStore: newLocalStore(t.TempDir(), "alice")}
	writeFile(t, cs.base+"/alice/f.txt", "x")
	f := newFilesys(cs, Options{}, testLogger(t))
	pn, err := lookup(t, f.root, "alice")
	if err != nil {
		t.Fatal(err)
	}
	n, err := lookup(t, pn.(*dir), "f.txt")
	if err != nil {
		t.Fatal(err)
	}
	fl := n.(*file)
	resp := &fuse.GetxattrResponse{}
	if err := fl.Getxattr(ctx, &fuse.GetxattrRequest{Name: StateXattr}, resp); err != nil || string(resp.Xattr) != "stored round=3" {
		t.Fatalf("getxattr = %q %v", resp.Xattr, err)
	}
	if err := fl.Getxattr(ctx, &fuse.GetxattrRequest{Name: "user.peerfs.other"}, resp); !errors.Is(err, fuse.ErrNoXattr) {
		t.Fatalf("getxattr of another name of ours: %v, want ENODATA", err)
	}
	for _, name := range []string{"user.other", "security.selinux", "system.posix_acl_access", "security.capability"} {
		err := fl.Getxattr(ctx, &fuse.GetxattrRequest{Name: name}, resp)
		if got := f.errno(err); got != fuse.Errno(syscall.ENOTSUP) {
			t.Fatalf("getxattr of %s: %v (%v), want ENOTSUP: ls -l would ask it of every entry", name, err, got)
		}
	}
	lr := &fuse.ListxattrResponse{}
	if err := fl.Listxattr(ctx, &fuse.ListxattrRequest{}, lr); err != nil || len(lr.Xattr) != 0 {
		t.Fatalf("listxattr = %q %v, want nothing: asked by name only, so that copies do not carry it", lr.Xattr, err)
	}
}

// TestPeerStateXattr: a peer's folder, and only it, has user.peerfs.peer.
func TestPeerStateXattr(t *testing.T) {
	ctx := context.Background()
	cs := &controlStore{localStore: newLocalStore(t.TempDir(), "alice")}
	if err := os.MkdirAll(cs.base+"/alice/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFilesys(cs, Options{}, testLogger(t))
	pn, err := lookup(t, f.root, "alice")
	if err != nil {
		t.Fatal(err)
	}
	d := pn.(*dir)
	resp := &fuse.GetxattrResponse{}
	if err := d.Getxattr(ctx, &fuse.GetxattrRequest{Name: PeerXattr}, resp); err != nil || !strings.HasPrefix(string(resp.Xattr), "down since=") {
		t.Fatalf("getxattr of the peer folder = %q %v", resp.Xattr, err)
	}
	lr := &fuse.ListxattrResponse{}
	if err := d.Listxattr(ctx, &fuse.ListxattrRequest{}, lr); err != nil || len(lr.Xattr) != 0 {
		t.Fatalf("listxattr of the peer folder = %q %v, want nothing: asked by name only", lr.Xattr, err)
	}
	sub, err := lookup(t, d, "sub")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.(*dir).Getxattr(ctx, &fuse.GetxattrRequest{Name: PeerXattr}, resp); !errors.Is(err, fuse.ErrNoXattr) {
		t.Fatalf("getxattr of a folder inside: %v", err)
	}
	lr = &fuse.ListxattrResponse{}
	if err := sub.(*dir).Listxattr(ctx, &fuse.ListxattrRequest{}, lr); err != nil || len(lr.Xattr) != 0 {
		t.Fatalf("listxattr of a folder inside = %q %v", lr.Xattr, err)
	}
}
