package remote

// More cases a second review of the bound on watched directories found.

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// WATCH X/Y/d sent twice (X/Y moved while the first was unanswered, d
// listed again), then X moved too, X/Y listed again; the first WATCH
// OK finds d forgotten (UNWATCH d queued), d is listed again, and the
// second WATCH OK marks d watched although the UNWATCH queued after it
// will end the peer's watch: between the peer's UNWATCH d and the
// WATCH d that follows, a change of d goes unreported, yet a LIST begun
// after the WATCH OKs of d, X/Y and X is trusted past ttl.
func TestWatchBoundReviewStaleWatchOK(t *testing.T) {
	a, c, ep := rvCache()
	rvAnswer(t, a, ep)
	rvList(a, "", "X")
	rvList(a, "X", "Y")
	rvList(a, "X/Y", "d")
	rvAnswer(t, a, ep) // "", X, X/Y watched
	var wire []string  // requests in the order the peer reads them
	take := func() {
		want, unwant := a.takeWant(ep)
		for _, d := range unwant {
			wire = append(wire, "UNWATCH "+d)
		}
		for _, d := range want {
			wire = append(wire, "WATCH "+d)
		}
	}
	rvList(a, "X/Y/d")
	take()                                         // WATCH X/Y/d (1)
	a.onEvent(ep, peerproto.Unwatched{Dir: "X/Y"}) // mv X/Y on the peer
	rvList(a, "X/Y/d")
	take()                                       // WATCH X/Y/d (2), WATCH X/Y
	a.onEvent(ep, peerproto.Unwatched{Dir: "X"}) // mv X on the peer
	rvList(a, "X/Y")
	take()                                               // WATCH X/Y, WATCH X
	if !a.onEvent(ep, peerproto.WatchOK{Dir: "X/Y/d"}) { // (1): d forgotten, UNWATCH queued
		t.Fatal("out of step")
	}
	take()             // UNWATCH X/Y/d
	rvList(a, "X/Y/d") // listed again (not watched: not trusted)
	take()             // WATCH X/Y/d (3)
	t.Logf("wire: %q", wire)
	for _, d := range []string{"X/Y/d", "X/Y", "X/Y", "X"} { // (2) and the ancestors
		if !a.onEvent(ep, peerproto.WatchOK{Dir: d}) {
			t.Fatalf("out of step at %s", d)
		}
	}
	call, _ := a.beginList("X/Y/d")
	// Peer: UNWATCH X/Y/d read (no watch of d), LIST served, touch
	// X/Y/d/new (unreported), WATCH X/Y/d (3) read.
	if i, j := slices.Index(wire, "UNWATCH X/Y/d"), slices.Index(wire[slices.Index(wire, "UNWATCH X/Y/d"):], "WATCH X/Y/d"); i < 0 || j < 0 {
		t.Fatal("setup")
	}
	a.endList("X/Y/d", call, nil, nil)
	a.onEvent(ep, peerproto.UnwatchOK{Dir: "X/Y/d"})
	a.onEvent(ep, peerproto.WatchOK{Dir: "X/Y/d"})
	c.t = c.t.Add(2 * time.Second)
	rvUntrusted(t, a, "X/Y/d", "its LIST spanned the peer's UNWATCH/WATCH gap of X/Y/d")
}

// A peer that never serves WATCH (an export on NFS/FUSE, an older peer):
// watchOnce fails in Events, so watchStarted never runs and nothing
// calls takeWant. Each directory listed is still asked; evicted past
// maxWatch it leaves only wanted, its string stays in want: want grows
// with every directory ever listed (a find over a large tree).
func TestWatchBoundReviewWantWithoutConnection(t *testing.T) {
	c := &rvClock{t: time.Unix(1000, 0)}
	a := newAttrCache(time.Second, c.now)
	a.wake, a.watchTTL = make(chan struct{}, 1), 30*time.Second // as newPeerConn
	a.maxWatch = 100
	for i := range 10000 {
		call, _ := a.beginList(fmt.Sprintf("d%d", i))
		a.endList(fmt.Sprintf("d%d", i), call, []peerproto.Entry{}, nil)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.want) > 2*a.maxWatch {
		t.Errorf("no event connection ever: want holds %d directories (asked %d, wanted %d, bound %d)", len(a.want), len(a.asked), len(a.wanted), a.maxWatch)
	}
}

// BenchmarkWatchUnwatchedTree: the peer reports a tree of 4,000 watched
// directories gone (rm -rf: an UNWATCHED per directory), with 45,000
// attributes cached.
func BenchmarkWatchUnwatchedTree(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		a, _, ep := rvCache()
		a.mu.Lock()
		for i := range 45000 {
			a.putStatLocked(fmt.Sprintf("s%d/f%d", i%500, i), statCache{exists: true})
		}
		a.mu.Unlock()
		rvList(a, "X")
		for i := range 4000 {
			rvList(a, fmt.Sprintf("X/d%d", i))
		}
		want, _ := a.takeWant(ep)
		for _, d := range want {
			a.onEvent(ep, peerproto.WatchOK{Dir: d})
		}
		b.StartTimer()
		a.onEvent(ep, peerproto.Unwatched{Dir: "X"})
		for i := range 4000 {
			a.onEvent(ep, peerproto.Unwatched{Dir: fmt.Sprintf("X/d%d", i)})
		}
	}
}
