package remote

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// checkBelow fails t unless a.below counts exactly the keys of a.stats
// and of a.dirs under each directory (recomputed from the maps).
func checkBelow(t *testing.T, a *attrCache, step string) {
	t.Helper()
	want := map[string]int{}
	count := func(k string) {
		for k != "" {
			k = parent(k)
			want[k]++
		}
	}
	for k := range a.stats {
		count(k)
	}
	for k := range a.dirs {
		count(k)
	}
	if len(want) != len(a.below) {
		t.Fatalf("after %s: below has %d directories, the maps %d: %v against %v", step, len(a.below), len(want), a.below, want)
	}
	for k, n := range want {
		if a.below[k] != n {
			t.Fatalf("after %s: below[%q] = %d, the maps hold %d under it", step, k, a.below[k], n)
		}
	}
}

// keysUnder returns the keys of a.stats and a.dirs at or under path.
func keysUnder(a *attrCache, path string) (stats, dirs []string) {
	for k := range a.stats {
		if under(k, path) {
			stats = append(stats, k)
		}
	}
	for k := range a.dirs {
		if under(k, path) {
			dirs = append(dirs, k)
		}
	}
	return stats, dirs
}

// The count of what is cached under each directory, which spares
// dropTreeLocked a scan of everything per removed file, stays exact
// through every way the caches change (answers, listings, the mount's
// own changes, the peer's reports, sweeps, clears), and a tree dropped
// by it loses exactly what lay under it.
func TestAttrCacheBelowCounts(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAttrCache(time.Second, func() time.Time { return now })
	a.watchTTL = time.Minute
	rng := rand.New(rand.NewPCG(1, 2))
	paths := []string{""}
	for _, d := range []string{"a", "b", "a/c", "a/c/d", "b/e"} {
		paths = append(paths, d)
		for i := range 4 {
			paths = append(paths, fmt.Sprintf("%s/f%d", d, i))
		}
	}
	pick := func() string { return paths[rng.IntN(len(paths))] }
	file := peerproto.Entry{Type: peerproto.TypeFile, Mode: 0o644, Size: 3}
	dir := peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755}
	for step := range 5000 {
		p := pick()
		var what string
		switch op := rng.IntN(12); op {
		case 0, 1:
			what = "remember " + p
			a.remember(p, file, rng.IntN(4) != 0)
		case 2:
			what = "list " + p
			call, leader := a.beginList(p)
			if leader {
				var list []peerproto.Entry
				for _, q := range paths {
					if q != "" && parent(q) == p {
						e := file
						if rng.IntN(2) == 0 {
							e = dir
						}
						e.Name = base(q)
						list = append(list, e)
					}
				}
				a.endList(p, call, list, nil)
			}
		case 3:
			what = "gone " + p
			a.gone(p)
		case 4:
			what = "forget " + p
			a.forget(p)
		case 5:
			what = "forgetTree " + p
			a.forgetTree(p)
		case 6:
			what = "emptyDir " + p
			a.emptyDir(p)
		case 7:
			q := pick()
			if p == "" || q == "" || under(q, p) || under(p, q) {
				continue
			}
			what = "moved " + p + " " + q
			a.moved(p, q)
		case 8, 9:
			what = "event " + p
			a.mu.Lock()
			if rng.IntN(2) == 0 {
				a.eventedLocked(p, peerproto.Entry{}, true)
			} else {
				a.eventedLocked(p, dir, false)
			}
			a.mu.Unlock()
		case 10:
			what = "drop " + p
			a.mu.Lock()
			a.dropTreeLocked(p)
			a.mu.Unlock()
			stats, dirs := keysUnder(a, p)
			if p == "" {
				stats, dirs = nil, nil // "" holds only itself (under)
				if _, ok := a.stats[""]; ok {
					stats = []string{""}
				}
				if _, ok := a.dirs[""]; ok {
					dirs = []string{""}
				}
			}
			if len(stats)+len(dirs) > 0 {
				t.Fatalf("step %d: dropping %q left %v and %v", step, p, stats, dirs)
			}
		default:
			what = "time"
			now = now.Add(300 * time.Millisecond)
			if rng.IntN(50) == 0 {
				what = "clear"
				a.clear()
			}
		}
		a.mu.Lock()
		checkBelow(t, a, fmt.Sprintf("step %d (%s)", step, what))
		a.mu.Unlock()
	}
}

// A tree dropped keeps everything beside it: only keys under the path
// go, not those that merely share its prefix.
func TestAttrCacheDropTreeKeepsSiblings(t *testing.T) {
	a := newAttrCache(time.Second, time.Now)
	for _, p := range []string{"a", "a/x", "a/x/y", "ab", "ab/x", "b/a"} {
		a.remember(p, peerproto.Entry{Type: peerproto.TypeFile}, true)
	}
	a.mu.Lock()
	a.dropTreeLocked("a")
	checkBelow(t, a, "drop a")
	a.mu.Unlock()
	for _, p := range []string{"a", "a/x", "a/x/y"} {
		if _, ok := a.stats[p]; ok {
			t.Errorf("%s still cached after its tree was dropped", p)
		}
	}
	for _, p := range []string{"ab", "ab/x", "b/a"} {
		if _, ok := a.stats[p]; !ok {
			t.Errorf("%s dropped with a's tree", p)
		}
	}
}

// BenchmarkWatchedRemovalEvents is what the peer's report of one removed
// file costs the mount while it caches many names (rm -rf of a watched
// tree reports each file): it must not grow with the names cached.
func BenchmarkWatchedRemovalEvents(b *testing.B) {
	for _, cached := range []int{1000, 20000} {
		b.Run(fmt.Sprint(cached), func(b *testing.B) {
			a := newAttrCache(time.Second, time.Now)
			for i := range cached {
				a.remember(fmt.Sprintf("d%d/f%d", i%50, i), peerproto.Entry{Type: peerproto.TypeFile}, true)
			}
			names := make([]string, b.N)
			for i := range names {
				names[i] = fmt.Sprintf("gone/f%d", i)
			}
			b.ResetTimer()
			for i := range b.N {
				a.mu.Lock()
				a.eventedLocked(names[i], peerproto.Entry{}, true)
				a.mu.Unlock()
			}
		})
	}
}
