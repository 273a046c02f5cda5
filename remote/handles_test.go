package remote

import (
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
)

// A file opened for writing that shrank on its peer before the first
// write can still be written: the write applies to the old or the new
// content.
func TestWriteToFileThatShrankSinceOpen(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "log", []byte("line1\nline2\n"), 0o644)
	fh := s.open(t, "bob", "log", os.O_WRONLY|os.O_APPEND, 0)
	c.bob.writeFile(t, "log", []byte("x\n"), 0o644) // its owner rewrites it
	if _, err := s.WriteAt(ctx, fh, []byte("mine\n"), 0); err != nil {
		t.Errorf("write: %v", err)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Errorf("close(): %v", err)
	}
	s.release(t, fh)
	if got := c.bob.content(t, "log"); got != "line1\nline2\nmine\n" && got != "x\nmine\n" {
		t.Errorf("peer has %q", got)
	}
}

// Overwriting a large file the way the kernel does for cp (open O_WRONLY
// without O_TRUNC, then truncate to 0) does not download it (it used to be
// fetched whole at open).
func TestOverwriteDoesNotDownload(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	const size = 32 << 20
	big := make([]byte, size)
	rand.Read(big)
	c.bob.writeFile(t, "big", big, 0o640)

	before := c.bob.sent.Load()
	fh := s.open(t, "bob", "big", os.O_WRONLY, 0)
	if _, err := s.Truncate(ctx, "bob", "big", 0); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	s.write(t, fh, "tiny\n", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("close(): %v", err)
	}
	s.release(t, fh)
	sent := c.bob.sent.Load() - before
	if sent > 64<<10 {
		t.Errorf("overwriting a %d-byte file made the peer send %d bytes", size, sent)
	}
	if got := c.bob.content(t, "big"); got != "tiny\n" {
		t.Errorf("peer has %d bytes, want %q", len(got), "tiny\n")
	}
	if got := c.bob.mode(t, "big"); got != 0o640 {
		t.Errorf("peer's mode %#o, want the file's own 0640", got)
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
