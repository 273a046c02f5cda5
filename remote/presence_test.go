package remote

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
)

// fakeClock is a Store clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// isEIO reports whether err is EIO and nothing that reads as "no such
// file".
func isEIO(err error) bool {
	return errnoOf(err) == syscall.EIO && !errors.Is(err, fs.ErrNotExist)
}

// peerReport returns the store's report of peer name.
func (s *testStore) peerReport(t *testing.T, name string) PeerReport {
	t.Helper()
	for _, p := range s.Report().Peers {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no report of peer %s", name)
	return PeerReport{}
}

// waitUnlisted waits until the store knows the tracker no longer lists
// peer name.
func (s *testStore) waitUnlisted(t *testing.T, name string) {
	t.Helper()
	testutil.Eventually(t, name+" unlisted", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, unlisted := s.unlisted[name]
		return unlisted
	})
}

// TestPeerDroppedStaysEIO: a peer the tracker drops (here: its tracker
// client stops without QUIT) while it does not answer (its server is
// gone) stays a folder, and everything in it fails with EIO, never "no
// such file", an empty listing or a short read: a descriptor opened
// before included. When it comes back at a new address, the folder, and
// the descriptor, follow it.
func TestPeerDroppedStaysEIO(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "f.txt", []byte("bob's file"), 0o644)
	fh, _, err := s.Open(ctx, "bob", "f.txt", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(fh)

	c.bob.stop()
	c.dropBob()
	s.waitUnlisted(t, "bob")

	if got := s.Peers(); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("Peers() after bob was dropped = %q, want [bob]", got)
	}
	if fi, err := s.Stat(ctx, "bob", ""); err != nil || !fi.IsDir() {
		t.Errorf("Stat of bob's folder: %v, %v; want the folder", fi, err)
	}
	if _, err := s.Stat(ctx, "bob", "f.txt"); !isEIO(err) {
		t.Errorf("Stat in a dropped peer's folder: %v, want EIO", err)
	}
	if list, err := s.List(ctx, "bob", ""); !isEIO(err) {
		t.Errorf("List of a dropped peer's folder: %d entries, %v; want EIO", len(list), err)
	}
	buf := make([]byte, 64)
	if n, err := s.ReadAt(ctx, fh, buf, 0); !isEIO(err) {
		t.Errorf("ReadAt through a descriptor opened before: %q, %v; want EIO", buf[:n], err)
	}
	if _, _, err := s.Open(ctx, "bob", "f.txt", os.O_RDONLY, 0); !isEIO(err) {
		t.Errorf("Open in a dropped peer's folder: %v, want EIO", err)
	}
	r := s.peerReport(t, "bob")
	if r.State != "down" || r.Listed || r.DownSince.IsZero() || r.UnlistedSince.IsZero() {
		t.Errorf("report of a dropped peer: %+v, want down, unlisted, with both times", r)
	}
	if attr, err := s.PeerState("bob"); err != nil || !strings.HasPrefix(attr, "down since=") || !strings.Contains(attr, " tracker=unlisted unlisted-since=") {
		t.Errorf("PeerState of a dropped peer: %q, %v", attr, err)
	}
	if text := s.Report().Text(); !strings.Contains(text, "bob: down since ") || !strings.Contains(text, "not listed by the tracker since") {
		t.Errorf("status text of a dropped peer:\n%s", text)
	}

	// Back, at a new address.
	bob2 := startPeer(t, c.bob.export)
	c.registerBob(t, bob2.port)
	testutil.Eventually(t, "the store to follow bob to his new address", func() bool {
		addr, ok := s.PeerAddr("bob")
		return ok && addr == bob2.addr
	})
	testutil.Eventually(t, "the descriptor opened before to read again", func() bool {
		n, err := s.ReadAt(ctx, fh, buf, 0)
		return err == nil && string(buf[:n]) == "bob's file"
	})
	if names := s.names(t, "bob", ""); !slices.Equal(names, []string{"f.txt"}) {
		t.Errorf("bob's folder after his return: %q", names)
	}
	if r := s.peerReport(t, "bob"); r.State != "up" || !r.Listed || !r.DownSince.IsZero() {
		t.Errorf("report of bob back: %+v", r)
	}
}

// TestPeerUnlistedButReachable: after a tracker restart the first peer to
// register sees a list without the others; they stay, and work, at their
// last address.
func TestPeerUnlistedButReachable(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "f.txt", []byte("still here"), 0o644)
	s.SetPeers(nil) // the list a fresh tracker gives the first to come back
	if got := s.Peers(); !slices.Equal(got, []string{"bob"}) {
		t.Errorf("Peers() = %q, want [bob]", got)
	}
	fh := s.open(t, "bob", "f.txt", os.O_RDONLY, 0)
	buf := make([]byte, 64)
	if n, err := s.ReadAt(ctx, fh, buf, 0); err != nil || string(buf[:n]) != "still here" {
		t.Errorf("reading an unlisted peer that answers: %q, %v", buf[:n], err)
	}
	s.release(t, fh)
	if r := s.peerReport(t, "bob"); r.State != "up" || r.Listed {
		t.Errorf("report of an unlisted peer that answers: %+v, want up, unlisted", r)
	}
}

// TestPeerQuitGoes: a peer that leaves on purpose (QUIT) goes: its folder
// is no longer listed, and what was in it is EIO, not "no such file".
func TestPeerQuitGoes(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	if err := c.bobTC.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "bob's folder to go", func() bool { return len(s.Peers()) == 0 })
	if _, err := s.Stat(ctx, "bob", "f.txt"); !isEIO(err) {
		t.Errorf("Stat in the folder of a peer that left: %v, want EIO", err)
	}
	if len(s.Report().Peers) != 0 {
		t.Errorf("report after bob left: %+v", s.Report().Peers)
	}
}

// TestForget: an operator removes the folder of a peer that is down; not
// of one the tracker lists, nor (unless forced) of one with files waiting
// for upload to it.
func TestForget(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	if err := s.Forget("bob", false); !errors.Is(err, ErrPeerListed) {
		t.Errorf("Forget of a listed peer: %v, want ErrPeerListed", err)
	}
	if err := s.Forget("carol", false); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("Forget of an unknown peer: %v, want ErrUnknownPeer", err)
	}
	fh := s.open(t, "bob", "new.txt", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "unsent", 0)
	c.bob.stop()
	c.dropBob()
	s.waitUnlisted(t, "bob")
	if err := s.Flush(ctx, fh); !isEIO(err) {
		t.Errorf("Flush to a peer that is down: %v, want EIO", err)
	}
	s.release(t, fh)
	if err := s.Forget("bob", false); !errors.Is(err, ErrPeerPending) {
		t.Errorf("Forget with a pending upload: %v, want ErrPeerPending", err)
	}
	if err := s.Forget("bob", true); err != nil {
		t.Errorf("Forget --force: %v", err)
	}
	if got := s.Peers(); len(got) != 0 {
		t.Errorf("Peers() after Forget = %q", got)
	}
}

// TestForgetAfter: a peer neither listed nor answering for ForgetAfter is
// forgotten, unless files wait for upload to it.
func TestForgetAfter(t *testing.T) {
	for _, pending := range []bool{false, true} {
		clock := newFakeClock()
		c := newClusterWith(t, func(o *Options) { o.ForgetAfter = time.Hour; o.Now = clock.Now })
		s := c.store
		if pending {
			fh := s.open(t, "bob", "new.txt", os.O_CREATE|os.O_WRONLY, 0o644)
			s.write(t, fh, "unsent", 0)
			defer s.release(t, fh)
		}
		c.bob.stop()
		c.dropBob()
		s.waitUnlisted(t, "bob")
		clock.advance(59 * time.Minute)
		time.Sleep(10 * s.opts.RetryInterval) // sweeps that must forget nothing
		if got := s.Peers(); !slices.Equal(got, []string{"bob"}) {
			t.Fatalf("Peers() before ForgetAfter = %q, want [bob]", got)
		}
		clock.advance(2 * time.Minute)
		if !pending {
			testutil.Eventually(t, "bob forgotten", func() bool { return len(s.Peers()) == 0 })
			continue
		}
		time.Sleep(10 * s.opts.RetryInterval)
		if got := s.Peers(); !slices.Equal(got, []string{"bob"}) {
			t.Errorf("Peers() with a pending upload past ForgetAfter = %q, want [bob]", got)
		}
	}
}

// TestPeersFileRestart: the peer set survives a restart of the mount, so
// a mount restarted while the tracker is down shows the folders, down
// until they answer or the tracker lists them. A list of another scope
// (cluster), or of peers silent past ForgetAfter, is not restored.
func TestPeersFileRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "peers.json")
	clock := newFakeClock()
	tune := func(o *Options) {
		o.PeersFile, o.Cluster, o.Now, o.ForgetAfter = file, "cluster-a", clock.Now, 48*time.Hour
	}
	c := newClusterWith(t, tune)
	c.bob.writeFile(t, "f.txt", []byte("kept"), 0o644)
	c.store.close()

	// No tracker: the folder is there, and bob answers at his address.
	s := newStoreWith(t, t.TempDir(), tune)
	if got := s.Peers(); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("Peers() after a restart = %q, want [bob]", got)
	}
	if r := s.peerReport(t, "bob"); r.Listed || r.State != "down" {
		t.Errorf("a restored peer before any answer: %+v, want down, unlisted", r)
	}
	fh := s.open(t, "bob", "f.txt", os.O_RDONLY, 0)
	buf := make([]byte, 16)
	if n, err := s.ReadAt(testCtx(t), fh, buf, 0); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("reading a restored peer: %q, %v", buf[:n], err)
	}
	s.release(t, fh)
	s.close()

	other := func(o *Options) { tune(o); o.Cluster = "cluster-b" }
	if got := newStoreWith(t, t.TempDir(), other).Peers(); len(got) != 0 {
		t.Errorf("Peers() restored from another cluster's list = %q", got)
	}
	clock.advance(49 * time.Hour)
	if got := newStoreWith(t, t.TempDir(), tune).Peers(); len(got) != 0 {
		t.Errorf("Peers() restored past ForgetAfter = %q", got)
	}
}

// TestFsyncSkipsDroppedPeer: files stored on a peer that the tracker then
// drops, before they were FSYNCed, do not fail every later fsync of this
// mount (as they did not when such a peer was forgotten): its FSYNC waits
// for its return.
func TestFsyncSkipsDroppedPeer(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	fh := s.open(t, "bob", "f.txt", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "stored, not synced", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	c.bob.stop()
	c.dropBob()
	s.waitUnlisted(t, "bob")
	if err := s.FlushAll(ctx); err != nil {
		t.Errorf("FlushAll with a dropped peer's FSYNC pending: %v", err)
	}
	p, err := s.peer("bob")
	if err != nil {
		t.Fatal(err)
	}
	p.unsynced.mu.Lock()
	unsynced := p.unsynced.need
	p.unsynced.mu.Unlock()
	if !unsynced {
		t.Error("the dropped peer's FSYNC is no longer due")
	}
}
