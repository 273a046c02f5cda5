package remote

import (
	"crypto/rand"
	"os"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// Regression tests for bugs a review found; each failed before its fix.

// A file whose upload failed stays dirty in the cache and is uploaded by
// the next run, with its content and its mode (it used to get mode 0000:
// the restarted Store took the unrecorded mode as 0 and applied it).
func TestRestartUploadsPendingFileWithItsMode(t *testing.T) {
	tests := []struct {
		name     string
		existing os.FileMode // mode of a file already on the peer; 0: none
		create   os.FileMode // mode the writer creates the file with
		chmod    os.FileMode // mode set while the upload is pending; 0: none
		want     os.FileMode
	}{
		{name: "created 0644", create: 0o644, want: 0o644},
		{name: "created 0600", create: 0o600, want: 0o600},
		{name: "created 0644 chmodded 0600", create: 0o644, chmod: 0o600, want: 0o600},
		{name: "existing 0640 rewritten", existing: 0o640, want: 0o640},
		{name: "existing 0640 chmodded 0600", existing: 0o640, chmod: 0o600, want: 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			export, cacheDir := t.TempDir(), t.TempDir()
			bob := startPeer(t, export)
			if tt.existing != 0 {
				bob.writeFile(t, "a.txt", []byte("old content"), tt.existing)
			}
			s1 := newStore(t, cacheDir)
			s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})

			flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
			fh := s1.open(t, "bob", "a.txt", flags, tt.create)
			s1.write(t, fh, "hello", 0)
			if tt.chmod != 0 {
				if _, err := s1.Chmod(ctx, "bob", "a.txt", tt.chmod); err != nil {
					t.Fatalf("Chmod: %v", err)
				}
			}
			bob.stop() // the peer goes down before close()
			err := s1.Flush(ctx, fh)
			if errnoOf(err) != syscall.EIO {
				t.Fatalf("Flush with the peer down: %v, want EIO", err)
			}
			s1.release(t, fh)
			s1.close()

			bob2 := startPeer(t, export) // back, on another port
			s2 := newStore(t, cacheDir)
			if f, _ := s2.PendingInfo(); f != 1 {
				t.Fatalf("restarted store has %d pending files, want 1", f)
			}
			s2.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob2.addr}})
			testutil.Eventually(t, "the pending file to be uploaded", func() bool { f, _ := s2.PendingInfo(); return f == 0 })
			if got := bob2.content(t, "a.txt"); got != "hello" {
				t.Errorf("peer's a.txt = %q, want %q", got, "hello")
			}
			if got := bob2.mode(t, "a.txt"); got != tt.want {
				t.Errorf("peer's a.txt has mode %#o, want %#o", got, tt.want)
			}
			s2.noLeftovers(t)
		})
	}
}

// A write that lands while another handle's close waits for the round,
// with only a chmod pending at the time, is uploaded (it used to be marked
// clean after the chmod-only upload, and the writer's close then
// succeeded without storing it).
func TestWriteDuringHeldChmodUploadIsStored(t *testing.T) {
	for _, flags := range []struct {
		name  string
		other int
	}{
		{"other handle read-only", os.O_RDONLY},
		{"other handle read-write", os.O_RDWR},
	} {
		t.Run(flags.name, func(t *testing.T) {
			c := newCluster(t)
			s, ctx := c.store, testCtx(t)
			c.bob.writeFile(t, "c.txt", []byte("hello"), 0o644)

			fh1 := s.open(t, "bob", "c.txt", os.O_RDWR, 0)
			fh2 := s.open(t, "bob", "c.txt", flags.other, 0)
			if _, err := s.Chmod(ctx, "bob", "c.txt", 0o600); err != nil {
				t.Fatalf("Chmod: %v", err)
			}
			endRound := c.holdRound(t)
			done := s.flushAsync(t, fh2) // close(fd2)
			// Either fd2's close waits for the round, or (a reader) it
			// has nothing to wait for.
			var flushed bool
			var err2 error
			testutil.Eventually(t, "close(fd2) to return or wait for the round", func() bool {
				select {
				case err2 = <-done:
					flushed = true
					return true
				default:
					return goroutineIn("remote.(*Store).waitTurn")
				}
			})
			s.write(t, fh1, "J", 0)
			if c.bob.content(t, "c.txt") != "hello" {
				t.Errorf("the peer changed during another peer's turn")
			}
			endRound()
			if !flushed {
				err2 = testutil.Recv(t, "close(fd2)", done)
			}
			if err2 != nil {
				t.Errorf("close(fd2): %v", err2)
			}
			if err := s.Flush(ctx, fh1); err != nil {
				t.Errorf("close(fd1): %v", err)
			}
			s.release(t, fh2)
			s.release(t, fh1)
			if got := c.bob.content(t, "c.txt"); got != "Jello" {
				t.Errorf("peer has %q after both closes succeeded, want %q", got, "Jello")
			}
			if got := c.bob.mode(t, "c.txt"); got != 0o600 {
				t.Errorf("peer's mode %#o, want 0600", got)
			}
			s.noLeftovers(t)
		})
	}
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
