package remote

// Third review of the guessed times (attrs_times.go), at c625f86: each
// test shows one defect (they fail there).

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
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
	// A mkdir held at the proxy keeps the sender's next batch back: the
	// two utimes made meanwhile go together.
	proxy, gates := reviewProxy(t, bob.addr, "MKDIR w")
	s := reviewStore(t, proxy)
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "a")
	returnsSoon(t, "Mkdir w", func() error { _, err := s.Mkdir(ctx, "bob", "w", 0o755); return err })
	gates["MKDIR w"].wait(t, "the MKDIR")
	at := fusefs.TimeChange{Set: true, T: time.Unix(1_600_000_000, 0)}
	returnsSoon(t, "Chtimes a/d", func() error { _, err := s.Chtimes(ctx, "bob", "a/d", at, at); return err })
	returnsSoon(t, "Chtimes a", func() error { _, err := s.Chtimes(ctx, "bob", "a", at, at); return err })
	gates["MKDIR w"].open()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	timesOf(t, s, "a/d")
	// Another writer, well after this mount's changes were answered.
	time.Sleep(20 * time.Millisecond)
	bob.writeFile(t, "a/d/z", []byte("z"), 0o644)
	time.Sleep(3 * timesTTL) // every cache expired
	wm, wc := diskTimes(t, bob, "a/d")
	if m, c := timesOf(t, s, "a/d"); m != wm || c != wc {
		t.Errorf("a/d after another writer made a/d/z, %v later: mtime %d ctime %d; the peer's %d %d; a/d's guess: %s",
			3*timesTTL, m, c, wm, wc, guessState(s, "a/d"))
	}
}

// R3-1b. The same with a removal in the parent after a chmod of the
// directory (chmod a/d; rm a/x): settleOf of the DELETE is a, not a/d.
func TestReview3TimesChmodThenRemoveInParentNeverTied(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.MkdirAll(bob.path("a/d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "a/x", []byte("x"), 0o644)
	proxy, gates := reviewProxy(t, bob.addr, "MKDIR w")
	s := reviewStore(t, proxy)
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "a")
	returnsSoon(t, "Mkdir w", func() error { _, err := s.Mkdir(ctx, "bob", "w", 0o755); return err })
	gates["MKDIR w"].wait(t, "the MKDIR")
	returnsSoon(t, "Chmod a/d", func() error { _, err := s.Chmod(ctx, "bob", "a/d", 0o700); return err })
	returnsSoon(t, "Remove a/x", func() error { return s.Remove(ctx, "bob", "a/x") })
	gates["MKDIR w"].open()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	timesOf(t, s, "a/d")
	time.Sleep(20 * time.Millisecond)
	bob.writeFile(t, "a/d/z", []byte("z"), 0o644)
	time.Sleep(3 * timesTTL)
	wm, wc := diskTimes(t, bob, "a/d")
	if m, c := timesOf(t, s, "a/d"); m != wm || c != wc {
		t.Errorf("a/d after another writer made a/d/z, %v later: mtime %d ctime %d; the peer's %d %d; a/d's guess: %s",
			3*timesTTL, m, c, wm, wc, guessState(s, "a/d"))
	}
}

// callerClock is a Store clock that stalls the one call made by a
// given function of remote (by its name, found on the caller's stack)
// once armed, until released: it widens a window between two steps of
// that function that a busy sender may otherwise fall into.
type callerClock struct {
	mu      sync.Mutex
	fn      string // e.g. "(*Store).removeBehind"; "" disarmed
	stalled chan struct{}
	release chan struct{}
}

func newCallerClock() *callerClock {
	return &callerClock{stalled: make(chan struct{}), release: make(chan struct{})}
}

func (c *callerClock) arm(fn string) {
	c.mu.Lock()
	c.fn = fn
	c.mu.Unlock()
}

func (c *callerClock) now() time.Time {
	c.mu.Lock()
	fn := c.fn
	c.mu.Unlock()
	if fn != "" && calledFrom(fn) {
		c.mu.Lock()
		c.fn = ""
		c.mu.Unlock()
		close(c.stalled)
		<-c.release
	}
	return time.Now()
}

// calledFrom reports whether the caller's caller (within three frames:
// the Store's now method may be inlined) is remote's function fn, and
// no attrCache method is on the way (their clock calls hold a.mu).
func calledFrom(fn string) bool {
	pcs := make([]uintptr, 6)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for i := 0; i < 3; i++ {
		f, more := frames.Next()
		if strings.Contains(f.Function, "attrCache") {
			return false
		}
		if strings.HasSuffix(f.Function, "remote."+fn) {
			return true
		}
		if !more {
			break
		}
	}
	return false
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
	clock := newCallerClock()
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.AttrTTL = timesTTL; o.Now = clock.now })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	// A sender already running (its MKDIR held at the proxy).
	returnsSoon(t, "Mkdir w", func() error { _, err := s.Mkdir(ctx, "bob", "w", 0o755); return err })
	gates["MKDIR w"].wait(t, "the MKDIR")
	// rm d/x: queued; held right before its guess of d's times.
	clock.arm("(*Store).removeBehind")
	removed := make(chan error, 1)
	go func() { removed <- s.Remove(ctx, "bob", "d/x") }()
	select {
	case <-clock.stalled:
	case err := <-removed:
		t.Fatalf("Remove d/x returned (%v) without reading the clock between queueing and guessing", err)
	case <-time.After(testTimeout):
		t.Fatal("Remove d/x never reached removeBehind's clock")
	}
	// The sender, free again, carries out what is queued meanwhile (a
	// moment, in real life): the DELETE, where it was queued before its
	// guess was made (since the fix it is queued after, and waits).
	gates["MKDIR w"].open()
	for deadline := time.Now().Add(300 * time.Millisecond); bob.exists(t, "d/x") && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
	}
	close(clock.release)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	timesOf(t, s, "d")
	time.Sleep(20 * time.Millisecond)
	bob.writeFile(t, "d/z", []byte("z"), 0o644)
	time.Sleep(3 * timesTTL)
	wm, wc := diskTimes(t, bob, "d")
	if m, c := timesOf(t, s, "d"); m != wm || c != wc {
		t.Errorf("d after another writer made d/z, %v later: mtime %d ctime %d; the peer's %d %d; d's guess: %s",
			3*timesTTL, m, c, wm, wc, guessState(s, "d"))
	}
}
