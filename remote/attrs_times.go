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
// synchronous change (remember), or when another export answers at the
// peer's name (clearAll; a reset of the caches keeps it), or if its
// peer's times could not be learnt within guessLapse. A change made
// on the peer between this mount's change and that answer (a moment) is
// taken for it: its times are this mount's until the next change.

// timeGuess is what this mount shows of one path's times after its own
// change.
type timeGuess struct {
	m, c int64     // the times shown: mtime (if hasM) and ctime
	hasM bool      // the mtime is guessed too (else the peer's is shown)
	at   time.Time // when it was made: an untied one lapses (guessLapse)
	// tied: pm and pc are the peer's times of the state it guessed.
	tied   bool
	pm, pc int64
	// based: made as an overwrite started (keepStart), from an answer
	// whose times were bm and bc.
	based  bool
	bm, bc int64
	// nm and nc are the peer's times of the latest state known for the
	// path (tied, or answered while a change was still to go), carried
	// from guess to guess: an answer older than them (read out of order:
	// two uploads in one directory) is not tied.
	nm, nc int64
}

// guessLapse is how long a guess whose peer's times could not be
// learnt (the answer to its change was lost) is kept.
const guessLapse = 30 * time.Second

// maxGuesses bounds the guesses kept: past it, tied ones are let go
// first (their paths may then show the peer's times).
const maxGuesses = 1 << 14

// guessLocked records that path now shows the times of e as this mount's
// guess (mtime only if hasM), made now. A directory's or a file's with
// one name only: hard links of a file (reached by other paths) would
// show different times. Called with a.mu held.
func (a *attrCache) guessLocked(path string, e peerproto.Entry, hasM bool) *timeGuess {
	if e.Has&peerproto.AttrCtime == 0 || !e.IsDir() && e.Has&peerproto.AttrNlink != 0 && e.Nlink > 1 {
		a.unguessLocked(path)
		return nil
	}
	if len(a.guesses) >= maxGuesses {
		a.trimGuessesLocked()
	}
	g := &timeGuess{m: e.Mtime, c: e.Ctime, hasM: hasM, at: a.now()}
	if old, ok := a.guesses[path]; ok {
		g.nm, g.nc = old.nm, old.nc
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
// cached entry after it (edited), the mtime too (changed or not, it is
// the one shown, perhaps an earlier guess), or if none is cached, those
// change gives by itself (an mtime only where change sets one). Called
// with a.mu held.
func (a *attrCache) guessEditLocked(path string, edited *peerproto.Entry, change func(*peerproto.Entry)) {
	probe := peerproto.Entry{Has: peerproto.AttrCtime}
	change(&probe)
	if probe.Ctime == 0 {
		return // no time of it changed
	}
	if edited == nil {
		a.guessLocked(path, probe, probe.Mtime != 0)
		return
	}
	a.guessLocked(path, *edited, true)
}

// tickAfter returns the time a change at t gives a time shown as old: t, or
// where t is not later (a peer's clock ahead of this one), a tick past
// old, so that the change shows.
func tickAfter(old, t int64) int64 { return max(old+1, t) }

// putGuessLocked sets guesses[path], counting it in guessBelow. Called
// with a.mu held.
func (a *attrCache) putGuessLocked(path string, g *timeGuess) {
	if _, had := a.guesses[path]; !had {
		countAbove(a.guessBelow, path, 1)
	}
	a.guesses[path] = g
}

// unguessLocked lets go of path's guess. Called with a.mu held.
func (a *attrCache) unguessLocked(path string) {
	if _, had := a.guesses[path]; had {
		delete(a.guesses, path)
		countAbove(a.guessBelow, path, -1)
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
// written behind is still to be carried out, or about to be queued
// (unqueued). Called with a.mu held.
func (a *attrCache) pendingLocked(path string) bool {
	return a.unqueued[path] > 0 || a.pending != nil && (a.pending(path, true) || a.pending(path, false))
}

// queuing records that a change written behind, about to show its
// guessed times for paths (the guessed ones) and then be queued, is on
// its way into the queue, until done is called (once it is queued, or
// given up): an answer to an earlier change of those paths that comes
// meanwhile would otherwise find nothing pending and be tied to the
// new guess, whose change it predates (the times then moved once the
// change was carried out: times/steady's tar-like, a chmod then utimes
// of a directory).
//
// The changes written behind show first (a sender already running may
// take the change into a batch at once, and the STAT behind it must find
// the guess), then queue (Store.pushShown), then call done. The
// change's own answer, were it to come between the queueing and done
// (the caller stalled for a whole round trip), would tie nothing: the
// guess then lapses (guessLapse), the safe way to be wrong.
func (a *attrCache) queuing(paths ...string) (done func()) {
	a.mu.Lock()
	for _, p := range paths {
		a.unqueued[p]++
	}
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, p := range paths {
			if a.unqueued[p]--; a.unqueued[p] <= 0 {
				delete(a.unqueued, p)
			}
		}
	}
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
	case e.Ctime < g.pc:
		// An answer that was on its way from before (the peer's
		// clock moves forward): the guess stays.
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
// the state it guessed; an answer older than the latest known is taken
// for that one. Called with a.mu held.
func (a *attrCache) tieLocked(g *timeGuess, m, c int64) {
	if c < g.nc {
		m, c = g.nm, g.nc
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
	if path != "" {
		// As remember: a LIST on its way may have been read before it.
		a.overlayLocked(path, e, true)
	}
	if g, ok := a.guesses[path]; ok && !g.tied && e.Has&peerproto.AttrCtime != 0 {
		if exactM && g.hasM {
			g.m = e.Mtime
		}
		a.tieLocked(g, e.Mtime, e.Ctime)
	}
	a.rememberLocked(path, e, true)
}

// untied returns, of paths, those whose guess is not tied to the peer's
// times yet.
func (a *attrCache) untied(paths []string) map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out map[string]bool
	for _, p := range paths {
		if g, ok := a.guesses[p]; ok && !g.tied {
			if out == nil {
				out = map[string]bool{}
			}
			out[p] = true
		}
	}
	return out
}

// settled records e, the peer's answer to a STAT of path sent right
// behind this mount's changes of it written behind (sendBatch): its
// times (or the latest known, if later: a PUT in the directory answered
// meanwhile) are tied to the guess, unless a change of path or of an
// entry in it is still to be carried out.
func (a *attrCache) settled(path string, e peerproto.Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.guesses[path]
	if !ok || g.tied || a.pendingLocked(path) {
		return
	}
	if e.Has&peerproto.AttrCtime == 0 {
		a.unguessLocked(path)
		return
	}
	a.tieLocked(g, e.Mtime, e.Ctime)
}

// tie ties path's guess, just made, to the peer's times m and c, which
// the answer to the change it guessed gave (a PUT's directory times).
// While a change of path or of an entry in it written behind is still to
// be carried out, they are only kept as the latest known (the STAT
// behind that change ties, to them if its answer is older). known is
// false where the answer gave none (an older peer): the guess is then
// let go of, and the times shown until the peer's come.
func (a *attrCache) tie(path string, m, c int64, known bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.guesses[path]
	switch {
	case !ok || !known && g.tied:
	case !known:
		a.unguessLocked(path)
	case a.pendingLocked(path):
		if c > g.nc {
			g.nm, g.nc = m, c
		}
	case g.tied:
		// Kept (kept) through another overwrite already answered: this
		// one's state, if later, is the peer's now.
		if c > g.pc {
			g.pm, g.pc, g.nm, g.nc = m, c, m, c
		}
	default:
		a.tieLocked(g, m, c)
	}
}

// kept records that path, a directory, keeps showing the times it shows
// now, though this mount's change moved them on the peer: one a local
// disk makes without changing them (a file's content replaced: the peer
// renames new content over the file, or makes and removes a temporary
// file beside it). What it shows now is this mount's guess, if it has
// one the peer's answers still agree with; else the peer's times right
// before the change (pm and pc, pre) or, where the peer did not say, an
// answer younger than the attribute timeout. tie then ties the peer's
// times after the change to them.
func (a *attrCache) kept(path string, pm, pc int64, pre bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pendingLocked(path) {
		return // the guess of a change still to go is shown; its answer ties
	}
	var e peerproto.Entry
	g, guessed := a.guesses[path]
	if guessed && g.based && pre && (pm != g.bm || pc != g.bc) && a.keeps[path] <= 1 {
		// Changed on the peer since the answer the guess was made from,
		// by no other overwrite of this mount's: another writer's
		// change, which shows.
		a.unguessLocked(path)
		guessed = false
	}
	if guessed && g.tied {
		// Still what the peer's answers show, unless the last one is
		// of a later state (another writer's change since). (One of
		// an earlier state is an answer that was on its way.)
		if last, ok := a.lastKnownLocked(path); ok && last.Has&peerproto.AttrCtime != 0 &&
			last.Ctime > g.pc && !(last.Ctime == g.c && (!g.hasM || last.Mtime == g.m)) {
			a.unguessLocked(path)
			guessed = false
		}
	}
	switch {
	case guessed:
		e = peerproto.Entry{Has: peerproto.AttrCtime, Mtime: g.m, Ctime: g.c}
		if !g.hasM {
			last, ok := a.lastKnownLocked(path)
			if !ok {
				a.unguessLocked(path)
				return
			}
			e.Mtime = last.Mtime
		}
	case pre:
		e = peerproto.Entry{Has: peerproto.AttrCtime, Mtime: pm, Ctime: pc}
	default:
		// Only what was shown within the attribute timeout, which the
		// kernel may still hold: an older answer may predate another
		// writer's change, which would then be taken for this one.
		ce, exists, ok := a.cachedLocked(path)
		if !ok || !exists || ce.Has&peerproto.AttrCtime == 0 {
			a.unguessLocked(path)
			return
		}
		e = ce
	}
	// Its cached entries say so too (the peer's times they hold are no
	// longer its), and it is the guess (editLocked).
	a.editLocked(path, func(x *peerproto.Entry) {
		x.Has |= peerproto.AttrCtime
		x.Mtime, x.Ctime = e.Mtime, e.Ctime
	})
}

// keepStart records, as an overwrite of a file in directory path
// starts, that path shows the times it shows now (kept, at the end,
// keeps them): the guess it has, or the last answer (of any age: kept
// compares its times with the peer's right before the PUT, and a change
// between them that no other overwrite of this mount's explains shows).
// Another overwrite in it may end first, its peer's times before it
// (pre) already moved by this one.
//
// keepEnd must follow, once the overwrite ended (kept called or not).
func (a *attrCache) keepStart(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keeps[path]++
	if _, ok := a.guesses[path]; ok {
		return
	}
	if e, ok := a.lastKnownLocked(path); ok && e.Has&peerproto.AttrCtime != 0 {
		if g := a.guessLocked(path, e, true); g != nil {
			g.based, g.bm, g.bc = true, e.Mtime, e.Ctime
		}
	}
}

// keepEnd records that an overwrite keepStart was told of ended. The
// last one lets go of a guess keepStart made that no answer tied (the
// overwrite failed, or its answer gave no times).
func (a *attrCache) keepEnd(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keeps[path]--; a.keeps[path] > 0 {
		return
	}
	delete(a.keeps, path)
	if g, ok := a.guesses[path]; ok && g.based && !g.tied {
		a.unguessLocked(path)
	}
}

// newer reports whether the latest peer's times known of path (nc) are
// past ctime c: an answer older than them (read out of order) changes
// nothing shown.
func (a *attrCache) newer(path string, c int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.guesses[path]
	return ok && g.nc >= c
}

// predicted records that path's attributes, remembered just now, are
// this mount's prediction for a change written behind (a directory made
// here): their times are a guess.
func (a *attrCache) predicted(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sc, ok := a.stats[path]; ok && sc.exists {
		a.guessLocked(path, sc.e, true)
	}
}
