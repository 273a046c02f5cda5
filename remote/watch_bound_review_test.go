package remote

// Cases an independent review of the bound on watched directories
// (watch.go, evictLocked) found, kept as tests.

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// A LIST of a sent while a is watched; a is evicted (UNWATCH, the peer
// stops reporting it), a file is made in a on the peer (unreported),
// then a is watched again (a/sub listed) before the LIST's answer is
// recorded: the answer, which may predate the file, is trusted past ttl.
func TestWatchBoundReviewGapListInFlight(t *testing.T) {
	a, c, ep := rvCache()
	a.maxWatch = 3
	rvAnswer(t, a, ep)
	rvList(a, "", "a", "b", "c")
	rvList(a, "a", "f", "sub")
	rvAnswer(t, a, ep) // a watched
	call, leader := a.beginList("a")
	if !leader || call.epoch != ep {
		t.Fatalf("LIST of a not begun watched")
	}
	rvList(a, "b")
	rvAnswer(t, a, ep)
	rvList(a, "c") // a let go: UNWATCH a
	want, unwant := a.takeWant(ep)
	if !slices.Contains(unwant, "a") {
		t.Fatalf("a not let go: want %q unwant %q", want, unwant)
	}
	for _, d := range want {
		a.onEvent(ep, peerproto.WatchOK{Dir: d})
	}
	a.onEvent(ep, peerproto.UnwatchOK{Dir: "a"})
	// peer: touch a/new  -- not reported, a is not watched
	rvList(a, "a/sub") // a watched again
	rvAnswer(t, a, ep)
	a.endList("a", call, []peerproto.Entry{{Type: peerproto.TypeFile, Mode: 0o644, Name: "f"}, {Type: peerproto.TypeDir, Mode: 0o755, Name: "sub"}}, nil)
	c.t = c.t.Add(2 * time.Second) // past ttl
	rvUntrusted(t, a, "a", "a went unwatched while its LIST was on its way")
}

// The same for a STAT of a watched directory (statBegin/rememberStat).
func TestWatchBoundReviewGapStatInFlight(t *testing.T) {
	a, c, ep := rvCache()
	a.maxWatch = 3
	rvAnswer(t, a, ep)
	rvList(a, "", "a", "b", "c")
	rvList(a, "a", "sub")
	rvAnswer(t, a, ep)
	gen, sep := a.statBegin("a")
	if sep != ep {
		t.Fatal("a not watched")
	}
	rvList(a, "b")
	rvAnswer(t, a, ep)
	rvList(a, "c")
	rvAnswer(t, a, ep)
	// peer: chmod a (unreported)
	rvList(a, "a/sub")
	rvAnswer(t, a, ep)
	a.rememberStat("a", peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755, Name: "a"}, gen, sep)
	c.t = c.t.Add(2 * time.Second)
	if _, _, ok := a.cached("a"); ok {
		t.Errorf("a's STAT answer trusted past ttl although a went unwatched while it was on its way")
	}
}

// X/a's WATCH on its way; UNWATCHED X; X/a listed again (asked, in
// want); the old WATCH OK X/a marks it watched; X/a is then let go
// while still in want: no UNWATCH goes out, the peer keeps the watch.
func TestWatchBoundReviewWatchedInWantLeaks(t *testing.T) {
	a, _, ep := rvCache()
	a.maxWatch = 3
	rvAnswer(t, a, ep)
	rvList(a, "", "X", "b")
	rvList(a, "X", "a")
	rvAnswer(t, a, ep) // X watched
	rvList(a, "X/a")
	want, _ := a.takeWant(ep) // WATCH X/a on its way
	if !slices.Equal(want, []string{"X/a"}) {
		t.Fatalf("want %q", want)
	}
	a.onEvent(ep, peerproto.Unwatched{Dir: "X"}) // mv X Y; mkdir -p X/a on the peer
	rvList(a, "X/a")                             // listed again: asked, want [X/a X]
	if !a.onEvent(ep, peerproto.WatchOK{Dir: "X/a"}) {
		t.Fatal("out of step")
	}
	a.mu.Lock()
	peerHolds := a.watched["X/a"]
	a.mu.Unlock()
	if !peerHolds {
		t.Fatal("setup: X/a not watched")
	}
	rvList(a, "b") // X/a let go
	_, unwant := a.takeWant(ep)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.asked["X/a"] == nil && !slices.Contains(unwant, "X/a") && !slices.Contains(a.unwant, "X/a") {
		t.Errorf("X/a let go without UNWATCH although the peer confirmed its watch: the peer keeps it unaccounted (unwant %q)", unwant)
	}
}

// BenchmarkWatchEvict: a directory listed past the bound, with the
// caches full: letting the least recent go must not scan them.
func BenchmarkWatchEvict(b *testing.B) {
	a, _, _ := rvCache()
	a.mu.Lock()
	for i := range 45000 {
		a.putStatLocked(fmt.Sprintf("s%d/f%d", i%500, i), statCache{exists: true})
	}
	for i := range a.maxWatch {
		a.putDirLocked(fmt.Sprintf("d%d", i), &dirCache{entries: map[string]peerproto.Entry{}})
		a.askLocked(fmt.Sprintf("d%d", i))
	}
	a.takeWantLocked()
	a.mu.Unlock()
	i := 0
	for b.Loop() {
		i++
		a.mu.Lock()
		a.askLocked(fmt.Sprintf("n%d", i))
		a.takeWantLocked()
		a.mu.Unlock()
	}
}

// BenchmarkWatchReconnect: a new event connection with 20,000
// directories cached and the bound's worth asked before.
func BenchmarkWatchReconnect(b *testing.B) {
	a, _, _ := rvCache()
	a.mu.Lock()
	for i := range 40000 {
		a.putStatLocked(fmt.Sprintf("s%d/f%d", i%500, i), statCache{exists: true})
	}
	for i := range 20000 {
		d := fmt.Sprintf("d%d/e%d", i%100, i)
		a.putDirLocked(d, &dirCache{entries: map[string]peerproto.Entry{}})
		a.askLocked(d)
	}
	a.mu.Unlock()
	for b.Loop() {
		a.watchStarted()
	}
}

// takeWantLocked is takeWant with a.mu held, for the benchmarks.
func (a *attrCache) takeWantLocked() {
	ep := a.epoch
	a.mu.Unlock()
	a.takeWant(ep)
	a.mu.Lock()
}
