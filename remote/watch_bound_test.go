package remote

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// Past maxWatch directories, the one listed least recently is no longer
// watched: an UNWATCH goes out for it, its listing is trusted for the
// attribute timeout only, and a directory above one listed since is
// never the one let go. Listed again, it is watched again.
func TestWatchBoundEvictsLeastRecent(t *testing.T) {
	a, c, ep := rvCache()
	a.maxWatch = 4
	rvAnswer(t, a, ep)
	for _, d := range []string{"a", "b", "c"} {
		rvList(a, "", "a", "b", "c")
		rvList(a, d, "f")
		rvAnswer(t, a, ep)
		rvList(a, d, "f") // taken while watched: trusted past ttl
	}
	// Asked: "", a, b, c. Listing b/d (a fifth) lets a go, the least
	// recently listed; b, listed just now through b/d, stays.
	rvList(a, "b/d", "g")
	want, unwant := a.takeWant(ep)
	if !slices.Equal(want, []string{"b/d"}) || !slices.Equal(unwant, []string{"a"}) {
		t.Fatalf("asked to watch %q and to unwatch %q; want [b/d] and [a]", want, unwant)
	}
	for _, d := range want {
		if !a.onEvent(ep, peerproto.WatchOK{Dir: d}) {
			t.Fatalf("out of step at %q", d)
		}
	}
	if !a.onEvent(ep, peerproto.UnwatchOK{Dir: "a"}) {
		t.Fatal("UNWATCH OK out of step")
	}
	c.t = c.t.Add(2 * time.Second) // past ttl, within watchTTL
	if _, ok := a.listed("a"); ok {
		t.Fatal("a's listing trusted past the attribute timeout after its watch was let go")
	}
	for _, d := range []string{"b", "c"} {
		if _, ok := a.listed(d); !ok {
			t.Fatalf("%s's listing not trusted: its watch should stay", d)
		}
	}
	// Listed again, a is watched again, and c (now the least recent)
	// is let go.
	rvList(a, "a", "f")
	want, unwant = a.takeWant(ep)
	if !slices.Equal(want, []string{"a"}) || !slices.Equal(unwant, []string{"c"}) {
		t.Fatalf("asked to watch %q and to unwatch %q; want [a] and [c]", want, unwant)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.asked) != a.recent.Len() || len(a.asked) > a.maxWatch {
		t.Fatalf("%d directories asked, %d ordered, at most %d", len(a.asked), a.recent.Len(), a.maxWatch)
	}
	for d := range a.watched {
		if a.asked[d] == nil {
			t.Fatalf("%s watched but not asked", d)
		}
	}
}

// A directory whose WATCH is still on its way is not let go before its
// answer, and one never sent is dropped from what is to be asked.
func TestWatchBoundKeepsUnanswered(t *testing.T) {
	a, _, ep := rvCache()
	a.maxWatch = 2
	rvAnswer(t, a, ep)
	rvList(a, "", "a", "b")
	rvList(a, "a")
	want, _ := a.takeWant(ep) // a on its way, not answered
	if !slices.Equal(want, []string{"a"}) {
		t.Fatalf("asked to watch %q, want [a]", want)
	}
	rvList(a, "b") // a third: a is awaited, so nothing goes yet
	a.mu.Lock()
	if a.asked["a"] == nil || a.asked["b"] == nil {
		a.mu.Unlock()
		t.Fatal("a directory awaiting its WATCH OK was let go")
	}
	a.mu.Unlock()
	if !a.onEvent(ep, peerproto.WatchOK{Dir: "a"}) {
		t.Fatal("WATCH OK out of step")
	}
	rvList(a, "b") // now a, the least recent, goes
	want, unwant := a.takeWant(ep)
	if !slices.Equal(want, []string{"b"}) || !slices.Equal(unwant, []string{"a"}) {
		t.Fatalf("asked to watch %q and to unwatch %q; want [b] and [a]", want, unwant)
	}
	// Past the bound while b's answer is awaited: the directories
	// listed meanwhile are asked, and once the answers come, the least
	// recent go until the bound holds again.
	rvList(a, "c")
	rvList(a, "d")
	want, unwant = a.takeWant(ep)
	if !slices.Equal(want, []string{"c", "d"}) || len(unwant) != 0 {
		t.Fatalf("asked to watch %q and to unwatch %q; want [c d] and none (b is on its way)", want, unwant)
	}
	for _, d := range []string{"b", "c", "d"} {
		if !a.onEvent(ep, peerproto.WatchOK{Dir: d}) {
			t.Fatalf("out of step at %q", d)
		}
	}
	_, unwant = a.takeWant(ep)
	if !slices.Equal(unwant, []string{"b", "c"}) {
		t.Fatalf("asked to unwatch %q once answered; want [b c]", unwant)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.asked) != 2 || a.asked["d"] == nil || !a.watched["d"] {
		t.Fatalf("asked %d directories (d: %v), want the root and d", len(a.asked), a.asked["d"] != nil)
	}
	// A WATCH not sent yet is dropped, not sent, when let go.
	a.askLocked("e")
	a.askLocked("f")
	a.mu.Unlock()
	want, unwant = a.takeWant(ep)
	a.mu.Lock()
	if !slices.Equal(want, []string{"f"}) || !slices.Equal(unwant, []string{"d"}) || a.asked["e"] != nil {
		t.Fatalf("asked to watch %q and to unwatch %q (e asked: %v); want [f] and [d]: e dropped unsent, d let go", want, unwant, a.asked["e"] != nil)
	}
}

// A new event connection asks again for the directories asked before,
// the most recent kept (at most maxWatch), in the order they were listed.
func TestWatchBoundReconnectKeepsRecent(t *testing.T) {
	a, _, ep := rvCache()
	a.maxWatch = 3
	rvAnswer(t, a, ep)
	for _, d := range []string{"a", "b", "c", "d"} {
		rvList(a, d)
		rvAnswer(t, a, ep)
	}
	rvList(a, "b") // b is now more recent than d
	rvAnswer(t, a, ep)
	a.watchEnded(ep)
	ep = a.watchStarted()
	want, unwant := a.takeWant(ep)
	if !slices.Equal(slices.Sorted(slices.Values(want)), []string{"", "b", "d"}) || len(unwant) != 0 {
		t.Fatalf("a new connection asks to watch %q and to unwatch %q; want the root, b and d, and none", want, unwant)
	}
	for _, d := range want {
		if !a.onEvent(ep, peerproto.WatchOK{Dir: d}) {
			t.Fatalf("out of step at %q", d)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.watched) != 3 || len(a.asked) != 3 || a.recent.Len() != 3 {
		t.Fatalf("watched %d, asked %d, ordered %d; want 3 each", len(a.watched), len(a.asked), a.recent.Len())
	}
	var order []string
	for e := a.recent.Front(); e != nil; e = e.Next() {
		order = append(order, e.Value.(string))
	}
	if !slices.Equal(order, []string{"", "b", "d"}) {
		t.Fatalf("most recent first: %q, want the root, b, d", order)
	}
}

// inotifyWatches counts the inotify watches this process holds (the test
// peers run in it), from /proc/self/fdinfo.
func inotifyWatches(t *testing.T) int {
	t.Helper()
	fds, err := filepath.Glob("/proc/self/fdinfo/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range fds {
		f, err := os.Open(p)
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "inotify wd:") {
				n++
			}
		}
		f.Close()
	}
	return n
}

// A mount that lists many directories of a real peer has it watch at
// most maxWatch of them at once (inotify watches counted in the peer's
// process), and still sees changes made behind its back in those it
// listed last, as soon as they are reported.
func TestWatchBoundOnPeer(t *testing.T) {
	const dirs, bound = 12, 5
	bob := startPeer(t, t.TempDir())
	for i := range dirs {
		bobFile(t, bob, fmt.Sprintf("d%02d/f", i), []byte("x"))
	}
	before := inotifyWatches(t)
	s, _ := watchedStore(t, bob, "")
	s.mu.Lock()
	p := s.peers["bob"]
	s.mu.Unlock()
	p.attrs.mu.Lock()
	p.attrs.maxWatch = bound
	p.attrs.mu.Unlock()
	listWatched(t, s, "")
	for i := range dirs {
		s.names(t, "bob", fmt.Sprintf("d%02d", i))
		testutil.Eventually(t, "the peer's watches within the bound", func() bool {
			return inotifyWatches(t)-before <= bound
		})
	}
	last := fmt.Sprintf("d%02d", dirs-1)
	testutil.Eventually(t, "bob watching "+last, func() bool { return s.watching(last) })
	if s.watching("d00") {
		t.Fatal("d00, listed first, still watched past the bound")
	}
	if got := inotifyWatches(t) - before; got > bound || got < 2 {
		t.Fatalf("the peer holds %d inotify watches for the mount, want 2 to %d", got, bound)
	}
	listWatched(t, s, last)
	bobFile(t, bob, last+"/new", []byte("fresh"))
	testutil.Eventually(t, "a file made on bob's disk in "+last+" seen", func() bool {
		return slices.Contains(s.names(t, "bob", last), "new")
	})
	// The first, listed again, is watched again.
	s.names(t, "bob", "d00")
	testutil.Eventually(t, "bob watching d00 again", func() bool { return s.watching("d00") })
	if got := inotifyWatches(t) - before; got > bound {
		t.Fatalf("the peer holds %d inotify watches for the mount, at most %d", got, bound)
	}
}
