package remote

// Third review of the guessed times (attrs_times.go), at c625f86: each
// test shows one defect (they fail there).

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// R3-1. touchedAfter takes a later change of an ancestor of a SETATTR's
// path (a utimes of the parent, a removal in the parent) for a change of
// the path itself: the SETATTR's answer is skipped, and no STAT behind
// the batch is of the path (settleOf of a SETATTR is its parent): the
// guess is never tied. tar -x sets its directories' times deepest first
// (a/d, then a): both go in one batch. a/d then shows this mount's
// guess whatever the peer says for 30 s (another writer's change in it
// is hidden), then the peer's times (they move with nothing changed).
func TestReview3TimesSetattrThenParentSetattrNeverTied(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.MkdirAll(bob.path("a/d"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := inOneBatch(t, bob, "a", func(ctx context.Context, s *testStore) {
		at := fusefs.TimeChange{Set: true, T: time.Unix(1_600_000_000, 0)}
		returnsSoon(t, "Chtimes a/d", func() error { _, err := s.Chtimes(ctx, "bob", "a/d", at, at); return err })
		returnsSoon(t, "Chtimes a", func() error { _, err := s.Chtimes(ctx, "bob", "a", at, at); return err })
	})
	foreignChangeShows(t, s, bob, "a/d")
}

// R3-1b. The same with a removal in the parent after a chmod of the
// directory (chmod a/d; rm a/x): settleOf of the DELETE is a, not a/d.
func TestReview3TimesChmodThenRemoveInParentNeverTied(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.MkdirAll(bob.path("a/d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "a/x", []byte("x"), 0o644)
	s := inOneBatch(t, bob, "a", func(ctx context.Context, s *testStore) {
		returnsSoon(t, "Chmod a/d", func() error { _, err := s.Chmod(ctx, "bob", "a/d", 0o700); return err })
		returnsSoon(t, "Remove a/x", func() error { return s.Remove(ctx, "bob", "a/x") })
	})
	foreignChangeShows(t, s, bob, "a/d")
}

// inOneBatch makes changes (written behind) with a store on bob that
// listed dir, while a mkdir held at a proxy keeps the sender's next batch
// back, so that they go to bob together; it returns the store once they
// are carried out.
func inOneBatch(t *testing.T, bob *testPeer, dir string, changes func(ctx context.Context, s *testStore)) *testStore {
	t.Helper()
	proxy, gates := reviewProxy(t, bob.addr, "MKDIR w")
	s := reviewStore(t, proxy)
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", dir)
	returnsSoon(t, "Mkdir w", func() error { _, err := s.Mkdir(ctx, "bob", "w", 0o755); return err })
	gates["MKDIR w"].wait(t, "the MKDIR")
	changes(ctx, s)
	gates["MKDIR w"].open()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// foreignChangeShows checks that another writer's change in bob's
// directory dir (a new file z), made once this mount's changes were
// answered and its caches expired, shows as the peer has it: no guess of
// dir's times hides it.
func foreignChangeShows(t *testing.T, s *testStore, bob *testPeer, dir string) {
	t.Helper()
	time.Sleep(3 * timesTTL)
	timesOf(t, s, dir)
	time.Sleep(20 * time.Millisecond) // z's times after what was shown
	bob.writeFile(t, dir+"/z", []byte("z"), 0o644)
	time.Sleep(3 * timesTTL) // every cache expired
	wm, wc := diskTimes(t, bob, dir)
	if m, c := timesOf(t, s, dir); m != wm || c != wc {
		t.Errorf("%s after another writer made %s/z, %v later: mtime %d ctime %d; the peer's %d %d; %s's guess: %s",
			dir, dir, 3*timesTTL, m, c, wm, wc, dir, guessState(s, dir))
	}
}

// R3-2. removeBehind (and renameBehind) queue the change first and make
// the directory's guess after (entryChanged). A sender already running
// can build its batch in between: settleFor finds no untied guess of the
// directory, so no STAT goes behind the DELETE, and the guess made a
// moment later is never tied: shown for 30 s whatever the peer says
// (another writer's change in the directory hidden), then the peer's
// times. (It only takes the sender's building of a batch in between, no
// round trip.) Fixed: removeBehind and renameBehind show their guesses
// first, then queue (Store.pushShown).
func TestReview3TimesRemoveQueuedBeforeGuessNeverTied(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/x", []byte("x"), 0o644)
	proxy, gates := reviewProxy(t, bob.addr, "MKDIR w")
	clock := &stallingClock{fn: "remote.(*Store).removeBehind"}
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.AttrTTL = timesTTL; o.Now = clock.Now })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	// A sender already running (its MKDIR held at the proxy).
	returnsSoon(t, "Mkdir w", func() error { _, err := s.Mkdir(ctx, "bob", "w", 0o755); return err })
	gates["MKDIR w"].wait(t, "the MKDIR")
	// rm d/x: held at removeBehind's clock, which sat between its
	// queueing and its guess of d's times (before the fix).
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	clock.stall = func() { close(stalled); <-release }
	clock.armed.Store(true)
	removed := make(chan error, 1)
	go func() { removed <- s.Remove(ctx, "bob", "d/x") }()
	select {
	case <-stalled:
	case err := <-removed:
		t.Fatalf("Remove d/x returned (%v) without reading the clock", err)
	case <-time.After(testTimeout):
		t.Fatal("Remove d/x never reached removeBehind's clock")
	}
	// The sender, free again, carries out what is queued meanwhile (a
	// moment, in real life): the MKDIR, and the DELETE where it was
	// queued before its guess was made.
	gates["MKDIR w"].open()
	testutil.Eventually(t, "the queue carried out", func() bool { return s.ns.pendingFor("bob") == 0 })
	free()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	foreignChangeShows(t, s, bob, "d")
}
