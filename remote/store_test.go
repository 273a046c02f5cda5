package remote

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

func TestPeersFromTracker(t *testing.T) {
	c := newCluster(t)
	if got := c.store.Peers(); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("Peers() = %q, want [bob] (itself left out)", got)
	}
	// Never "no such file": a descriptor in the folder of a peer that
	// left must not read as a deletion.
	if _, err := c.store.Stat(testCtx(t), "carol", ""); errnoOf(err) != syscall.EIO || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat on an unknown peer: %v, want EIO", err)
	}
}

func TestWriteFlushReadRoundTrip(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)

	fh := s.open(t, "bob", "hello.txt", os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o644)
	s.write(t, fh, "hello, ", 0)
	s.write(t, fh, "world", 7)
	buf := make([]byte, 64)
	n, err := s.ReadAt(ctx, fh, buf, 0)
	if err != nil || string(buf[:n]) != "hello, world" {
		t.Errorf("ReadAt of the local copy = %q, %v", buf[:n], err)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := c.bob.content(t, "hello.txt"); got != "hello, world" {
		t.Errorf("peer has %q after Flush", got)
	}
	s.release(t, fh)

	// A new reader fetches it from the peer.
	fh, fi, err := s.Open(ctx, "bob", "hello.txt", os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("Open for reading: %v", err)
	}
	if fi.Size() != 12 || fi.Mode().Perm() != 0o644 {
		t.Errorf("Open info: size %d mode %v", fi.Size(), fi.Mode())
	}
	n, err = s.ReadAt(ctx, fh, buf, 0)
	if err != nil || string(buf[:n]) != "hello, world" {
		t.Errorf("ReadAt from the peer = %q, %v", buf[:n], err)
	}
	n, err = s.ReadAt(ctx, fh, buf, 7)
	if err != nil || string(buf[:n]) != "world" {
		t.Errorf("ReadAt(7) = %q, %v", buf[:n], err)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Errorf("Flush of a reader: %v", err)
	}
	s.release(t, fh)
	if err := s.Release(fh); errnoOf(err) != syscall.EBADF {
		t.Errorf("second Release: %v, want EBADF", err)
	}
	if _, err := s.ReadAt(ctx, fh, buf, 0); errnoOf(err) != syscall.EBADF {
		t.Errorf("ReadAt of a released handle: %v, want EBADF", err)
	}
	s.noLeftovers(t)
}

func TestOpenErrors(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "f", []byte("x"), 0o644)
	if err := os.Mkdir(c.bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(ctx, "bob", "missing", os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing): %v, want ErrNotExist", err)
	}
	if _, _, err := s.Open(ctx, "bob", "f", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); errnoOf(err) != syscall.EEXIST {
		t.Errorf("Open(O_EXCL) of an existing file: %v, want EEXIST", err)
	}
	if _, _, err := s.Open(ctx, "bob", "d", os.O_WRONLY, 0); errnoOf(err) != syscall.EISDIR {
		t.Errorf("Open(dir, O_WRONLY): %v, want EISDIR", err)
	}
	fh := s.open(t, "bob", "f", os.O_RDONLY, 0)
	if _, err := s.WriteAt(ctx, fh, []byte("y"), 0); errnoOf(err) != syscall.EBADF {
		t.Errorf("WriteAt on a read-only handle: %v, want EBADF", err)
	}
	s.release(t, fh)
	s.noLeftovers(t)
}

func TestListShowsUnflushedFile(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "old.txt", []byte("old"), 0o644)
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"old.txt"}) {
		t.Fatalf("List = %q", got)
	}

	fh := s.open(t, "bob", "new.txt", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	s.write(t, fh, "abc", 0)
	list, err := s.List(ctx, "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(fi fs.FileInfo) bool { return fi.Name() == "new.txt" })
	if i < 0 {
		t.Fatalf("List of a directory with an unflushed new file: %v", list)
	}
	if fi := list[i]; fi.Size() != 3 || fi.Mode().Perm() != 0o600 || fi.IsDir() {
		t.Errorf("unflushed entry: size %d mode %v", fi.Size(), fi.Mode())
	}
	if fi, err := s.Stat(ctx, "bob", "new.txt"); err != nil || fi.Size() != 3 {
		t.Errorf("Stat of the unflushed file: %v, %v", fi, err)
	}
	if c.bob.exists(t, "new.txt") {
		t.Errorf("new.txt reached the peer before close()")
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"new.txt", "old.txt"}) {
		t.Errorf("List after close() = %q", got)
	}
	if got := c.bob.mode(t, "new.txt"); got != 0o600 {
		t.Errorf("peer's new.txt has mode %#o, want 0600", got)
	}
	s.noLeftovers(t)
}

func TestStatMissing(t *testing.T) {
	c := newCluster(t)
	_, err := c.store.Stat(testCtx(t), "bob", "nope")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing file: %v, want ErrNotExist", err)
	}
	fi, err := c.store.Stat(testCtx(t), "bob", "")
	if err != nil || !fi.IsDir() {
		t.Errorf("Stat of the export's root: %v, %v", fi, err)
	}
}

// An unreachable peer costs at most the client's timeout, and shows as EIO.
func TestStatUnreachablePeer(t *testing.T) {
	// A listener that never accepts: the connection is made by the
	// kernel, but no greeting ever comes.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	s := newStore(t, t.TempDir()) // DialTimeout 2s
	s.SetPeers([]peerproto.PeerAddr{{Name: "silent", Addr: silent.Addr().String()}, {Name: "gone", Addr: closedAddr}})
	for _, name := range []string{"silent", "gone"} {
		start := time.Now()
		_, err := s.Stat(testCtx(t), name, "f")
		took := time.Since(start)
		if errnoOf(err) != syscall.EIO {
			t.Errorf("Stat on %s peer: %v, want EIO", name, err)
		}
		if took > 4*time.Second {
			t.Errorf("Stat on %s peer took %v, want at most about the 2s dial timeout", name, took)
		}
	}
}

func TestNamespaceOpsReachThePeer(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)

	fi, err := s.Mkdir(ctx, "bob", "d", 0o750)
	if err != nil || !fi.IsDir() {
		t.Fatalf("Mkdir: %v, %v", fi, err)
	}
	if st, err := os.Stat(c.bob.path("d")); err != nil || !st.IsDir() || st.Mode().Perm() != 0o750 {
		t.Fatalf("peer's d: %v, %v", st, err)
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"d"}) {
		t.Errorf("List after Mkdir = %q", got)
	}
	if _, err := s.Mkdir(ctx, "bob", "d", 0o750); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Mkdir: %v, want ErrExist", err)
	}

	fh := s.open(t, "bob", "d/f", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh, "data", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)

	if err := s.Rename(ctx, "bob", "d/f", "d/g"); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if c.bob.exists(t, "d/f") || c.bob.content(t, "d/g") != "data" {
		t.Errorf("Rename did not reach the peer")
	}
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"g"}) {
		t.Errorf("List after Rename = %q", got)
	}

	err = s.Rmdir(ctx, "bob", "d")
	var fe *peerproto.FailError
	if !errors.As(err, &fe) || fe.Errno() != syscall.ENOTEMPTY {
		t.Errorf("Rmdir of a non-empty directory: %v, want ENOTEMPTY", err)
	}

	if err := s.Remove(ctx, "bob", "d/g"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if c.bob.exists(t, "d/g") {
		t.Errorf("Remove did not reach the peer")
	}
	if got := s.names(t, "bob", "d"); len(got) != 0 {
		t.Errorf("List after Remove = %q", got)
	}
	if err := s.Remove(ctx, "bob", "d/g"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove: %v, want ErrNotExist", err)
	}

	if err := s.Rmdir(ctx, "bob", "d"); err != nil {
		t.Fatalf("Rmdir: %v", err)
	}
	if c.bob.exists(t, "d") {
		t.Errorf("Rmdir did not reach the peer")
	}
	if got := s.names(t, "bob", ""); len(got) != 0 {
		t.Errorf("List after Rmdir = %q", got)
	}
	if _, err := s.Stat(ctx, "bob", "d"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after Rmdir: %v, want ErrNotExist", err)
	}
	s.noLeftovers(t)
}

func TestSetattrs(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "f", []byte("0123456789"), 0o644)

	// Not open here: applied on the peer at once.
	if fi, err := s.Truncate(ctx, "bob", "f", 4); err != nil || fi.Size() != 4 {
		t.Fatalf("Truncate: %v, %v", fi, err)
	}
	if got := c.bob.content(t, "f"); got != "0123" {
		t.Errorf("peer has %q after Truncate", got)
	}
	if _, err := s.Chmod(ctx, "bob", "f", 0o600); err != nil {
		t.Fatalf("Chmod: %v", err)
	}
	if got := c.bob.mode(t, "f"); got != 0o600 {
		t.Errorf("peer's mode %#o after Chmod", got)
	}
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := s.Chtimes(ctx, "bob", "f", mtime); err != nil {
		t.Fatalf("Chtimes: %v", err)
	}
	if st, err := os.Stat(c.bob.path("f")); err != nil || !st.ModTime().Equal(mtime) {
		t.Errorf("peer's mtime: %v, %v", st, err)
	}

	// Open for writing: applied to the local copy, and stored on close.
	fh := s.open(t, "bob", "f", os.O_RDWR, 0)
	if fi, err := s.Truncate(ctx, "bob", "f", 2); err != nil || fi.Size() != 2 {
		t.Fatalf("Truncate of an open file: %v, %v", fi, err)
	}
	mtime2 := mtime.Add(time.Hour)
	if _, err := s.Chtimes(ctx, "bob", "f", mtime2); err != nil {
		t.Fatal(err)
	}
	if got := c.bob.content(t, "f"); got != "0123" {
		t.Errorf("peer has %q before close()", got)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if got := c.bob.content(t, "f"); got != "01" {
		t.Errorf("peer has %q after close()", got)
	}
	if st, err := os.Stat(c.bob.path("f")); err != nil || !st.ModTime().Equal(mtime2) || st.Mode().Perm() != 0o600 {
		t.Errorf("peer's f after close(): %v, %v", st, err)
	}

	total, free, avail, err := s.Statfs(ctx, "bob")
	if err != nil || total == 0 || free > total || avail > total {
		t.Errorf("Statfs = %d %d %d, %v", total, free, avail, err)
	}
	s.noLeftovers(t)
}

// A large file is read by ranged GETs with read-ahead: a sequential
// reader gets the right bytes, the peer sends each byte about once, and a
// read at or across the end of file is a short count without error.
func TestReadAheadLargeFile(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	const size = 20 << 20
	data := make([]byte, size)
	rand.Read(data)
	c.bob.writeFile(t, "big", data, 0o644)

	before := c.bob.sent.Load()
	fh := s.open(t, "bob", "big", os.O_RDONLY, 0)
	buf := make([]byte, 128<<10)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n, err := s.ReadAt(ctx, fh, buf, off)
		if err != nil || n != len(buf) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
		if !bytes.Equal(buf, data[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d): wrong bytes", off)
		}
	}
	sent := c.bob.sent.Load() - before
	if sent < size || sent > size+size/10 {
		t.Errorf("reading %d bytes sequentially made the peer send %d", size, sent)
	}

	n, err := s.ReadAt(ctx, fh, buf, size)
	if n != 0 || err != nil {
		t.Errorf("ReadAt(EOF) = %d, %v; want 0, nil", n, err)
	}
	n, err = s.ReadAt(ctx, fh, buf, size-1000)
	if n != 1000 || err != nil || !bytes.Equal(buf[:n], data[size-1000:]) {
		t.Errorf("ReadAt across EOF = %d, %v; want 1000, nil", n, err)
	}
	// A random read far back is served correctly too.
	n, err = s.ReadAt(ctx, fh, buf[:4096], 12345)
	if n != 4096 || err != nil || !bytes.Equal(buf[:n], data[12345:12345+4096]) {
		t.Errorf("random ReadAt = %d, %v", n, err)
	}
	s.release(t, fh)
	s.noLeftovers(t)
}

// An upload made while another peer holds the write token waits for this
// peer's turn: during the round the peer still has the old content.
func TestUploadHeldDuringRound(t *testing.T) {
	c := newCluster(t)
	s := c.store
	c.bob.writeFile(t, "f", []byte("old"), 0o644)
	fh := s.open(t, "bob", "f", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, fh, "new", 0)

	endRound := c.holdRound(t)
	done := s.flushAsync(t, fh)
	waitHeld(t)
	if got := c.bob.content(t, "f"); got != "old" {
		t.Errorf("peer has %q during another peer's turn", got)
	}
	endRound()
	if err := testutil.Recv(t, "close()", done); err != nil {
		t.Errorf("close(): %v", err)
	}
	s.release(t, fh)
	if got := c.bob.content(t, "f"); got != "new" {
		t.Errorf("peer has %q after the round", got)
	}
	s.noLeftovers(t)
}

// Fsync runs a SYNC round through the tracker; the store's turn stores
// every local change, of every open file.
func TestFsyncRunsRound(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	fh1 := s.open(t, "bob", "a", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh1, "aaa", 0)
	fh2 := s.open(t, "bob", "b", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh2, "bbb", 0)

	last := c.meTC.State().LastRound
	if err := s.Fsync(ctx, fh1); err != nil {
		t.Fatalf("Fsync: %v", err)
	}
	if got := c.bob.content(t, "a") + c.bob.content(t, "b"); got != "aaabbb" {
		t.Errorf("after Fsync the peer has %q", got)
	}
	testutil.Eventually(t, "the round to end", func() bool { return c.meTC.State().LastRound > last })
	for _, fh := range []uint64{fh1, fh2} {
		if err := s.Flush(ctx, fh); err != nil {
			t.Error(err)
		}
		s.release(t, fh)
	}
	s.noLeftovers(t)
}

// Without a tracker, Sync uploads directly.
func TestSyncWithoutTracker(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	fh := s.open(t, "bob", "a", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh, "aaa", 0)
	if err := s.Fsync(testCtx(t), fh); err != nil {
		t.Fatalf("Fsync: %v", err)
	}
	if got := bob.content(t, "a"); got != "aaa" {
		t.Errorf("after Fsync the peer has %q", got)
	}
	s.release(t, fh)
	s.noLeftovers(t)
}

// Writes to a file whose directory was renamed while it was open, not yet
// uploaded when the mount stopped, go to the new name on the next start.
func TestRestartAfterDirRenameWhileOpen(t *testing.T) {
	ctx := testCtx(t)
	export, cacheDir := t.TempDir(), t.TempDir()
	bob := startPeer(t, export)
	s1 := newStore(t, cacheDir)
	s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if _, err := s1.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	fh := s1.open(t, "bob", "d/f", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	s1.write(t, fh, "one ", 0)
	if err := s1.Rename(ctx, "bob", "d", "e"); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	s1.write(t, fh, "two", 4)
	s1.close() // the mount stops with the file open and dirty

	s2 := newStore(t, cacheDir)
	s2.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	testutil.Eventually(t, "the pending file to be uploaded", func() bool { f, _ := s2.PendingInfo(); return f == 0 })
	if got := bob.content(t, "e/f"); got != "one two" {
		t.Errorf("peer's e/f = %q, want %q", got, "one two")
	}
	if got := bob.mode(t, "e/f"); got != 0o600 {
		t.Errorf("peer's e/f has mode %#o, want 0600", got)
	}
	if bob.exists(t, "d") {
		t.Errorf("the old directory is back on the peer")
	}
	s2.noLeftovers(t)
}
