package remote

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// Regression tests of bugs found after the lazy, streamed fetch landed:
// stale cached sizes and renames held by another peer's round.

// A file that grew on its peer after its attributes were cached (here by
// a listing, less than AttrTTL before the open) is read correctly: the
// reader gets the old or the new content, whole, and no error.
func TestReadOfFileThatGrewSinceListed(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	oldData, newData := []byte("x\n"), []byte("a much longer content now\n")
	c.bob.writeFile(t, "f", oldData, 0o644)
	s.names(t, "bob", "") // caches f's attributes
	c.bob.writeFile(t, "f", newData, 0o644)

	fh := s.open(t, "bob", "f", os.O_RDONLY, 0)
	defer s.release(t, fh)
	for i := range 2 {
		buf := make([]byte, 100)
		n, err := s.ReadAt(ctx, fh, buf, 0)
		if err != nil {
			t.Errorf("read %d: %v", i, err)
			continue
		}
		if got := buf[:n]; !bytes.Equal(got, oldData) && !bytes.Equal(got, newData) {
			t.Errorf("read %d = %q: neither the old nor the new content", i, got)
		}
	}
}

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
