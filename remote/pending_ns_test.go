package remote

import (
	"os"
	"syscall"
	"testing"
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
