package remote

import (
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// rv4Tree: "" lists d, d lists sub, sub lists deep: all watched.
func rv4Tree(t *testing.T) (*attrCache, *rvClock, uint64) {
	a, c, ep := rvCache()
	list := func(dir string, es ...peerproto.Entry) {
		call, _ := a.beginList(dir)
		a.endList(dir, call, es, nil)
	}
	dirE := func(n string) peerproto.Entry {
		return peerproto.Entry{Name: n, Type: peerproto.TypeDir, Mode: 0o755, Mtime: 100}
	}
	rvAnswer(t, a, ep)
	for range 3 {
		list("", dirE("d"))
		list("d", dirE("sub"))
		list("d/sub", dirE("deep"))
		list("d/sub/deep")
		rvAnswer(t, a, ep)
	}
	if !a.watchedLocked("d/sub/deep") {
		t.Fatal("d/sub/deep not watched")
	}
	c.t = c.t.Add(5 * time.Second)
	a.takeForeign()
	return a, c, ep
}

// This mount makes a file in d (a new file's upload, or an rm / mv /
// mkdir written behind: entryChanged(d) marks ownAt[d], d's "self"),
// or changes d's mode; 100 ms later another writer moves d/sub/deep
// away. The peer's UNWATCHED d/sub/deep is not this mount's doing, but
// the ancestor walk of pathsMovedLocked finds ownAt[d] and ignores it:
// no foreign change, and the tree under it not dropped.
func TestRV4OwnChangeInAncestorHidesUnwatched(t *testing.T) {
	for _, tc := range []struct {
		name string
		own  func(a *attrCache, c *rvClock)
	}{
		{"file made in d", func(a *attrCache, c *rvClock) { a.entryChanged("d", c.t.UnixNano(), false, false) }},
		{"file removed from d (written behind)", func(a *attrCache, c *rvClock) {
			a.gone("d/x")
			a.entryChanged("d", c.t.UnixNano(), true, false)
		}},
		{"chmod of d", func(a *attrCache, c *rvClock) {
			a.changedHere("d", func(e *peerproto.Entry) { e.Mode = 0o700 })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, c, ep := rv4Tree(t)
			tc.own(a, c)
			c.t = c.t.Add(100 * time.Millisecond)
			a.onEvent(ep, peerproto.Unwatched{Dir: "d/sub/deep"})
			if chs := a.takeForeign(); len(chs) != 1 || chs[0].Path != "d/sub/deep" {
				t.Errorf("another writer's move of d/sub/deep (UNWATCHED), 100 ms after this mount's %s: told %+v", tc.name, chs)
			}
		})
	}
}
