package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// Namespace operations see this mount's files that the peer does not know
// yet (created or written here, not uploaded): they answer as a local
// filesystem would, instead of succeeding on the peer and dropping the
// files' data later.

// TestRmdirSeesPendingFiles: rmdir of a directory holding a file created
// here is ENOTEMPTY, while it is open and after a read-only create's
// close (which uploads it).
func TestRmdirSeesPendingFiles(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "d/f", os.O_CREATE|os.O_RDONLY, 0o644)
	if err := s.Rmdir(ctx, "bob", "d"); errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("rmdir of a directory with a file created here: %v, want ENOTEMPTY", err)
	}
	if !c.bob.exists(t, "d") {
		t.Fatal("the directory is gone from the peer")
	}
	// The read-only create's close uploads it: it exists on the peer no
	// later than a written file would.
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("close of a read-only create: %v", err)
	}
	if !c.bob.exists(t, "d/f") {
		t.Error("a file created read-only is not on the peer after its close")
	}
	s.release(t, fh)
	if err := s.Rmdir(ctx, "bob", "d"); errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("rmdir after the close: %v, want ENOTEMPTY", err)
	}
	if err := s.Remove(ctx, "bob", "d/f"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rmdir(ctx, "bob", "d"); err != nil {
		t.Errorf("rmdir of the emptied directory: %v", err)
	}
	s.noLeftovers(t)
}

// TestRenameOverDirWithPendingFiles: renaming a directory over one that
// holds a file written here and not uploaded is ENOTEMPTY (a file over it
// EISDIR), and the file survives to be uploaded at its close.
func TestRenameOverDirWithPendingFiles(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	for _, d := range []string{"a", "b"} {
		if _, err := s.Mkdir(ctx, "bob", d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.bob.writeFile(t, "x", []byte("a file"), 0o644)
	fh := s.open(t, "bob", "b/f", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "kept", 0)
	if err := s.Rename(ctx, "bob", "a", "b"); errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("rename a over b holding a file written here: %v, want ENOTEMPTY", err)
	}
	if err := s.Rename(ctx, "bob", "x", "b"); errnoOf(err) != syscall.EISDIR {
		t.Errorf("rename of a file over b: %v, want EISDIR", err)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("close: %v", err)
	}
	s.release(t, fh)
	if got := c.bob.content(t, "b/f"); got != "kept" {
		t.Errorf("b/f on the peer: %q", got)
	}
	if !c.bob.exists(t, "a") {
		t.Error("a is gone")
	}
	s.noLeftovers(t)
}

// TestMkdirOverPendingFile: mkdir of a name a file created here holds is
// EEXIST, though the peer does not have the file yet.
func TestMkdirOverPendingFile(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	fh := s.open(t, "bob", "g", os.O_CREATE|os.O_WRONLY, 0o644)
	if _, err := s.Mkdir(ctx, "bob", "g", 0o755); errnoOf(err) != syscall.EEXIST {
		t.Errorf("mkdir over a file created here: %v, want EEXIST", err)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("close: %v", err)
	}
	s.release(t, fh)
	if fi, err := os.Stat(c.bob.path("g")); err != nil || fi.IsDir() {
		t.Errorf("g on the peer: %v, %v; want the file", fi, err)
	}
	s.noLeftovers(t)
}

// A file removed while its upload is held back by another peer's round
// does not reappear on the peer when the round lets the upload go (the
// upload used to decide before waiting, and PUT it afterwards).
func TestRemoveDuringHeldUpload(t *testing.T) {
	for _, existing := range []bool{false, true} {
		name := "new file"
		if existing {
			name = "rewritten file"
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			s, ctx := c.store, testCtx(t)
			if existing {
				c.bob.writeFile(t, "b.txt", []byte("old"), 0o644)
			}
			fh := s.open(t, "bob", "b.txt", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			s.write(t, fh, "secret", 0)

			endRound := c.holdRound(t)
			done := s.flushAsync(t, fh)
			waitHeld(t)
			if err := s.Remove(ctx, "bob", "b.txt"); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if c.bob.exists(t, "b.txt") {
				t.Fatal("b.txt is still on the peer after Remove")
			}
			endRound()
			if err := testutil.Recv(t, "close()", done); err != nil {
				t.Errorf("close() of the removed file: %v", err)
			}
			s.release(t, fh)
			if c.bob.exists(t, "b.txt") {
				t.Errorf("b.txt is back on the peer after a successful Remove")
			}
			if names := s.names(t, "bob", ""); len(names) != 0 {
				t.Errorf("List after Remove: %q, want nothing", names)
			}
			s.noLeftovers(t)
		})
	}
}

// Renaming a file over one that another handle has open for writing
// replaces it: that writer's later close does not upload its copy over the
// renamed file (as on a local filesystem, it wrote to the replaced file).
func TestRenameOverFileOpenForWriting(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "t.txt", []byte("old"), 0o644)

	fhA := s.open(t, "bob", "t.txt", os.O_RDWR, 0)
	s.write(t, fhA, "AAA", 0)
	fhB := s.open(t, "bob", "n.tmp", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fhB, "new", 0)
	if err := s.Flush(ctx, fhB); err != nil {
		t.Fatalf("close(n.tmp): %v", err)
	}
	s.release(t, fhB)
	if err := s.Rename(ctx, "bob", "n.tmp", "t.txt"); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if got := c.bob.content(t, "t.txt"); got != "new" {
		t.Fatalf("after Rename the peer has %q, want %q", got, "new")
	}
	if err := s.Flush(ctx, fhA); err != nil {
		t.Errorf("close() of the replaced file: %v", err)
	}
	s.release(t, fhA)
	if got := c.bob.content(t, "t.txt"); got != "new" {
		t.Errorf("t.txt is %q after the rename and the old writer's close, want %q", got, "new")
	}
	if c.bob.exists(t, "n.tmp") {
		t.Errorf("n.tmp still exists on the peer")
	}
	fi, err := s.Stat(ctx, "bob", "t.txt")
	if err != nil || fi.Size() != 3 {
		t.Errorf("Stat(t.txt) = %v, %v", fi, err)
	}
	s.noLeftovers(t)
}

// Writing to a file renamed while open lands in the renamed file; nothing
// is left under the old name.
func TestRenameWhileOpenForWriting(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)

	fh := s.open(t, "bob", "tmp1", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o640)
	s.write(t, fh, "part1 ", 0)
	if err := s.Rename(ctx, "bob", "tmp1", "final1"); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	s.write(t, fh, "part2", 6)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("close(): %v", err)
	}
	s.release(t, fh)
	if got := c.bob.content(t, "final1"); got != "part1 part2" {
		t.Errorf("final1 = %q, want %q", got, "part1 part2")
	}
	if got := c.bob.mode(t, "final1"); got != 0o640 {
		t.Errorf("final1 has mode %#o, want 0640", got)
	}
	if c.bob.exists(t, "tmp1") {
		t.Errorf("tmp1 is back on the peer")
	}
	s.noLeftovers(t)
}

// Directory operations are not held during a round (docs/CONSISTENCY.md):
// renaming a file with unflushed writes returns while another peer holds
// the write token.
func TestRenameNotHeldByRound(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	fh := s.open(t, "bob", "a", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	defer s.release(t, fh)
	s.write(t, fh, "x", 0)
	endRound := c.holdRound(t)
	defer endRound()
	done := make(chan error, 1)
	go func() { done <- s.Rename(ctx, "bob", "a", "b") }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Rename: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Rename still blocked after 5s of another peer's turn")
		endRound()
		<-done
	}
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

func TestNamespaceOpsReachThePeer(t *testing.T) {
	for _, syncNS := range []bool{false, true} {
		t.Run(fmt.Sprintf("SyncNamespace=%v", syncNS), func(t *testing.T) {
			testNamespaceOpsReachThePeer(t, syncNS)
		})
	}
}

// testNamespaceOpsReachThePeer: written behind (the default), a removal
// is on the peer once an fsync (FlushAll) returns; synchronously, at
// once. This mount sees it at once either way.
func testNamespaceOpsReachThePeer(t *testing.T, syncNS bool) {
	c := newClusterWith(t, func(o *Options) { o.SyncNamespace = syncNS })
	s, ctx := c.store, testCtx(t)
	drained := func() {
		t.Helper()
		if !syncNS {
			if err := s.FlushAll(ctx); err != nil {
				t.Fatalf("FlushAll: %v", err)
			}
		}
	}

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
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"g"}) {
		t.Errorf("List after Rename = %q", got)
	}
	drained()
	if c.bob.exists(t, "d/f") || c.bob.content(t, "d/g") != "data" {
		t.Errorf("Rename did not reach the peer")
	}

	if err = s.Rmdir(ctx, "bob", "d"); errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("Rmdir of a non-empty directory: %v, want ENOTEMPTY", err)
	}

	if err := s.Remove(ctx, "bob", "d/g"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := s.names(t, "bob", "d"); len(got) != 0 {
		t.Errorf("List after Remove = %q", got)
	}
	if _, err := s.Stat(ctx, "bob", "d/g"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after Remove: %v, want ErrNotExist", err)
	}
	drained()
	if c.bob.exists(t, "d/g") {
		t.Errorf("Remove did not reach the peer")
	}
	if err := s.Remove(ctx, "bob", "d/g"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove: %v, want ErrNotExist", err)
	}

	if err := s.Rmdir(ctx, "bob", "d"); err != nil {
		t.Fatalf("Rmdir: %v", err)
	}
	if got := s.names(t, "bob", ""); len(got) != 0 {
		t.Errorf("List after Rmdir = %q", got)
	}
	if _, err := s.Stat(ctx, "bob", "d"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat after Rmdir: %v, want ErrNotExist", err)
	}
	drained()
	if c.bob.exists(t, "d") {
		t.Errorf("Rmdir did not reach the peer")
	}
	if got := s.names(t, "bob", ""); len(got) != 0 {
		t.Errorf("List after Rmdir reached the peer = %q", got)
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
	if _, err := s.Chtimes(ctx, "bob", "f", fusefs.TimeChange{}, fusefs.TimeChange{Set: true, T: mtime}); err != nil {
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
	if _, err := s.Chtimes(ctx, "bob", "f", fusefs.TimeChange{}, fusefs.TimeChange{Set: true, T: mtime2}); err != nil {
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

// While a peer is unreachable its folder is still a directory (with the
// attributes last seen), so local files pending upload in it stay
// reachable; anything that needs the peer says EIO.
func TestRootOfUnreachablePeer(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	if err := os.Chmod(bob.export, 0o750); err != nil {
		t.Fatal(err)
	}
	fi, err := s.Stat(ctx, "bob", "")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("Stat of bob's root = %v, %v", fi, err)
	}
	fh := s.open(t, "bob", "pending", os.O_CREATE|os.O_WRONLY, 0o644)
	defer s.release(t, fh)
	s.write(t, fh, "x", 0)
	bob.stop()
	s.InvalidateAll()
	fi, err = s.Stat(ctx, "bob", "")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("Stat of an unreachable peer's root = %v, %v; want the directory as last seen", fi, err)
	}
	if fi, err := s.Stat(ctx, "bob", "pending"); err != nil || fi.Size() != 1 {
		t.Errorf("Stat of a pending local file = %v, %v", fi, err)
	}
	if _, err := s.Stat(ctx, "bob", "other"); errnoOf(err) != syscall.EIO {
		t.Errorf("Stat of a remote name while unreachable: %v, want EIO", err)
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
