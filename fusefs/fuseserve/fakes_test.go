package fuseserve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/rs/zerolog"
)

// Fake nodes and handles that record every call the server makes, for
// driving dispatch without a kernel. The tests call dispatch from one
// goroutine, so the recorder takes no lock.

// errFake is what every fake method fails with when recorder.fail is set.
var errFake = errors.New("fake failure")

// recorder keeps the calls made to the fakes, in order.
type recorder struct {
	calls []string
	fail  bool // every fake method that can fail does, with errFake
}

func (r *recorder) call(format string, args ...any) error {
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
	if r.fail {
		return errFake
	}
	return nil
}

// t0 is the server's start time in the tests: the default times of Attr.
func t0() time.Time { return time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC) }

// fakeFS is the FS: its root, Statfs and Destroy.
type fakeFS struct {
	rec  *recorder
	root bfs.Node
}

var (
	_ bfs.FS          = (*fakeFS)(nil)
	_ bfs.FSStatfser  = (*fakeFS)(nil)
	_ bfs.FSDestroyer = (*fakeFS)(nil)
)

func (f *fakeFS) Root() (bfs.Node, error) { return f.root, nil }

func (f *fakeFS) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	resp.Blocks = 100
	return f.rec.call("fs.Statfs")
}

func (f *fakeFS) Destroy() { f.rec.call("fs.Destroy") }

// fakeDir is a directory that implements every node interface the server
// calls, and is its own handle when opened (as bazil lets a node be).
type fakeDir struct {
	rec      *recorder
	name     string
	children map[string]bfs.Node
}

var (
	_ bfs.NodeRequestLookuper = (*fakeDir)(nil)
	_ bfs.NodeGetattrer       = (*fakeDir)(nil)
	_ bfs.NodeSetattrer       = (*fakeDir)(nil)
	_ bfs.NodeAccesser        = (*fakeDir)(nil)
	_ bfs.NodeCreater         = (*fakeDir)(nil)
	_ bfs.NodeMkdirer         = (*fakeDir)(nil)
	_ bfs.NodeSymlinker       = (*fakeDir)(nil)
	_ bfs.NodeMknoder         = (*fakeDir)(nil)
	_ bfs.NodeLinker          = (*fakeDir)(nil)
	_ bfs.NodeRemover         = (*fakeDir)(nil)
	_ bfs.NodeRenamer         = (*fakeDir)(nil)
	_ bfs.NodeFsyncer         = (*fakeDir)(nil)
	_ bfs.NodeGetxattrer      = (*fakeDir)(nil)
	_ bfs.NodeListxattrer     = (*fakeDir)(nil)
	_ bfs.NodeSetxattrer      = (*fakeDir)(nil)
	_ bfs.NodeRemovexattrer   = (*fakeDir)(nil)
	_ bfs.NodeForgetter       = (*fakeDir)(nil)
	_ bfs.HandleReadDirAller  = (*fakeDir)(nil)
	_ NodeReviver             = (*fakeDir)(nil)
	_ NodeStatfser            = (*fakeDir)(nil)
)

func newFakeDir(rec *recorder, name string, children ...bfs.Node) *fakeDir {
	d := &fakeDir{rec: rec, name: name, children: map[string]bfs.Node{}}
	for _, c := range children {
		d.children[fmt.Sprint(c)] = c
	}
	return d
}

func (d *fakeDir) String() string { return d.name }

// Attr sets no inode number: the server's default applies.
func (d *fakeDir) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeDir | 0o755
	return d.rec.call("%s.Attr", d.name)
}

func (d *fakeDir) Lookup(ctx context.Context, req *fuse.LookupRequest, resp *fuse.LookupResponse) (bfs.Node, error) {
	if err := d.rec.call("%s.Lookup %s", d.name, req.Name); err != nil {
		return nil, err
	}
	n, ok := d.children[req.Name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return n, nil
}

func (d *fakeDir) Getattr(ctx context.Context, req *fuse.GetattrRequest, resp *fuse.GetattrResponse) error {
	resp.Attr = fuse.Attr{Inode: 77, Size: 7, Mode: os.ModeDir | 0o700}
	return d.rec.call("%s.Getattr", d.name)
}

func (d *fakeDir) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	return d.rec.call("%s.Setattr size=%d", d.name, req.Size)
}

func (d *fakeDir) Access(ctx context.Context, req *fuse.AccessRequest) error {
	return d.rec.call("%s.Access %o", d.name, req.Mask)
}

func (d *fakeDir) Create(ctx context.Context, req *fuse.CreateRequest, resp *fuse.CreateResponse) (bfs.Node, bfs.Handle, error) {
	if err := d.rec.call("%s.Create %s", d.name, req.Name); err != nil {
		return nil, nil, err
	}
	f := &fakeFile{rec: d.rec, name: req.Name, inode: 50}
	if req.Name == "badattr" {
		f.attrErr = errFake
	}
	d.children[req.Name] = f
	return f, &fakeHandle{rec: d.rec, name: req.Name}, nil
}

func (d *fakeDir) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (bfs.Node, error) {
	if err := d.rec.call("%s.Mkdir %s", d.name, req.Name); err != nil {
		return nil, err
	}
	n := newFakeDir(d.rec, req.Name)
	d.children[req.Name] = n
	return n, nil
}

func (d *fakeDir) Symlink(ctx context.Context, req *fuse.SymlinkRequest) (bfs.Node, error) {
	if err := d.rec.call("%s.Symlink %s -> %s", d.name, req.NewName, req.Target); err != nil {
		return nil, err
	}
	n := &fakeFile{rec: d.rec, name: req.NewName, inode: 51}
	d.children[req.NewName] = n
	return n, nil
}

func (d *fakeDir) Mknod(ctx context.Context, req *fuse.MknodRequest) (bfs.Node, error) {
	if err := d.rec.call("%s.Mknod %s", d.name, req.Name); err != nil {
		return nil, err
	}
	n := &fakeFile{rec: d.rec, name: req.Name, inode: 52}
	d.children[req.Name] = n
	return n, nil
}

func (d *fakeDir) Link(ctx context.Context, req *fuse.LinkRequest, old bfs.Node) (bfs.Node, error) {
	if err := d.rec.call("%s.Link %s to %v", d.name, req.NewName, old); err != nil {
		return nil, err
	}
	d.children[req.NewName] = old
	return old, nil
}

func (d *fakeDir) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	return d.rec.call("%s.Remove %s dir=%v", d.name, req.Name, req.Dir)
}

func (d *fakeDir) Rename(ctx context.Context, req *fuse.RenameRequest, newDir bfs.Node) error {
	return d.rec.call("%s.Rename %s to %v/%s", d.name, req.OldName, newDir, req.NewName)
}

func (d *fakeDir) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	return d.rec.call("%s.Fsync", d.name)
}

func (d *fakeDir) Getxattr(ctx context.Context, req *fuse.GetxattrRequest, resp *fuse.GetxattrResponse) error {
	resp.Xattr = []byte("value")
	return d.rec.call("%s.Getxattr %s", d.name, req.Name)
}

func (d *fakeDir) Listxattr(ctx context.Context, req *fuse.ListxattrRequest, resp *fuse.ListxattrResponse) error {
	resp.Append("user.a", "user.b")
	return d.rec.call("%s.Listxattr", d.name)
}

func (d *fakeDir) Setxattr(ctx context.Context, req *fuse.SetxattrRequest) error {
	return d.rec.call("%s.Setxattr %s=%s", d.name, req.Name, req.Xattr)
}

func (d *fakeDir) Removexattr(ctx context.Context, req *fuse.RemovexattrRequest) error {
	return d.rec.call("%s.Removexattr %s", d.name, req.Name)
}

func (d *fakeDir) Forget() { d.rec.call("%s.Forget", d.name) }

func (d *fakeDir) Revive() { d.rec.call("%s.Revive", d.name) }

func (d *fakeDir) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	resp.Blocks = 1
	return d.rec.call("%s.Statfs", d.name)
}

// ReadDirAll lists one entry with an inode number and one without.
func (d *fakeDir) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	if err := d.rec.call("%s.ReadDirAll", d.name); err != nil {
		return nil, err
	}
	return []fuse.Dirent{
		{Inode: 9, Type: fuse.DT_File, Name: "nine"},
		{Type: fuse.DT_Dir, Name: "sub"},
	}, nil
}

// fakeFile is a file: it opens to a fakeHandle and reads as a symlink,
// and takes no Getattr or Setattr (the server's defaults apply).
type fakeFile struct {
	rec     *recorder
	name    string
	inode   uint64
	attrErr error // Attr's error
}

var (
	_ bfs.NodeOpener     = (*fakeFile)(nil)
	_ bfs.NodeReadlinker = (*fakeFile)(nil)
)

func (f *fakeFile) String() string { return f.name }

func (f *fakeFile) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Inode, a.Size, a.Mode = f.inode, 5, 0o644
	if err := f.rec.call("%s.Attr", f.name); err != nil {
		return err
	}
	return f.attrErr
}

func (f *fakeFile) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (bfs.Handle, error) {
	if err := f.rec.call("%s.Open", f.name); err != nil {
		return nil, err
	}
	resp.Flags = fuse.OpenDirectIO
	return &fakeHandle{rec: f.rec, name: f.name, quick: true}, nil
}

func (f *fakeFile) Readlink(ctx context.Context, req *fuse.ReadlinkRequest) (string, error) {
	if err := f.rec.call("%s.Readlink", f.name); err != nil {
		return "", err
	}
	return "target", nil
}

// fakeHandle is an open file holding "hello world".
type fakeHandle struct {
	rec   *recorder
	name  string
	quick bool // QuickFlush's answer
}

var (
	_ bfs.HandleReader   = (*fakeHandle)(nil)
	_ bfs.HandleWriter   = (*fakeHandle)(nil)
	_ bfs.HandleFlusher  = (*fakeHandle)(nil)
	_ bfs.HandleReleaser = (*fakeHandle)(nil)
	_ HandleQuickFlusher = (*fakeHandle)(nil)
)

func (h *fakeHandle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	if err := h.rec.call("%s.Read %d+%d", h.name, req.Offset, req.Size); err != nil {
		return err
	}
	data := "hello world"[min(req.Offset, 11):]
	resp.Data = resp.Data[:copy(resp.Data[:req.Size], data)]
	return nil
}

func (h *fakeHandle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	if err := h.rec.call("%s.Write %q at %d", h.name, req.Data, req.Offset); err != nil {
		return err
	}
	resp.Size = len(req.Data)
	return nil
}

func (h *fakeHandle) Flush(ctx context.Context, req *fuse.FlushRequest) error {
	return h.rec.call("%s.Flush", h.name)
}

func (h *fakeHandle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	return h.rec.call("%s.Release", h.name)
}

func (h *fakeHandle) QuickFlush() bool { return h.quick }

// bareNode implements bfs.Node only: every optional request about it
// finds the server's default or refusal.
type bareNode struct {
	rec  *recorder
	name string
}

func (b *bareNode) String() string { return b.name }

func (b *bareNode) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = 0o600
	return b.rec.call("%s.Attr", b.name)
}

// stringDir looks names up by string only.
type stringDir struct {
	bareNode
	child bfs.Node
}

var _ bfs.NodeStringLookuper = (*stringDir)(nil)

func (d *stringDir) Lookup(ctx context.Context, name string) (bfs.Node, error) {
	if err := d.rec.call("%s.Lookup %s", d.name, name); err != nil {
		return nil, err
	}
	return d.child, nil
}

// panicNode panics in Getattr.
type panicNode struct{ bareNode }

func (p *panicNode) Getattr(ctx context.Context, req *fuse.GetattrRequest, resp *fuse.GetattrResponse) error {
	panic("getattr exploded")
}

// The NodeIDs newTestServer gives out, in its order.
const (
	idDir fuse.NodeID = iota + 2
	idFile
	idBare
	idStrDir
	idPanic
	idNext // the next node a lookup makes known
)

// The HandleIDs newTestServer gives out, in its order.
const (
	hFile fuse.HandleID = iota + 1 // the open of idFile: a *fakeHandle
	hDir                           // the opendir of idDir: the *fakeDir itself
	hNext                          // the next handle an open gives out
)

// newTestServer returns a server with no connection over a root holding
// dir (with a child file "a"), file, bare, strdir (whose child is "s")
// and panic, all looked up once, and file and dir open, with the IDs
// above. The recorder starts empty.
func newTestServer(t *testing.T) (*Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	root := newFakeDir(rec, "root",
		newFakeDir(rec, "dir", &fakeFile{rec: rec, name: "a"}),
		&fakeFile{rec: rec, name: "file", inode: 42},
		&bareNode{rec: rec, name: "bare"},
		&stringDir{bareNode: bareNode{rec: rec, name: "strdir"}, child: &bareNode{rec: rec, name: "s"}},
		&panicNode{bareNode{rec: rec, name: "panic"}},
	)
	s, err := New(nil, &fakeFS{rec: rec, root: root}, Options{
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Errno:  func(error) fuse.Errno { return fuse.Errno(5) },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.start = t0()
	ctx := context.Background()
	for i, name := range []string{"dir", "file", "bare", "strdir", "panic"} {
		resp, err := s.dispatch(ctx, &fuse.LookupRequest{Header: fuse.Header{Node: rootID}, Name: name})
		if err != nil || resp.(*fuse.LookupResponse).Node != idDir+fuse.NodeID(i) {
			t.Fatalf("setup: lookup %s = %v, %v", name, resp, err)
		}
	}
	for i, id := range []fuse.NodeID{idFile, idDir} {
		resp, err := s.dispatch(ctx, &fuse.OpenRequest{Header: fuse.Header{Node: id}})
		if err != nil || resp.(*fuse.OpenResponse).Handle != hFile+fuse.HandleID(i) {
			t.Fatalf("setup: open %d = %v, %v", id, resp, err)
		}
	}
	rec.calls = nil
	return s, rec
}

// inodeOf is the inode number the server gives a node that sets none:
// that of its name in its parent.
func inodeOf(path ...string) uint64 {
	ino := uint64(1)
	for _, name := range path {
		ino = bfs.GenerateDynamicInode(ino, name)
	}
	return ino
}

// attr is an Attr as the server fills it: its defaults under what the
// node set.
func attr(inode, size uint64, mode os.FileMode) fuse.Attr {
	return fuse.Attr{Valid: defaultAttrValid, Inode: inode, Size: size, Mode: mode, Nlink: 1,
		Atime: t0(), Mtime: t0(), Ctime: t0()}
}

// dirAttr is the Attr of a fakeDir at path, fileAttr of a fakeFile.
func dirAttr(path ...string) fuse.Attr { return attr(inodeOf(path...), 0, os.ModeDir|0o755) }
func fileAttr(inode uint64) fuse.Attr  { return attr(inode, 5, 0o644) }
