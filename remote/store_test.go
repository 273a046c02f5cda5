package remote

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"testing"

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
