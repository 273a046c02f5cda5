package remote

// (A review's model, kept as a test: see TestWatchBoundReviewSim.)

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

type simMsg struct {
	kind string // c2p: WATCH, UNWATCH; p2c: OK, REFUSE, UOK, UNWATCHED
	dir  string
}

type simPending struct {
	dir   string
	call  *listCall
	begin int
	stat  bool
	gen   uint64
	ep    uint64
}

var simDouble int

func simChain(d string) []string {
	out := []string{d}
	for d != "" {
		d = parent(d)
		out = append(out, d)
	}
	return out
}

// TestWatchBoundReviewSim is a model of the event connection an
// independent review wrote: random listings, STATs, evictions, moves on
// the peer (UNWATCHED), refusals, WATCHes sent twice and reconnections,
// against a simulated peer with its own watches. After every step, a
// listing or STAT trusted past the attribute timeout must have begun
// after the peer's unbroken watch of its directory and each one above,
// and the bookkeeping must agree with itself; once quiet, the peer's
// watches must be the mount's.
func TestWatchBoundReviewSim(t *testing.T) {
	dirs := []string{"", "a", "b", "c", "a/x", "a/y", "b/x", "c/x", "a/x/p", "a/x/q", "b/x/p"}
	seeds := int64(3000)
	if testing.Short() {
		seeds = 300
	}
	for seed := int64(0); seed < seeds; seed++ {
		if msg := simRun(seed, dirs, 1000); msg != "" {
			t.Fatalf("seed %d: %s", seed, msg)
		}
	}
	t.Logf("steps with a double send: %d", simDouble)
}

func simRun(seed int64, dirs []string, steps int) (fail string) {
	r := rand.New(rand.NewSource(seed))
	c := &rvClock{t: time.Unix(1000, 0)}
	a := newAttrCache(time.Nanosecond, c.now)
	a.wake, a.watchTTL = make(chan struct{}, 1), time.Hour
	a.maxWatch = 1 + r.Intn(4)
	ep := a.watchStarted()
	connected := true
	var c2p, p2c []simMsg
	peerW := map[string]int{} // dir -> step its continuous watch began
	var pend []simPending
	trustL, trustS := map[string]int{}, map[string]int{}
	var log []string
	defer func() {
		if fail != "" {
			n := len(log)
			if n > 40 {
				log = log[n-40:]
			}
			fail += "\n" + fmt.Sprint(log)
		}
	}()
	for step := 1; step <= steps; step++ {
		c.t = c.t.Add(time.Millisecond)
		op := r.Intn(10)
		switch op {
		case 0: // begin list / stat
			d := dirs[r.Intn(len(dirs))]
			if r.Intn(3) == 0 {
				g, e := a.statBegin(d)
				pend = append(pend, simPending{dir: d, begin: step, stat: true, gen: g, ep: e})
				log = append(log, fmt.Sprintf("%d statBegin %q", step, d))
			} else if call, leader := a.beginList(d); leader {
				pend = append(pend, simPending{dir: d, call: call, begin: step})
				log = append(log, fmt.Sprintf("%d beginList %q", step, d))
			}
		case 1: // end one
			if len(pend) > 0 {
				i := r.Intn(len(pend))
				p := pend[i]
				pend = slices.Delete(pend, i, i+1)
				if p.stat {
					a.rememberStat(p.dir, peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755}, p.gen, p.ep)
					log = append(log, fmt.Sprintf("%d rememberStat %q", step, p.dir))
				} else {
					a.endList(p.dir, p.call, nil, nil)
					log = append(log, fmt.Sprintf("%d endList %q", step, p.dir))
				}
				// trust check
				a.mu.Lock()
				trusted := false
				if p.stat {
					sc, ok := a.stats[p.dir]
					trusted = ok && sc.epoch != 0 && sc.epoch == a.epoch && a.watchedLocked(p.dir)
				} else {
					dc, ok := a.dirs[p.dir]
					trusted = ok && dc.epoch != 0 && dc.epoch == a.epoch && a.watchedLocked(p.dir)
				}
				a.mu.Unlock()
				if p.stat {
					trustS[p.dir] = p.begin
				} else if a.dirs[p.dir] != nil {
					trustL[p.dir] = p.begin
				}
				if trusted {
					// every dir in the chain must have been watched by the
					// peer continuously since the request began, unless an
					// UNWATCHED is on its way.
					for _, x := range simChain(p.dir) {
						st, ok := peerW[x]
						if ok && st <= p.begin {
							continue
						}
						if slices.Contains(p2c, simMsg{"UNWATCHED", x}) {
							continue
						}
						return fmt.Sprintf("%q (stat %v) begun at %d trusted but peer watch of %q began at %d (watched %v)", p.dir, p.stat, p.begin, x, st, ok)
					}
				}
			}
		case 2, 3: // writer
			if connected {
				want, unwant := a.takeWant(ep)
				for _, d := range unwant {
					c2p = append(c2p, simMsg{"UNWATCH", d})
				}
				for _, d := range want {
					c2p = append(c2p, simMsg{"WATCH", d})
				}
				if len(want)+len(unwant) > 0 {
					log = append(log, fmt.Sprintf("%d take %q %q", step, want, unwant))
				}
			}
		case 4, 5: // peer handles a request
			if connected && len(c2p) > 0 {
				m := c2p[0]
				c2p = c2p[1:]
				switch m.kind {
				case "WATCH":
					if _, ok := peerW[m.dir]; !ok && r.Intn(8) == 0 {
						p2c = append(p2c, simMsg{"REFUSE", m.dir})
					} else {
						if _, ok := peerW[m.dir]; !ok {
							peerW[m.dir] = step
						}
						p2c = append(p2c, simMsg{"OK", m.dir})
					}
				case "UNWATCH":
					delete(peerW, m.dir)
					p2c = append(p2c, simMsg{"UOK", m.dir})
				}
				log = append(log, fmt.Sprintf("%d peer %v", step, m))
			}
		case 6, 7: // mount reads an event
			if connected && len(p2c) > 0 {
				m := p2c[0]
				p2c = p2c[1:]
				var pm peerproto.Message
				switch m.kind {
				case "OK":
					pm = peerproto.WatchOK{Dir: m.dir}
				case "REFUSE":
					pm = peerproto.Refusal{Err: peerproto.Fail("WATCH", peerproto.CodeTooLarge, "x")}
				case "UOK":
					pm = peerproto.UnwatchOK{Dir: m.dir}
				case "UNWATCHED":
					pm = peerproto.Unwatched{Dir: m.dir}
				}
				log = append(log, fmt.Sprintf("%d mount %v", step, m))
				if !a.onEvent(ep, pm) {
					return fmt.Sprintf("out of step at %v", m)
				}
			}
		case 8: // peer: a watched dir moved
			if connected && r.Intn(3) == 0 {
				x := dirs[1+r.Intn(len(dirs)-1)]
				var gone []string
				for d := range peerW {
					if under(d, x) {
						gone = append(gone, d)
					}
				}
				slices.Sort(gone)
				for _, d := range gone {
					delete(peerW, d)
					p2c = append(p2c, simMsg{"UNWATCHED", d})
				}
				log = append(log, fmt.Sprintf("%d peer moves %q: %q", step, x, gone))
			}
		case 9: // connection drop / reconnect
			if r.Intn(6) == 0 {
				if connected {
					a.watchEnded(ep)
					connected = false
					log = append(log, fmt.Sprintf("%d watchEnded", step))
				} else {
					ep = a.watchStarted()
					connected = true
					c2p, p2c = nil, nil
					peerW = map[string]int{}
					log = append(log, fmt.Sprintf("%d watchStarted", step))
				}
			}
		}
		if connected {
			a.mu.Lock()
			msg := simTrusted(a, "listing", trustL, func(d string) uint64 {
				if dc, ok := a.dirs[d]; ok {
					return dc.epoch
				}
				return 0
			}, peerW, p2c)
			if msg == "" {
				msg = simTrusted(a, "stat", trustS, func(d string) uint64 {
					if sc, ok := a.stats[d]; ok {
						return sc.epoch
					}
					return 0
				}, peerW, p2c)
			}
			a.mu.Unlock()
			if msg != "" {
				return fmt.Sprintf("step %d: %s", step, msg)
			}
		}
		if msg := simInvariants(a, connected, c2p, p2c, peerW); msg != "" {
			return fmt.Sprintf("step %d: %s", step, msg)
		}
	}
	// Quiesce.
	if !connected {
		ep = a.watchStarted()
		c2p, p2c = nil, nil
		peerW = map[string]int{}
	}
	for i := 0; i < 100; i++ {
		want, unwant := a.takeWant(ep)
		for _, d := range unwant {
			c2p = append(c2p, simMsg{"UNWATCH", d})
		}
		for _, d := range want {
			c2p = append(c2p, simMsg{"WATCH", d})
		}
		for _, m := range c2p {
			switch m.kind {
			case "WATCH":
				peerW[m.dir] = 0
				p2c = append(p2c, simMsg{"OK", m.dir})
			case "UNWATCH":
				delete(peerW, m.dir)
				p2c = append(p2c, simMsg{"UOK", m.dir})
			}
		}
		c2p = nil
		for _, m := range p2c {
			var pm peerproto.Message = peerproto.UnwatchOK{Dir: m.dir}
			switch m.kind {
			case "OK":
				pm = peerproto.WatchOK{Dir: m.dir}
			case "UNWATCHED":
				pm = peerproto.Unwatched{Dir: m.dir}
			case "REFUSE":
				pm = peerproto.Refusal{Err: peerproto.Fail("WATCH", peerproto.CodeTooLarge, "x")}
			}
			if !a.onEvent(ep, pm) {
				return fmt.Sprintf("quiesce: out of step at %v", m)
			}
		}
		p2c = nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for d := range peerW {
		if !a.watched[d] {
			return fmt.Sprintf("quiescent: peer watches %q, mount does not account for it (watched %v)", d, a.watched)
		}
	}
	for d := range a.watched {
		if _, ok := peerW[d]; !ok {
			return fmt.Sprintf("quiescent: mount thinks %q watched, peer does not", d)
		}
	}
	if len(a.asked) > a.maxWatch {
		return fmt.Sprintf("quiescent: %d asked > %d", len(a.asked), a.maxWatch)
	}
	return ""
}

func simInvariants(a *attrCache, connected bool, c2p, p2c []simMsg, peerW map[string]int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, v := range a.inFlight {
		n += v
	}
	if n != len(a.sent) {
		return fmt.Sprintf("inFlight sums %d, sent %d", n, len(a.sent))
	}
	for _, v := range a.inFlight {
		if v >= 2 {
			simDouble++
		}
	}
	for d, v := range a.inFlight {
		cnt := 0
		for _, s := range a.sent {
			if s == d {
				cnt++
			}
		}
		if cnt != v || v <= 0 {
			return fmt.Sprintf("inFlight[%q]=%d, in sent %d times", d, v, cnt)
		}
	}
	for d := range a.wanted {
		if !slices.Contains(a.want, d) {
			return fmt.Sprintf("wanted %q not in want", d)
		}
	}
	if len(a.asked) != a.recent.Len() {
		return fmt.Sprintf("asked %d, recent %d", len(a.asked), a.recent.Len())
	}
	for e := a.recent.Front(); e != nil; e = e.Next() {
		d := e.Value.(string)
		if a.asked[d] != e {
			return fmt.Sprintf("recent has %q not asked by it", d)
		}
		if d != "" && a.asked[parent(d)] == nil {
			return fmt.Sprintf("%q asked, its parent not", d)
		}
	}
	for d := range a.watched {
		if a.asked[d] == nil {
			return fmt.Sprintf("%q watched, not asked", d)
		}
	}
	return ""
}

// simTrusted checks, with a.mu held, that each answer of kind in begun
// (directory: the step its request began) that a trusts now (its epoch,
// from epochOf, is the current one and the directory is watched) began
// after the peer's unbroken watch of the directory and each one above.
func simTrusted(a *attrCache, kind string, begun map[string]int, epochOf func(string) uint64, peerW map[string]int, p2c []simMsg) string {
	for d, b := range begun {
		if ep := epochOf(d); ep == 0 || ep != a.epoch || !a.watchedLocked(d) {
			continue
		}
		for _, x := range simChain(d) {
			st, ok := peerW[x]
			if ok && st <= b || slices.Contains(p2c, simMsg{"UNWATCHED", x}) {
				continue
			}
			return fmt.Sprintf("%s of %q begun at %d trusted; peer watch of %q began %d (%v)", kind, d, b, x, st, ok)
		}
	}
	return ""
}
