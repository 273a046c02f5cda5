package remote

// Cases an independent review of watching (a helper session) wrote to
// show bugs in its first version: a listing trusted again after
// UNWATCHED, a STAT answer across a RESET, a directory's own times in
// its parent's listing.

import (
	"os"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

type rvClock struct{ t time.Time }

func (c *rvClock) now() time.Time { return c.t }

func rvCache() (*attrCache, *rvClock, uint64) {
	c := &rvClock{t: time.Unix(1000, 0)}
	a := newAttrCache(time.Second, c.now)
	a.wake, a.watchTTL = make(chan struct{}, 1), 30*time.Second
	ep := a.watchStarted()
	return a, c, ep
}

func rvAnswer(t *testing.T, a *attrCache, ep uint64) {
	want, _ := a.takeWant(ep)
	for _, d := range want {
		if !a.onEvent(ep, peerproto.WatchOK{Dir: d}) {
			t.Fatalf("out of step at %q", d)
		}
	}
}

func rvList(a *attrCache, dir string, names ...string) {
	call, _ := a.beginList(dir)
	var l []peerproto.Entry
	for _, n := range names {
		l = append(l, peerproto.Entry{Type: peerproto.TypeFile, Mode: 0o644, Name: n})
	}
	a.endList(dir, call, l, nil)
}

// UNWATCHED, then the same directory watched again in the same epoch
// (because a child was listed): the listing taken of the old directory
// is trusted again.
func TestWatchReviewUnwatchedResurrects(t *testing.T) {
	a, c, ep := rvCache()
	rvAnswer(t, a, ep)
	rvList(a, "", "X")
	rvList(a, "X", "old", "sub")
	rvAnswer(t, a, ep)
	rvList(a, "X", "old", "sub") // now watched: trusted
	rvList(a, "X/sub")
	rvAnswer(t, a, ep)
	rvList(a, "X/sub")
	// On the peer: mv X X.tmp; mv X.tmp X; touch X/new  (new is not reported: X unwatched)
	a.onEvent(ep, peerproto.Unwatched{Dir: "X"})
	a.onEvent(ep, peerproto.Unwatched{Dir: "X/sub"})
	a.onEvent(ep, peerproto.Changed{Entry: peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755, Name: "X", Ctime: 5}})
	c.t = c.t.Add(2 * time.Second)
	if _, _, ok := a.cached("X/new"); ok {
		t.Fatal("trusted right after UNWATCHED")
	}
	// A program lists X/sub (its cwd): X is watched again.
	rvList(a, "X/sub")
	rvAnswer(t, a, ep)
	c.t = c.t.Add(2 * time.Second)
	rvUntrusted(t, a, "X", "it was taken before X was unwatched")
}

// rvUntrusted fails t if a trusts the listing of dir now (past the
// attribute timeout), or the absence of dir/new (made on the peer
// unreported) it says; why is how that listing was taken.
func rvUntrusted(t *testing.T, a *attrCache, dir, why string) {
	t.Helper()
	if _, exists, ok := a.cached(dir + "/new"); ok && !exists {
		t.Errorf("%s/new answered absent from the listing of %s: %s", dir, dir, why)
	}
	if l, ok := a.listed(dir); ok {
		t.Errorf("the listing of %s trusted past the attribute timeout: %s: %v", dir, why, l)
	}
}

// A RESET while a STAT of a watched directory is in flight: the answer,
// which may predate a lost event, is trusted past the attribute timeout.
func TestWatchReviewResetDuringStat(t *testing.T) {
	a, c, ep := rvCache()
	rvAnswer(t, a, ep)
	rvList(a, "", "d")
	rvList(a, "d")
	rvAnswer(t, a, ep)
	gen, e := a.statBegin("d")
	a.onEvent(ep, peerproto.Reset{})
	a.rememberStat("d", peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755, Name: "d"}, gen, e)
	c.t = c.t.Add(5 * time.Second)
	if _, _, ok := a.cached("d"); ok {
		t.Errorf("a STAT answer that was in flight across a RESET is trusted past the attribute timeout")
	}
}

// A watched directory's attributes, as its parent's watched listing has
// them, follow an entry made in it on the peer (the peer reports the
// directory too), past the attribute timeout.
func TestWatchReviewDirMtimeAfterChild(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	s, _ := watchedStore(t, bob, "")
	listWatched(t, s, "")
	listWatched(t, s, "d")
	stat(t, s, "d")
	if err := os.Mkdir(bob.path("d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "d/sub seen", func() bool { return stat(t, s, "d/sub") != nil })
	time.Sleep(3 * watchTestTTL)
	disk, _ := os.Stat(bob.path("d"))
	got := stat(t, s, "d")
	if !got.ModTime().Equal(disk.ModTime()) {
		t.Errorf("d's mtime %v past the attribute timeout, the peer has %v", got.ModTime(), disk.ModTime())
	}
}
