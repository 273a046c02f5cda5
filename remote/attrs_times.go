package remote

import (
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// The times this mount shows for its own changes.
//
// A change written behind (a removal, rename or mkdir in a directory, a
// directory's chmod or utimes) or a file stored in a directory shows at
// once the times it gives: this mount's clock (a guess), since the peer
// stamps its own only when it carries the change out, a moment later.
// Had the peer's answers later simply replaced the guess, the times
// would move with nothing changed: tar -c, which compares a
// directory's ctime before and after it archives it, failed with "file
// changed as we read it" right after tar -x into a peer folder.
//
// So the guess is kept (timeGuess): until the peer's times of the
// change are known it is what the mount shows whatever the peer says
// (untied). They come with the change's own answer: a STAT sent right
// behind the changes written behind, in the same round trip (sendBatch),
// a SETATTR's reply (answered), a PUT's directory times (tie). From then
// on (tied), while the peer's answers keep those times, the guess is
// shown in their place. Any other times the peer gives are a later
// change (another writer's, or this mount's own that it asked
// synchronously), shown as they are: the guess is let go. So is it when
// the path is removed, or answered exactly by the mount's own
// synchronous change (remember), or when the caches are reset, or if
// its peer's times could not be learnt within guessLapse. A change made
// on the peer between this mount's change and that answer (a moment) is
// taken for it: its times are this mount's until the next change.

// timeGuess is what this mount shows of one path's times after its own
// change.
type timeGuess struct {
	m, c int64 // the times shown: mtime (if hasM) and ctime
	hasM bool  // the mtime is guessed too (else the peer's is shown)
	seq  uint64
	at   time.Time // when it was made: an untied one lapses (guessLapse)
	// unmoved: the change did not move the times shown (the peer's
	// clock ahead of this machine's: the guess was no later than what
	// the peer said before). Such a guess gives way to the peer's times
	// of the change once they are known, so that the change shows.
	unmoved bool
	// tied: pm and pc are the peer's times of the state it guessed.
	tied   bool
	pm, pc int64
	// nm and nc are the peer's times of the latest state tied so far for
	// the path, carried from guess to guess: an answer older than them
	// (read out of order: two uploads in one directory) is not tied.
	nm, nc int64
}

// guessLapse is how long a guess whose peer's times could not be
// learnt (the answer to its change was lost) is kept.
const guessLapse = 30 * time.Second

// maxGuesses bounds the guesses kept: past it, tied ones are let go
// first (their paths may then show the peer's times).
const maxGuesses = 1 << 14

// guessLocked records that path now shows the times of e as this mount's
// guess (mtime only if hasM), made now; unmoved says the change did not
// move them. A directory's or a file's with one name only: hard links of
// a file (reached by other paths) would show different times. Called
// with a.mu held.
func (a *attrCache) guessLocked(path string, e peerproto.Entry, hasM, unmoved bool) *timeGuess {
	if e.Has&peerproto.AttrCtime == 0 || !e.IsDir() && e.Has&peerproto.AttrNlink != 0 && e.Nlink > 1 {
		a.unguessLocked(path)
		return nil
	}
	if len(a.guesses) >= maxGuesses {
		a.trimGuessesLocked()
	}
	a.guessSeq++
	g := &timeGuess{m: e.Mtime, c: e.Ctime, hasM: hasM, unmoved: unmoved, seq: a.guessSeq, at: a.now()}
	if old, ok := a.guesses[path]; ok {
		g.nm, g.nc = old.nm, old.nc
		// Not moved past an earlier guess of this mount's, which did
		// move them: moved too.
		g.unmoved = g.unmoved && old.unmoved
	}
	a.putGuessLocked(path, g)
	return g
}

// trimGuessesLocked lets go of a quarter of the guesses, tied ones
// first. Called with a.mu held.
func (a *attrCache) trimGuessesLocked() {
	drop := len(a.guesses) / 4
	for _, tied := range []bool{true, false} {
		for p, g := range a.guesses {
			if drop == 0 {
				return
			}
			if g.tied == tied {
				a.unguessLocked(p)
				drop--
			}
		}
	}
}

// guessEditLocked records the guess that change, an edit of path's
// times by this mount's own change (editLocked), made: the times of its
// cached entry after it (edited; before it, before), the mtime too
// (changed or not, it is the one shown, perhaps an earlier guess), or if
// none is cached, those change gives by itself (an mtime only where
// change sets one). Called with a.mu held.
func (a *attrCache) guessEditLocked(path string, edited, before *peerproto.Entry, change func(*peerproto.Entry)) {
	probe := peerproto.Entry{Has: peerproto.AttrCtime}
	change(&probe)
	if probe.Ctime == 0 {
		return // no time of it changed
	}
	if edited == nil {
		a.guessLocked(path, probe, probe.Mtime != 0, false)
		return
	}
	unmoved := before.Has&peerproto.AttrCtime != 0 && edited.Ctime <= before.Ctime
	a.guessLocked(path, *edited, true, unmoved)
}

// putGuessLocked sets guesses[path], counting it in guessBelow. Called
// with a.mu held.
func (a *attrCache) putGuessLocked(path string, g *timeGuess) {
	if _, had := a.guesses[path]; !had {
		a.countGuessLocked(path, 1)
	}
	a.guesses[path] = g
}

// unguessLocked lets go of path's guess. Called with a.mu held.
func (a *attrCache) unguessLocked(path string) {
	if _, had := a.guesses[path]; had {
		delete(a.guesses, path)
		a.countGuessLocked(path, -1)
	}
}

// countGuessLocked adds d to guessBelow of every directory above path.
// Called with a.mu held.
func (a *attrCache) countGuessLocked(path string, d int) {
	for path != "" {
		path = parent(path)
		if n := a.guessBelow[path] + d; n != 0 {
			a.guessBelow[path] = n
		} else {
			delete(a.guessBelow, path)
		}
	}
}

// unguessTreeLocked lets go of the guesses at or under path; it scans
// them only if there are some under path. Called with a.mu held.
func (a *attrCache) unguessTreeLocked(path string) {
	a.unguessLocked(path)
	if a.guessBelow[path] == 0 {
		return
	}
	for p := range a.guesses {
		if under(p, path) {
			a.unguessLocked(p)
		}
	}
}

// moveGuessesLocked moves the guesses at or under from to to (a
// rename). Called with a.mu held.
func (a *attrCache) moveGuessesLocked(from, to string) {
	a.unguessTreeLocked(to)
	move := func(p, q string) {
		if g, ok := a.guesses[p]; ok {
			a.unguessLocked(p)
			a.putGuessLocked(q, g)
		}
	}
	move(from, to)
	if a.guessBelow[from] == 0 {
		return
	}
	var below []string
	for p := range a.guesses {
		if under(p, from) && p != from {
			below = append(below, p)
		}
	}
	for _, p := range below {
		move(p, to+p[len(from):])
	}
}

// pendingLocked reports whether a change of path, or of an entry in it,
// written behind is still to be carried out. Called with a.mu held.
func (a *attrCache) pendingLocked(path string) bool {
	return a.pending != nil && (a.pending(path, true) || a.pending(path, false))
}

// shown returns e, the peer's answer about path, with the times this
// mount shows: its guess's in place of the peer's times tied to it, or
// while the peer's are not known yet.
func (a *attrCache) shown(path string, e peerproto.Entry) peerproto.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.shownLocked(path, &e)
	return e
}

// shownIn is shown for entries, the peer's listing of directory dir, in
// place.
func (a *attrCache) shownIn(dir string, entries []peerproto.Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.guessBelow[dir] == 0 {
		return
	}
	for i := range entries {
		a.shownLocked(child(dir, entries[i].Name), &entries[i])
	}
}

// shownLocked is shown, on e in place. Called with a.mu held.
func (a *attrCache) shownLocked(path string, e *peerproto.Entry) {
	g, ok := a.guesses[path]
	if !ok || e.Has&peerproto.AttrCtime == 0 {
		return
	}
	switch {
	case e.Ctime == g.c && (!g.hasM || e.Mtime == g.m):
		return // the guess itself (an entry this mount edited)
	case !g.tied:
		if a.now().Sub(g.at) >= guessLapse {
			a.unguessLocked(path)
			return
		}
	case e.Ctime != g.pc || e.Mtime != g.pm:
		a.unguessLocked(path) // changed since
		return
	}
	e.Ctime = g.c
	if g.hasM {
		e.Mtime = g.m
	}
}

// tieLocked ties g, path's untied guess, to the peer's times m and c of
// the state it guessed; an answer older than one tied before is taken
// for that one. An unmoved guess is let go of instead: the peer's times
// show. Called with a.mu held.
func (a *attrCache) tieLocked(path string, g *timeGuess, m, c int64) {
	if c < g.nc {
		m, c = g.nm, g.nc
	}
	if g.unmoved {
		a.unguessLocked(path)
		return
	}
	g.tied, g.pm, g.pc, g.nm, g.nc = true, m, c, m, c
}

// answered records e, the peer's answer to this mount's change of path
// written behind (a SETATTR's reply), once the batch that carried it
// out is done: if no other change of path (or of an entry in it) is
// still to be carried out, e is kept and its times tied to the guess
// shown, as a STAT behind it would. A mtime the change set (exactM) is
// the peer's as it stored it, though: a coarse clock keeps whole
// seconds, and the mount shows what was stored.
func (a *attrCache) answered(path string, e peerproto.Entry, exactM bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pendingLocked(path) {
		return // a later change is still to show
	}
	if g, ok := a.guesses[path]; ok && !g.tied && e.Has&peerproto.AttrCtime != 0 {
		if exactM && g.hasM {
			g.m = e.Mtime
		}
		a.tieLocked(path, g, e.Mtime, e.Ctime)
	}
	a.rememberLocked(path, e, true)
}

// untied returns, of paths, those whose guess is not tied to the peer's
// times yet, with their guesses' numbers.
func (a *attrCache) untied(paths []string) map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out map[string]uint64
	for _, p := range paths {
		if g, ok := a.guesses[p]; ok && !g.tied {
			if out == nil {
				out = map[string]uint64{}
			}
			out[p] = g.seq
		}
	}
	return out
}

// settled records e, the peer's answer to a STAT of path sent right
// behind this mount's changes of it written behind (sendBatch), for
// guess seq: its times are tied to the guess, unless another change of
// path was guessed since, or is still to be carried out.
func (a *attrCache) settled(path string, seq uint64, e peerproto.Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.guesses[path]
	if !ok || g.seq != seq || g.tied || a.pendingLocked(path) {
		return
	}
	if e.Has&peerproto.AttrCtime == 0 {
		a.unguessLocked(path)
		return
	}
	a.tieLocked(path, g, e.Mtime, e.Ctime)
}

// tie ties path's guess, just made, to the peer's times m and c, which
// the answer to the change it guessed gave (a PUT's directory times),
// unless a change of path or of an entry in it written behind is still
// to be carried out (then its own answer ties it); known is false where
// the answer gave none (an older peer): the guess is then let go of, and
// the times shown until the peer's come.
func (a *attrCache) tie(path string, m, c int64, known bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.guesses[path]
	switch {
	case !ok || g.tied || a.pendingLocked(path):
	case !known:
		a.unguessLocked(path)
	default:
		a.tieLocked(path, g, m, c)
	}
}

// kept records that path, a directory, keeps showing the times it showed
// right before this mount's change, which moved them on the peer: one a
// local disk makes without changing them (a file's content replaced: the
// peer renames new content over the file, or makes and removes a
// temporary file beside it). pm and pc are the peer's times of it right
// before the change (pre; where the peer did not say, the last answer
// younger than the attribute timeout, or this mount's guess, stand for
// them): shown as they were, through this mount's guess if they are its
// peer's times. tie then ties the peer's times after the change to them.
func (a *attrCache) kept(path string, pm, pc int64, pre bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pendingLocked(path) {
		return // the guess of a change still to go is shown; its answer ties
	}
	_, guessed := a.guesses[path]
	var e peerproto.Entry
	switch {
	case pre:
		e = peerproto.Entry{Has: peerproto.AttrCtime, Mtime: pm, Ctime: pc}
	case guessed:
		var ok bool
		if e, ok = a.lastKnownLocked(path); !ok {
			a.unguessLocked(path)
			return
		}
	default:
		// Only what was shown within the attribute timeout, which the
		// kernel may still hold: an older answer may predate another
		// writer's change, which would then be taken for this one.
		ce, exists, ok := a.cachedLocked(path)
		if !ok || !exists {
			a.unguessLocked(path)
			return
		}
		e = ce
	}
	if e.Has&peerproto.AttrCtime == 0 {
		a.unguessLocked(path)
		return
	}
	a.shownLocked(path, &e)
	// Its cached entries say so too (the peer's times they hold are no
	// longer its), and it is the guess (editLocked), not an unmoved one:
	// the change is not to move them.
	a.editLocked(path, func(x *peerproto.Entry) {
		x.Has |= peerproto.AttrCtime
		x.Mtime, x.Ctime = e.Mtime, e.Ctime
	})
	if g, found := a.guesses[path]; found {
		g.unmoved = false
	}
}

// predicted records that path's attributes, remembered just now, are
// this mount's prediction for a change written behind (a directory made
// here): their times are a guess.
func (a *attrCache) predicted(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sc, ok := a.stats[path]; ok && sc.exists {
		a.guessLocked(path, sc.e, true, false)
	}
}
