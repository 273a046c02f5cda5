package peer_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// serve starts an export server on 127.0.0.1:0 for opts (Export defaults
// to a fresh temporary directory) and stops it when the test ends.
func serve(t *testing.T, opts export.Options) (dir, addr string) {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	if opts.Export == "" {
		opts.Export = t.TempDir()
	}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	s, err := export.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
		goleak.VerifyNone(t, leaks)
	})
	return opts.Export, ln.Addr().String()
}

func dial(t *testing.T, addr string, opts peer.ClientOptions) *peer.Conn {
	t.Helper()
	c, err := peer.Dial(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConnPosix: a Conn asks for whole-filesystem mode when told, and
// says what the peer granted.
func TestConnPosix(t *testing.T) {
	_, addr := serve(t, export.Options{})
	_, addrAll := serve(t, export.Options{Owners: true, AllowDevices: true})
	for _, tc := range []struct {
		addr                   string
		opts                   peer.ClientOptions
		posix, owners, devices bool
	}{
		{addr, peer.ClientOptions{}, false, false, false},
		{addr, peer.ClientOptions{Attrs: true}, false, false, false},
		{addr, peer.ClientOptions{Posix: true}, true, false, false},
		{addrAll, peer.ClientOptions{Posix: true}, true, true, true},
	} {
		c := dial(t, tc.addr, tc.opts)
		if c.Posix() != tc.posix || c.Owners() != tc.owners || c.Devices() != tc.devices {
			t.Errorf("%+v: Posix %v Owners %v Devices %v, want %v %v %v", tc.opts, c.Posix(), c.Owners(), c.Devices(), tc.posix, tc.owners, tc.devices)
		}
		if tc.opts.Posix && c.PeerID() == "" {
			t.Errorf("%+v: no peer ID", tc.opts)
		}
	}
}

// TestConnPosixToOlderPeer: a peer that knows attribute words but not
// posix answers as to attrs; the Conn says it is not in posix mode.
func TestConnPosixToOlderPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(nc, "CONNECT OK\n")
		buf := make([]byte, 128)
		n, err := nc.Read(buf)
		if err != nil {
			done <- err
			return
		}
		if got := string(buf[:n]); got != "FEATURES attrs posix\n" {
			done <- errors.New("client sent " + got)
			return
		}
		_, err = io.WriteString(nc, "FEATURES OK inline fsync-files attrs id=ab\n")
		done <- err
	}()
	c := dial(t, ln.Addr().String(), peer.ClientOptions{Posix: true})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.Posix() || c.PeerID() != "ab" {
		t.Errorf("Posix %v, PeerID %q", c.Posix(), c.PeerID())
	}
}

// TestConnPosixOps: each request of whole-filesystem mode through a Conn,
// and the refusals a caller tells apart with errors.Is and Errno.
func TestConnPosixOps(t *testing.T) {
	ctx := context.Background()
	dir, addr := serve(t, export.Options{Owners: true, AllowDevices: true})
	c := dial(t, addr, peer.ClientOptions{Posix: true})
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := c.Symlink(ctx, "l", "../elsewhere"); err != nil {
		t.Fatal(err)
	}
	if target, err := c.Readlink(ctx, "l"); err != nil || target != "../elsewhere" {
		t.Errorf("Readlink l = %q, %v", target, err)
	}
	if err := c.Symlink(ctx, "l", "x"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Symlink over l: %v, want fs.ErrExist", err)
	}
	if _, err := c.Readlink(ctx, "f"); !isErrno(err, syscall.EINVAL) {
		t.Errorf("Readlink f: %v, want EINVAL", err)
	}
	if _, err := c.Stat(ctx, "l/x"); !isErrno(err, syscall.ELOOP) {
		t.Errorf("Stat l/x: %v, want ELOOP", err)
	}

	if err := c.Link(ctx, "f", "g"); err != nil {
		t.Fatal(err)
	}
	f, err := c.Stat(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.Stat(ctx, "g")
	if err != nil || g.Ino != f.Ino || g.Nlink != 2 || f.Has&peerproto.AttrIno == 0 {
		t.Errorf("Stat g = %+v, %v; f %+v", g, err, f)
	}

	if err := c.Mknod(ctx, peerproto.Mknod{Name: "fifo", Type: peerproto.TypeFIFO, Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if err := c.Mknod(ctx, peerproto.Mknod{Name: "sock", Type: peerproto.TypeSocket, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := c.Mknod(ctx, peerproto.Mknod{Name: "null", Type: peerproto.TypeCharDevice, Mode: 0o666, Major: 1, Minor: 3}); err != nil {
			t.Fatal(err)
		}
	}

	e, err := c.Setattr(ctx, peerproto.Setattr{Name: "l", HasMtime: true, Mtime: 5e9, HasAtime: true, AtimeNow: true})
	if err != nil || e.Type != peerproto.TypeSymlink || e.Mtime != 5e9 || e.Target != "../elsewhere" {
		t.Errorf("Setattr l = %+v, %v", e, err)
	}
	if os.Geteuid() == 0 {
		if e, err := c.Setattr(ctx, peerproto.Setattr{Name: "fifo", HasUid: true, Uid: 4321, HasGid: true, Gid: 8765}); err != nil || e.Uid != 4321 || e.Gid != 8765 {
			t.Errorf("Setattr fifo owners = %+v, %v", e, err)
		}
	}

	entries, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]byte{}
	for _, e := range entries {
		types[e.Name] = e.Type
	}
	want := map[string]byte{"f": 'f', "g": 'f', "l": 'l', "fifo": 'p', "sock": 's'}
	if os.Geteuid() == 0 {
		want["null"] = 'c'
	}
	for name, typ := range want {
		if types[name] != typ {
			t.Errorf("List: %s is %q, want %q (%v)", name, types[name], typ, types)
		}
	}
	for _, name := range []string{"l", "fifo", "sock", "g"} {
		if err := c.Delete(ctx, name); err != nil {
			t.Errorf("Delete %s: %v", name, err)
		}
	}
}

// TestConnRefusedOwnersAndDevices: a peer without --owners or
// --allow-devices refuses them, as a permission error.
func TestConnRefusedOwnersAndDevices(t *testing.T) {
	ctx := context.Background()
	dir, addr := serve(t, export.Options{})
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, peer.ClientOptions{Posix: true})
	if _, err := c.Setattr(ctx, peerproto.Setattr{Name: "f", HasUid: true, Uid: 1}); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Setattr uid: %v, want fs.ErrPermission", err)
	}
	if err := c.Mknod(ctx, peerproto.Mknod{Name: "n", Type: peerproto.TypeBlockDevice, Mode: 0o600, Major: 8}); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Mknod b: %v, want fs.ErrPermission", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "n")); err == nil {
		t.Error("a device node was made")
	}
}

func isErrno(err error, want syscall.Errno) bool {
	var fe *peerproto.FailError
	return errors.As(err, &fe) && fe.Errno() == want
}

// WithStats: a request and the STATs behind it in one round trip, the
// STATs seeing what the request changed; a refusal of the request (or of
// a STAT) leaves the connection in step.
func TestConnWithStats(t *testing.T) {
	dir, addr := serve(t, export.Options{})
	if err := os.MkdirAll(filepath.Join(dir, "a", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, peer.ClientOptions{Posix: true})
	ctx := context.Background()
	before, err := c.Stat(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a later ctime on any clock
	reply, res, err := c.WithStats(ctx, peerproto.Rmdir{Name: "a/sub"}, "a", "", "a/sub")
	if err != nil {
		t.Fatalf("RMDIR with STATs: %v", err)
	}
	if ok, isOK := reply.(peerproto.OK); !isOK || ok.Of != peerproto.VerbRmdir {
		t.Errorf("reply %#v, want RMDIR OK", reply)
	}
	if len(res) != 3 || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("results %+v", res)
	}
	if a := res[0].Entry; a.Nlink != before.Nlink-1 || a.Ctime <= before.Ctime {
		t.Errorf("a after rmdir of a/sub: nlink %d ctime %d, was %d %d", a.Nlink, a.Ctime, before.Nlink, before.Ctime)
	}
	if !res[1].Entry.IsDir() {
		t.Errorf("the root: %+v", res[1].Entry)
	}
	if !errors.Is(res[2].Err, fs.ErrNotExist) {
		t.Errorf("STAT of the removed a/sub: %v, want not found", res[2].Err)
	}

	_, res, err = c.WithStats(ctx, peerproto.Delete{Name: "a/missing"}, "a/f")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DELETE of a missing file: %v, want not found", err)
	}
	if len(res) != 1 || res[0].Err != nil || res[0].Entry.Size != 1 {
		t.Errorf("the STAT behind a refused DELETE: %+v", res)
	}
	if _, err := c.Stat(ctx, "a/f"); err != nil {
		t.Errorf("the connection after: %v", err)
	}
}

// TestConnBatch: requests sent one behind the other are answered in
// order, each with its own outcome, in one exchange; the stream stays in
// step for the next request.
func TestConnBatch(t *testing.T) {
	dir, addr := serve(t, export.Options{})
	for _, name := range []string{"a", "b", "d/c"} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, addr, peer.ClientOptions{})
	ctx := context.Background()
	replies, errs, err := c.Batch(ctx, []peerproto.Message{
		peerproto.Delete{Name: "a"},
		peerproto.Delete{Name: "missing"},
		peerproto.Rmdir{Name: "d"}, // not empty yet
		peerproto.Delete{Name: "d/c"},
		peerproto.Rmdir{Name: "d"},
		peerproto.Delete{Name: "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 6 || len(replies) != 6 {
		t.Fatalf("%d outcomes and %d replies, want 6", len(errs), len(replies))
	}
	if replies[0] == nil || replies[1] != nil {
		t.Errorf("replies %v: want one for a success, none for a refusal", replies)
	}
	if errs[0] != nil || errs[3] != nil || errs[4] != nil || errs[5] != nil {
		t.Errorf("outcomes %v: want the deletes and the second RMDIR to succeed", errs)
	}
	if !errors.Is(errs[1], fs.ErrNotExist) {
		t.Errorf("DELETE of a missing name: %v, want not found", errs[1])
	}
	var fe *peerproto.FailError
	if !errors.As(errs[2], &fe) {
		t.Errorf("RMDIR of a full directory: %v, want a refusal", errs[2])
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("export holds %v after the batch", ents)
	}
	if err := c.Ping(ctx); err != nil {
		t.Errorf("the stream is out of step after a batch: %v", err)
	}
	if _, _, err := c.Batch(ctx, make([]peerproto.Message, peer.MaxBatch+1)); err == nil {
		t.Error("a batch over MaxBatch was sent")
	}
}
