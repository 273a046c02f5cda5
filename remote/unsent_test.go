package remote

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// readUnsent returns the content of the unsent copy as.
func readUnsent(t *testing.T, s *testStore, as string) string {
	t.Helper()
	ch, err := s.OpenUnsent(as)
	if err != nil {
		t.Fatalf("OpenUnsent(%q): %v", as, err)
	}
	defer ch.Release()
	b, err := io.ReadAll(io.NewSectionReader(ch, 0, ch.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unsentNames lists the unsent copies' names.
func unsentNames(s *testStore) []string {
	var out []string
	for _, u := range s.Unsent() {
		out = append(out, u.As)
	}
	return out
}

// TestRefusedUploadSetAside: an upload the peer refuses for good (its
// directory was removed behind the writer's back) fails that file's close
// and fsync with the refusal's errno, and is set aside, not retried: the
// other files' uploads and the SYNC round's work carry on, a restart does
// not bring it back into the queue, its data stays readable, and once the
// cause is gone a retry stores it.
func TestRefusedUploadSetAside(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	dir := t.TempDir()
	s := newStore(t, dir)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "d/f", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "precious", 0)
	if err := os.Remove(bob.path("d")); err != nil {
		t.Fatal(err)
	}
	err := s.Flush(testCtx(t), fh)
	var pe *ParkedError
	if !errors.As(err, &pe) || !errors.Is(err, fs.ErrNotExist) || pe.As != "bob/d/f" {
		t.Fatalf("close after the directory was removed: %v; want ENOENT, set aside as bob/d/f", err)
	}
	// The same descriptor's fsync says so too, without asking the peer.
	if err := s.Fsync(testCtx(t), fh); !errors.As(err, &pe) {
		t.Errorf("fsync of the refused file: %v, want its refusal", err)
	}
	s.release(t, fh)

	// Everything else goes on: another file, and a whole turn's work.
	g := s.open(t, "bob", "g", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, g, "fine", 0)
	if err := s.Flush(testCtx(t), g); err != nil {
		t.Fatalf("another file's close: %v", err)
	}
	s.release(t, g)
	if err := s.FlushAll(testCtx(t)); err != nil {
		t.Errorf("the SYNC turn's work with a file set aside: %v", err)
	}
	if n, _ := s.PendingInfo(); n != 0 {
		t.Errorf("%d files pending; the refused one must not be", n)
	}
	if got := unsentNames(s); len(got) != 1 || got[0] != "bob/d/f" {
		t.Fatalf("Unsent = %q", got)
	}
	if u := s.Unsent()[0]; u.Peer != "bob" || u.Path != "d/f" || !strings.Contains(u.Reason, "no such directory") || u.Size != 8 {
		t.Errorf("Unsent entry %+v", u)
	}
	if got := readUnsent(t, s, "bob/d/f"); got != "precious" {
		t.Errorf("unsent copy holds %q", got)
	}

	// A restart keeps it aside, and sends nothing.
	s.close()
	s = newStore(t, dir)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := s.FlushAll(testCtx(t)); err != nil {
		t.Errorf("after a restart: %v", err)
	}
	if got := unsentNames(s); len(got) != 1 {
		t.Fatalf("after a restart: Unsent = %q", got)
	}
	// The directory is back: a retry stores it where it was to go.
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryUnsent(testCtx(t), "bob/d/f"); err != nil {
		t.Fatalf("RetryUnsent: %v", err)
	}
	if got := bob.content(t, "d/f"); got != "precious" {
		t.Errorf("stored %q", got)
	}
	if got := unsentNames(s); len(got) != 0 {
		t.Errorf("after the retry: Unsent = %q", got)
	}
	s.noLeftovers(t)
}

// TestUnsentDropAndRefusedAgain: a retry that fails for good sets the copy
// aside again; DropUnsent deletes it.
func TestUnsentDropAndRefusedAgain(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "d/f", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "x", 0)
	if err := os.Remove(bob.path("d")); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(testCtx(t), fh); !errors.Is(err, errSetAside) {
		t.Fatalf("close of a file whose directory is gone: %v", err)
	}
	s.release(t, fh)
	as := "bob/d/f"
	if err := s.RetryUnsent(testCtx(t), as); !errors.Is(err, errSetAside) {
		t.Fatalf("retry: %v, want it set aside again", err)
	}
	if got := unsentNames(s); len(got) != 1 || got[0] != as {
		t.Fatalf("Unsent = %q", got)
	}
	if err := s.DropUnsent(as); err != nil {
		t.Fatal(err)
	}
	if err := s.DropUnsent(as); err == nil {
		t.Error("dropped twice")
	}
	if len(s.Unsent()) != 0 {
		t.Error("still listed after DropUnsent")
	}
	s.noLeftovers(t)
}

// TestRetryBackoff: failed retries wait longer each time, up to a bound.
func TestRetryBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second}, {5, time.Minute}, {50, time.Minute}} {
		if got := retryBackoff(5*time.Second, tt.n); got != tt.want {
			t.Errorf("retryBackoff(5s, %d) = %v, want %v", tt.n, got, tt.want)
		}
	}
	if got := retryBackoff(2*time.Minute, 3); got != 2*time.Minute {
		t.Errorf("a long interval is not shortened: %v", got)
	}
}

// writePending leaves peer:path written with data and its upload failed
// (the peer is stopped first), then closes the store.
func writePending(t *testing.T, s *testStore, bob *testPeer, path, data string) {
	t.Helper()
	fh := s.open(t, "bob", path, os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, data, 0)
	bob.stop()
	if err := s.Flush(testCtx(t), fh); err == nil || errors.Is(err, errSetAside) {
		t.Fatalf("close with the peer stopped: %v, want a failure to retry", err)
	}
	s.release(t, fh)
	s.close()
}

// TestPendingNeverGoesToAStranger: a file written for peer bob whose
// upload is pending is not delivered to another export that took the
// name bob (another machine), nor to bob's own export in another cluster:
// it is set aside. Delivered on request, it goes to the new bob only as
// a new file. The same export back at another address gets it.
func TestPendingNeverGoesToAStranger(t *testing.T) {
	t.Run("another export", func(t *testing.T) {
		bob := startPeer(t, t.TempDir())
		dir := t.TempDir()
		s := newStore(t, dir)
		s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
		writePending(t, s, bob, "notes.txt", "for the first bob")

		stranger := startPeer(t, t.TempDir())
		s = newStore(t, dir)
		s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: stranger.addr}})
		testutil.Eventually(t, "the pending copy set aside", func() bool { return len(s.Unsent()) == 1 })
		if stranger.exists(t, "notes.txt") {
			t.Fatal("a file pending for one bob was delivered to another")
		}
		if u := s.Unsent()[0]; !strings.Contains(u.Reason, "another peer") {
			t.Errorf("reason %q", u.Reason)
		}
		// The user decides: deliver it to this bob, as a new file only.
		stranger.writeFile(t, "notes.txt", []byte("the new bob's own"), 0o644)
		err := s.RetryUnsent(testCtx(t), "bob/notes.txt")
		if errnoOf(err) != syscall.ESTALE {
			t.Fatalf("retry onto an existing file: %v, want a conflict copy", err)
		}
		if got := stranger.content(t, "notes.txt"); got != "the new bob's own" {
			t.Errorf("the new bob's file was replaced: %q", got)
		}
	})
	t.Run("another cluster", func(t *testing.T) {
		export := t.TempDir()
		bob := startPeer(t, export)
		dir := t.TempDir()
		s := newStoreWith(t, dir, func(o *Options) { o.Cluster = "cluster-a" })
		s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
		writePending(t, s, bob, "notes.txt", "for cluster a")

		again := startPeer(t, export) // the same export, now in cluster b
		s = newStoreWith(t, dir, func(o *Options) { o.Cluster = "cluster-b" })
		s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: again.addr}})
		testutil.Eventually(t, "the pending copy set aside", func() bool { return len(s.Unsent()) == 1 })
		if again.exists(t, "notes.txt") {
			t.Fatal("a file pending in one cluster was delivered in another")
		}
	})
	t.Run("the same export", func(t *testing.T) {
		export := t.TempDir()
		bob := startPeer(t, export)
		dir := t.TempDir()
		s := newStore(t, dir)
		s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
		writePending(t, s, bob, "notes.txt", "for bob")

		again := startPeer(t, export) // restarted, at another port
		s = newStore(t, dir)
		s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: again.addr}})
		testutil.Eventually(t, "the pending copy delivered", func() bool { return again.exists(t, "notes.txt") })
		if got := again.content(t, "notes.txt"); got != "for bob" || len(s.Unsent()) != 0 {
			t.Errorf("delivered %q, unsent %v", got, unsentNames(s))
		}
	})
}

// TestPendingForADepartedPeerSetAside: the copy pending for a peer that
// then leaves the cluster on purpose is set aside, and fails no fsync.
func TestPendingForADepartedPeerSetAside(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	fh := s.open(t, "bob", "f", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "for bob", 0)
	bob.stop()
	if err := s.Flush(testCtx(t), fh); err == nil || errors.Is(err, errSetAside) {
		t.Fatalf("close with bob stopped: %v, want a failure to retry", err)
	}
	s.release(t, fh)
	s.PeerLeft("bob", true)
	if err := s.FlushAll(testCtx(t)); err != nil {
		t.Errorf("a turn after bob left: %v", err)
	}
	testutil.Eventually(t, "the copy set aside", func() bool { return len(s.Unsent()) == 1 })
	if u := s.Unsent()[0]; u.As != "bob/f" || !strings.Contains(u.Reason, "left the cluster") {
		t.Errorf("unsent %+v", u)
	}
	if n, _ := s.PendingInfo(); n != 0 {
		t.Errorf("%d files pending", n)
	}
}

// TestParkedCopyWrittenAfterSurvivesReboot: a copy set aside while its
// writer still holds it open keeps what the writer writes afterwards, and
// all of it survives a reboot: the writer's close, which reports the copy
// set aside, leaves it as durable as the close that set it aside did.
func TestParkedCopyWrittenAfterSurvivesReboot(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	dir := t.TempDir()
	s := newStore(t, dir)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "d/f", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "first ", 0)
	if err := os.Remove(bob.path("d")); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(testCtx(t), fh); !errors.Is(err, errSetAside) {
		t.Fatalf("close after the directory was removed: %v, want it set aside", err)
	}
	// The program goes on writing through its descriptor, and closes it.
	s.write(t, fh, "second", 6)
	if err := s.Flush(testCtx(t), fh); !errors.Is(err, errSetAside) {
		t.Fatalf("the next close: %v, want the copy set aside", err)
	}
	s.release(t, fh)
	s.close()

	boot := filepath.Join(t.TempDir(), "boot_id")
	if err := os.WriteFile(boot, []byte("another-boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = newStoreOn(t, cache.Options{Dir: dir, Logger: zerolog.Nop(), BootIDFile: boot}, nil)
	if got := unsentNames(s); len(got) != 1 || got[0] != "bob/d/f" {
		t.Fatalf("after a reboot: unsent copies %q, want bob/d/f", got)
	}
	if got := readUnsent(t, s, "bob/d/f"); got != "first second" {
		t.Errorf("after a reboot the unsent copy holds %q, want %q", got, "first second")
	}
}

// TestPendingFromAnotherClusterWithoutThatPeer: a copy pending for bob
// of one cluster, in a mount restarted into a cluster that has no bob,
// is set aside at once: it can never go anywhere here, and must not
// fail every fsync of the new cluster while it waits for a bob.
func TestPendingFromAnotherClusterWithoutThatPeer(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	dir := t.TempDir()
	s := newStoreWith(t, dir, func(o *Options) { o.Cluster = "cluster-a" })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	writePending(t, s, bob, "notes.txt", "for cluster a")

	alice := startPeer(t, t.TempDir())
	s = newStoreWith(t, dir, func(o *Options) { o.Cluster = "cluster-b" })
	s.SetPeers([]peerproto.PeerAddr{{Name: "alice", Addr: alice.addr}})
	if err := s.FlushAll(testCtx(t)); err != nil {
		t.Errorf("a turn in a cluster without bob: %v", err)
	}
	if n, _ := s.PendingInfo(); n != 0 {
		t.Errorf("%d files pending", n)
	}
	if got := unsentNames(s); len(got) != 1 || got[0] != "bob/notes.txt" {
		t.Fatalf("unsent copies %q, want bob/notes.txt", got)
	}
	if got := readUnsent(t, s, "bob/notes.txt"); got != "for cluster a" {
		t.Errorf("unsent copy holds %q", got)
	}
}

// TestRetryUnsentWhileItsWriterHasItOpen: a copy set aside whose writer
// still has it open is not retried under it: the writer's later writes,
// which its closes report as kept among the unsent copies, would go to no
// copy anyone could see or send until the mount restarted. Once the
// writer closes it, the retry stores all it wrote.
func TestRetryUnsentWhileItsWriterHasItOpen(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "d/f", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "first ", 0)
	if err := os.Remove(bob.path("d")); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(testCtx(t), fh); !errors.Is(err, errSetAside) {
		t.Fatalf("close after the directory was removed: %v, want it set aside", err)
	}
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryUnsent(testCtx(t), "bob/d/f"); err == nil {
		t.Error("retried a copy its writer still has open")
	}
	s.write(t, fh, "second", 6)
	if err := s.Flush(testCtx(t), fh); !errors.Is(err, errSetAside) {
		t.Fatalf("the next close: %v, want the copy set aside", err)
	}
	s.release(t, fh)
	if got := unsentNames(s); len(got) != 1 || got[0] != "bob/d/f" {
		t.Fatalf("after the writer closed it: unsent copies %q, want bob/d/f", got)
	}
	if err := s.RetryUnsent(testCtx(t), "bob/d/f"); err != nil {
		t.Fatalf("retry once closed: %v", err)
	}
	if got := bob.content(t, "d/f"); got != "first second" {
		t.Errorf("stored %q, want %q", got, "first second")
	}
	s.noLeftovers(t)
}

// TestRefusedChmodDoesNotSetAsideLaterWrites: a chmod the peer refuses for
// good, sent alone (the file had no writes yet), has nothing to keep: it
// must not mark the file as set aside, or what its writer writes next
// would be neither sent, nor kept among the unsent copies, nor pending.
func TestRefusedChmodDoesNotSetAsideLaterWrites(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	bob := startPeerWith(t, export.Options{Export: dir, Logger: zerolog.Nop(), ReadOnly: true})
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	fh := s.open(t, "bob", "f", os.O_RDWR, 0)
	if _, err := s.Chmod(testCtx(t), "bob", "f", 0o600); err != nil {
		t.Fatalf("chmod of the open file: %v", err)
	}
	if err := s.Fsync(testCtx(t), fh); err == nil {
		t.Fatal("fsync of a chmod a read-only export refuses: no error")
	}
	s.write(t, fh, "new content", 0)
	if err := s.Flush(testCtx(t), fh); !errors.Is(err, errSetAside) {
		t.Errorf("close after writing to a read-only export: %v, want the copy set aside", err)
	}
	s.release(t, fh)
	if got := unsentNames(s); len(got) != 1 || got[0] != "bob/f" {
		n, _ := s.PendingInfo()
		t.Fatalf("unsent copies %q (%d pending), want bob/f", got, n)
	}
	if got := readUnsent(t, s, "bob/f"); got != "new content" {
		t.Errorf("unsent copy holds %q", got)
	}
}
