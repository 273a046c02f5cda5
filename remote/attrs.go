package remote

import (
	"container/list"
	"errors"
	"io/fs"
	"sync"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// attrCache is what a mount knows of one peer's attributes and listings:
// STAT answers and LIST results, trusted for ttl, and what the mount's
// own requests taught it (a file it created, removed or renamed). It
// never asks the peer itself: Store.stat and Store.listing do, and tell
// it. It is safe for concurrent use; its clock is now.
type attrCache struct {
	ttl time.Duration    // how long an answer is trusted (Options.AttrTTL)
	now func() time.Time // the clock (Options.Now)

	mu    sync.Mutex           // protects the fields below
	dirs  map[string]*dirCache // listings, by directory
	stats map[string]statCache // single answers (and known absences), by path
	// below counts, per directory, the keys of stats and of dirs (each
	// map apart) strictly under it, so that dropTreeLocked scans the
	// maps only for a path with something cached below it: a peer's
	// report of each file rm -rf removed must not cost a scan of
	// everything known. Written only through putStatLocked,
	// delStatLocked, putDirLocked, delDirLocked and resetLocked.
	below map[string]int
	// lists are the directories with a LIST in flight, shared by every
	// caller that needs them (beginList).
	lists map[string]*listCall
	// misses counts, per directory, the STATs recently sent for names in
	// it: a burst of them is answered with one LIST instead (wantList).
	misses map[string]missRun
	// root is the export root's last known attributes, kept through
	// invalidations: the peer's folder stays reachable while the peer is
	// not (Store.Stat), so local files pending upload can still be opened.
	root *peerproto.Entry

	// Watching (watch.go). wake, if not nil, pokes the event connection's
	// loop, which keeps the fields below up to date. epoch numbers the
	// current event connection, 0 while there is none; watched are the
	// directories it confirmed (WATCH OK) in this epoch, asked those it
	// was asked to watch (or refused) in it, each with its element in
	// recent, want those still to ask for (those let go before they were
	// taken are left out of wanted: takeWant skips them), and sent those
	// asked and not answered yet, in order (inFlight counts them per
	// directory); unwant are those to stop watching (UNWATCH). recent
	// orders the directories asked by when they (or one below them) were
	// last listed, the latest first: past maxWatch of them, the last is
	// no longer watched (evictLocked). gens has, per directory, the
	// number of the last event about it or its entries, or of its watch
	// let go: a LIST compares it before and after.
	wake     chan struct{}
	watchTTL time.Duration // how long a watched listing is trusted at most (Options.WatchTTL)
	maxWatch int           // how many directories may be asked at most (maxWatches)
	epoch    uint64
	watched  map[string]bool
	asked    map[string]*list.Element
	recent   list.List
	want     []string
	wanted   map[string]bool
	sent     []string
	inFlight map[string]int
	unwant   []string
	// foreign are the changes events reported that this mount did not
	// make (another writer's), for the kernel's caches (takeForeign);
	// foreignN counts them all (PeerReport.Foreign).
	foreign  []fusefs.EntryChange
	foreignN uint64
	// ownAt has when this mount last sent a change of each path to the
	// peer, or made one here, and ownIn when it did so of an entry in
	// each directory: for ownQuiet after it, the peer's reports of the
	// path are taken for its echo (ownLocked); ownQ has the marks in
	// the order they were made.
	ownAt map[string]time.Time
	ownIn map[string]time.Time
	ownQ  []ownMark
	// sending counts, per path, this mount's uploads of it on their way
	// to the peer (ownSending): its reports are taken for their echo
	// however long the upload takes (a large file's PUT, a stream), and
	// for ownQuiet after its answer. (Its directory's are not: taking a
	// directory's report for another writer's costs the kernel a
	// GETATTR, not the writer's pages.)
	sending map[string]int
	// pending, if set, reports whether a change of path (or, with in,
	// of an entry in directory path) written behind is queued or on
	// its way (the Store's behind queue): its reports are this mount's
	// own until ownQuiet after its answer. It takes the queue's lock,
	// which is never held when a.mu is taken.
	pending func(path string, in bool) bool
	// void counts, per directory, the WATCHes on their way sent before
	// an UNWATCH of it was queued: their answers count for nothing.
	void  map[string]int
	gens  map[string]uint64
	evSeq uint64 // numbers the events of this epoch (gens)
	// gensFloor is evSeq when gens was last cleared (genLocked).
	gensFloor uint64

	// The times shown for this mount's own changes (attrs_times.go):
	// guesses by path; guessBelow counts, per directory, the guesses
	// strictly under it.
	guesses    map[string]*timeGuess
	guessBelow map[string]int
	// keeps counts, per directory, the overwrites of files in it under
	// way (keepStart).
	keeps map[string]int
	// unqueued counts, per path, the changes written behind whose guesses
	// were made and which are not queued yet (queuing).
	unqueued map[string]int
}

// missRun is a run of STATs for names in one directory.
type missRun struct {
	since time.Time // when the run's first STAT went out
	n     int       // STATs in the run
}

// listCall is a LIST in flight, shared by every caller that needs it.
type listCall struct {
	done chan struct{} // closed when it ended
	err  error         // its error, written before done is closed
	// superseded is set (under attrCache.mu) when the listing was
	// forgotten while the LIST was in flight: the peer's answer may
	// predate what made it forget (a removal written behind, carried
	// out and settled meanwhile), so it is not kept, and its leader asks
	// again (Store.peerListing).
	superseded bool
	// own are the answers to this mount's changes of its entries that
	// came while it was on its way (overlayLocked): laid over its result.
	own map[string]ownAnswer
	// epoch and gen are attrCache's epoch, if the directory was watched
	// then, and its gens when the LIST was sent (endList compares them).
	epoch, gen uint64
}

// ownAnswer is an answer to this mount's change of an entry (listCall.own).
type ownAnswer struct {
	e      peerproto.Entry
	exists bool
}

// overlayLocked records the answer about path, to a change of this
// mount's, in the LIST of its directory on its way, if any. Called with
// a.mu held.
func (a *attrCache) overlayLocked(path string, e peerproto.Entry, exists bool) {
	call, ok := a.lists[parent(path)]
	if !ok {
		return
	}
	if call.own == nil {
		call.own = map[string]ownAnswer{}
	}
	call.own[base(path)] = ownAnswer{e, exists}
}

type dirCache struct {
	at time.Time
	// epoch is attrCache.epoch when the listing was taken while its
	// directory, and each above it, was watched, with no event about it
	// while the LIST was on its way; 0 otherwise. Such a listing is
	// trusted past ttl (fresh), the peer's events keeping it current.
	epoch   uint64
	entries map[string]peerproto.Entry
	// stale are the names whose attributes changed since (a hard link
	// made, a directory's entries changed): not answered from here, and
	// the listing as a whole is not, while it has any.
	stale map[string]bool
	// unconfirmed are the names whose entry here came from an answer (or
	// this mount's own change) rather than the peer's events, and
	// differed from what they had said: the answer may predate the last
	// event, or its own event may be still to come. Until an event
	// agrees with it, a watched listing (epoch) is trusted for ttl only,
	// and the peer's reports of the name within ownQuiet of this mount's
	// change are not applied over it, in any listing the events reach (a
	// report stat'ed before a chmod, coming after the chmod's answer,
	// would put the old mode back).
	unconfirmed map[string]bool
	// pruneAt is the size unconfirmed may reach before the marks of names
	// not listed are let go of (ownEntryLocked).
	pruneAt int
}

// minPrune is how many unconfirmed names a listing holds beyond its
// entries before ownEntryLocked lets go of those that outlived their use.
const minPrune = 256

// ownEntryLocked records that the entry for name (there or not) in dc,
// the listing of dir, is this mount's own (its change, or an answer to
// it) rather than the peer's report (see dirCache.unconfirmed).
//
// A mark of a name no longer listed (removed or moved away here) is of
// use only while a report of it may be this mount's echo (ownQuiet), or
// while a watched listing waits for its report; where no report comes
// (a peer without WATCH, a directory past the bound, an event
// connection that ended) such marks would pile up while names come and
// go (temporary files, a spool): once they outnumber the entries, those
// of a listing not watched now whose change is ownQuiet old are let go
// of. Called with a.mu held.
func (a *attrCache) ownEntryLocked(dc *dirCache, dir, name string) {
	if dc.unconfirmed == nil {
		dc.unconfirmed = map[string]bool{}
	}
	dc.unconfirmed[name] = true
	n := len(dc.unconfirmed)
	if dc.epoch != 0 && dc.epoch == a.epoch && a.watchedLocked(dir) || n < len(dc.entries)+minPrune || n < dc.pruneAt {
		return
	}
	now := a.now()
	for nm := range dc.unconfirmed {
		if _, listed := dc.entries[nm]; !listed && !a.ownRecentLocked(child(dir, nm), now) {
			delete(dc.unconfirmed, nm)
		}
	}
	dc.pruneAt = 2 * len(dc.unconfirmed) // amortised: a scan per doubling
}

// markStale records that name's attributes in dc are out of date.
func (dc *dirCache) markStale(name string) {
	if _, ok := dc.entries[name]; !ok {
		return
	}
	if dc.stale == nil {
		dc.stale = map[string]bool{}
	}
	dc.stale[name] = true
}

type statCache struct {
	at     time.Time
	e      peerproto.Entry
	exists bool
	// epoch is attrCache.epoch when this answer, a watched directory's
	// own attributes, was asked for with no event about it since
	// (rememberStat); 0 otherwise. It is then trusted past ttl as a
	// watched listing is (fresh), until an event about the directory or
	// its entries.
	epoch uint64
}

func newAttrCache(ttl time.Duration, now func() time.Time) *attrCache {
	return &attrCache{
		ttl: ttl, now: now,
		dirs:     map[string]*dirCache{},
		stats:    map[string]statCache{},
		below:    map[string]int{},
		lists:    map[string]*listCall{},
		misses:   map[string]missRun{},
		watched:  map[string]bool{},
		asked:    map[string]*list.Element{},
		wanted:   map[string]bool{},
		inFlight: map[string]int{},
		void:     map[string]int{},
		ownAt:    map[string]time.Time{},
		ownIn:    map[string]time.Time{},
		sending:  map[string]int{},
		gens:     map[string]uint64{},
		guesses:  map[string]*timeGuess{},
		// guessBelow: see guesses.
		guessBelow: map[string]int{},
		keeps:      map[string]int{},
		unqueued:   map[string]int{},
		// maxWatch: see maxWatches.
		maxWatch: maxWatches,
	}
}

// clear forgets every attribute and listing (not the root's last known
// attributes): the peer may have changed anything.
func (a *attrCache) clear() {
	a.mu.Lock()
	a.resetLocked()
	a.supersedeAllLocked()
	a.mu.Unlock()
}

// clearAll is clear, and forgets the root's attributes too: another
// export answers at the peer's name.
func (a *attrCache) clearAll() {
	a.mu.Lock()
	a.resetLocked()
	a.root = nil
	clear(a.guesses) // another export's paths
	clear(a.guessBelow)
	a.supersedeAllLocked()
	a.mu.Unlock()
}

// cached returns what is known of path from an answer younger than ttl:
// its attributes, whether it exists, and whether anything is known.
func (a *attrCache) cached(path string) (peerproto.Entry, bool, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cachedLocked(path)
}

// cachedLocked is cached. Called with a.mu held.
func (a *attrCache) cachedLocked(path string) (peerproto.Entry, bool, bool) {
	now := a.now()
	if sc, ok := a.stats[path]; ok && (now.Sub(sc.at) < a.ttl ||
		sc.epoch != 0 && sc.epoch == a.epoch && now.Sub(sc.at) < a.watchTTL && a.watchedLocked(path)) {
		return sc.e, sc.exists, true
	}
	if path != "" {
		if dc, ok := a.dirs[parent(path)]; ok && a.freshLocked(parent(path), dc, now) && !dc.stale[base(path)] {
			e, exists := dc.entries[base(path)]
			if !exists || !otherNames(e) || now.Sub(dc.at) < a.ttl {
				return e, exists, true
			}
			// A file with other names: changed through one in another
			// directory, it is reported there only.
		}
	}
	return peerproto.Entry{}, false, false
}

// freshLocked reports whether dc, the listing of dir, is trusted now:
// younger than ttl, or taken while dir was watched (dc.epoch), which it
// still is in the same epoch (the event connection that ends when the
// peer goes silent for watchSilence), and younger than watchTTL. Called
// with a.mu held.
func (a *attrCache) freshLocked(dir string, dc *dirCache, now time.Time) bool {
	age := now.Sub(dc.at)
	if age < a.ttl {
		return true
	}
	return dc.epoch != 0 && dc.epoch == a.epoch && age < a.watchTTL && len(dc.unconfirmed) == 0 && a.watchedLocked(dir)
}

// watchedLocked reports whether dir and every directory above it are
// watched: a move of any of them is reported (UNWATCHED). Called with
// a.mu held.
func (a *attrCache) watchedLocked(dir string) bool {
	for {
		if !a.watched[dir] {
			return false
		}
		if dir == "" {
			return true
		}
		dir = parent(dir)
	}
}

// changed records that path's attributes changed on the peer (not
// whether it exists): a directory whose entries this mount made or
// removed, the other names of a file it linked. The next Stat asks.
func (a *attrCache) changed(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Its attributes changed with this mount's change of entries in
	// it, or of another name of it: not itself moved.
	a.ownAttrsLocked(path)
	a.supersedeLocked(parent(path))
	a.delStatLocked(path)
	a.unguessLocked(path) // the next answer is the change's own
	if path == "" {
		return
	}
	if dc, ok := a.dirs[parent(path)]; ok {
		dc.markStale(base(path))
	}
}

// changedIno is changed for every name known to hold inode ino (the hard
// links of a file whose attributes changed through one of its names).
func (a *attrCache) changedIno(ino uint64) {
	if ino == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, sc := range a.stats {
		if sc.exists && sc.e.Has&peerproto.AttrIno != 0 && sc.e.Ino == ino {
			a.delStatLocked(k)
		}
	}
	for _, dc := range a.dirs {
		for name, e := range dc.entries {
			if e.Has&peerproto.AttrIno != 0 && e.Ino == ino {
				dc.markStale(name)
			}
		}
	}
}

// linked returns the inode of path if the cache knows it to have more
// than one name (even from an expired answer): a change through one
// name is then a change to the others' attributes (changedIno).
func (a *attrCache) linked(path string) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.lastKnownLocked(path)
	if !ok {
		return 0
	}
	return linkedIno(e)
}

// lastKnownLocked returns the attributes of path from the last answer
// that said it exists, of any age: its own STAT, else its parent's
// listing. Called with a.mu held.
func (a *attrCache) lastKnownLocked(path string) (peerproto.Entry, bool) {
	if sc, found := a.stats[path]; found && sc.exists {
		return sc.e, true
	}
	if dc, found := a.dirs[parent(path)]; found && path != "" {
		e, ok := dc.entries[base(path)]
		return e, ok
	}
	return peerproto.Entry{}, false
}

// remember records an answer about path to this mount's own change (the
// change's reply, or a STAT behind it): e, or that it does not exist.
func (a *attrCache) remember(path string, e peerproto.Entry, exists bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The exact answer to this mount's own change (the STATs behind a
	// request, a SETATTR's or PUT's reply): its times are shown as they
	// are from now on.
	a.unguessLocked(path)
	if path != "" {
		// A LIST of its directory on its way may have been read before
		// the change: this answer is laid over its result.
		a.overlayLocked(path, e, exists)
	}
	a.rememberLocked(path, e, exists)
}

// missing records a plain STAT's answer that path does not exist: no
// change of this mount's, so it is not laid over a LIST of its directory
// on its way, as remember's answers are (either may have been read
// later).
func (a *attrCache) missing(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unguessLocked(path)
	a.rememberLocked(path, peerproto.Entry{}, false)
}

// rememberLocked is remember, keeping path's guess (a STAT's answer,
// which shown compares with it). Called with a.mu held.
func (a *attrCache) rememberLocked(path string, e peerproto.Entry, exists bool) {
	a.setStatLocked(path, statCache{at: a.now(), e: e, exists: exists})
	if dc, ok := a.dirs[parent(path)]; ok && path != "" {
		if old, had := dc.entries[base(path)]; had != exists || exists && !sameEntry(old, e) {
			a.ownEntryLocked(dc, parent(path), base(path))
		}
		if exists {
			e.Name = base(path)
			dc.entries[base(path)] = e
		} else {
			delete(dc.entries, base(path))
		}
		delete(dc.stale, base(path))
	}
}

// learned records what the i-th STAT behind a request (Store.withStats)
// found of path, if it ran: its entry, or that path is gone; a STAT that
// failed otherwise says nothing, and what was known is dropped.
func (a *attrCache) learned(path string, res []peer.StatResult, i int) {
	switch {
	case i >= len(res):
		a.changed(path)
	case res[i].Err == nil:
		a.remember(path, res[i].Entry, true)
	case errors.Is(res[i].Err, fs.ErrNotExist):
		a.remember(path, peerproto.Entry{}, false)
	default:
		a.forget(path)
	}
}

// linkedIno returns e's inode if it has more than one name.
func linkedIno(e peerproto.Entry) uint64 {
	if e.Has&(peerproto.AttrIno|peerproto.AttrNlink) != peerproto.AttrIno|peerproto.AttrNlink || e.Nlink < 2 {
		return 0
	}
	return e.Ino
}

// forget drops what is known about path (and, for a directory, its
// listing), and supersedes the LISTs of those in flight.
func (a *attrCache) forget(path string) {
	a.mu.Lock()
	a.delStatLocked(path)
	a.unguessLocked(path)
	a.delDirLocked(path)
	a.delDirLocked(parent(path))
	a.supersedeLocked(path)
	a.supersedeLocked(parent(path))
	a.mu.Unlock()
}

// forgetTree drops everything at or under path, and its parent's listing,
// and supersedes the LISTs of those in flight.
func (a *attrCache) forgetTree(path string) {
	a.mu.Lock()
	a.dropTreeLocked(path)
	a.unguessTreeLocked(path)
	a.delDirLocked(parent(path))
	for dir, call := range a.lists {
		if under(dir, path) {
			call.superseded = true
		}
	}
	a.supersedeLocked(parent(path))
	a.mu.Unlock()
}

// supersedeLocked marks the LIST of dir in flight, if any, as superseded:
// this mount changed dir's entries (or forgot them) while it was on its
// way. Called with a.mu held.
func (a *attrCache) supersedeLocked(dir string) {
	if call, ok := a.lists[dir]; ok {
		call.superseded = true
	}
}

// supersedeAllLocked marks every LIST in flight as superseded. Called
// with a.mu held.
func (a *attrCache) supersedeAllLocked() {
	for _, call := range a.lists {
		call.superseded = true
	}
}

// maxStats bounds the attribute cache: past it, expired entries are swept
// (the map would otherwise grow with every name ever looked up).
const maxStats = 50000

// setStatLocked records one attribute-cache entry, sweeping expired ones
// when the cache is large. Called with a.mu held.
func (a *attrCache) setStatLocked(path string, sc statCache) {
	if len(a.stats) >= maxStats {
		now := a.now()
		for k, v := range a.stats {
			if now.Sub(v.at) > rescanWindow {
				a.delStatLocked(k)
			}
		}
		if len(a.stats) >= maxStats {
			clear(a.stats)
			clear(a.below)
			for k := range a.dirs {
				a.countLocked(k, 1)
			}
		}
	}
	a.putStatLocked(path, sc)
}

// dropTreeLocked forgets stats and listings at or under path; it scans
// the caches only if something is cached under path (below). Called
// with a.mu held.
func (a *attrCache) dropTreeLocked(path string) {
	a.delStatLocked(path)
	a.delDirLocked(path)
	if a.below[path] == 0 {
		return
	}
	for k := range a.stats {
		if under(k, path) {
			a.delStatLocked(k)
		}
	}
	for k := range a.dirs {
		if under(k, path) {
			a.delDirLocked(k)
		}
	}
}

// listed returns a copy of dir's entries from a listing younger than ttl.
func (a *attrCache) listed(dir string) ([]peerproto.Entry, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	dc, ok := a.dirs[dir]
	now := a.now()
	if !ok || !a.freshLocked(dir, dc, now) || len(dc.stale) > 0 {
		return nil, false
	}
	old := now.Sub(dc.at) >= a.ttl
	out := make([]peerproto.Entry, 0, len(dc.entries))
	for name, e := range dc.entries {
		if old && otherNames(e) {
			return nil, false // see cached
		}
		e.Name = name
		out = append(out, e)
	}
	return out, true
}

// beginList starts a LIST of dir, or joins the one in flight: leader
// reports whether the caller must send it and then call endList.
func (a *attrCache) beginList(dir string) (call *listCall, leader bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if call, busy := a.lists[dir]; busy {
		return call, false
	}
	call = &listCall{done: make(chan struct{}), gen: a.genLocked(dir)}
	if a.epoch != 0 && a.watchedLocked(dir) {
		call.epoch = a.epoch
	}
	a.lists[dir] = call
	return call, true
}

// endList records the outcome of the LIST of dir that call stood for,
// unless it was superseded, and wakes the callers that joined it. It
// reports whether the listing was kept.
func (a *attrCache) endList(dir string, call *listCall, list []peerproto.Entry, err error) bool {
	a.mu.Lock()
	delete(a.lists, dir)
	kept := err == nil && !call.superseded
	if kept {
		entries := make(map[string]peerproto.Entry, len(list))
		for _, e := range list {
			entries[e.Name] = e
		}
		dc := &dirCache{at: a.now(), entries: entries}
		if call.epoch != 0 && call.epoch == a.epoch && call.gen == a.genLocked(dir) && a.watchedLocked(dir) {
			dc.epoch = call.epoch
		}
		a.putDirLocked(dir, dc)
		for name, o := range call.own {
			if old, had := entries[name]; had != o.exists || o.exists && !sameEntry(old, o.e) {
				a.ownEntryLocked(dc, dir, name)
			}
			if o.exists {
				o.e.Name = name
				entries[name] = o.e
			} else {
				delete(entries, name)
			}
		}
		a.askLocked(dir)
	}
	call.err = err
	a.mu.Unlock()
	close(call.done)
	return kept
}

// rescanWindow is how long after a listing expired a lookup in that
// directory re-lists it instead of asking STAT: a program walking the
// directory (ls -l, find, rsync) then costs one LIST per AttrTTL instead
// of one STAT per entry.
const rescanWindow = 10 * time.Second

// Bursts of lookups in one directory that was never listed (stat of many
// names, cat of many files after the kernel dropped its caches): once
// burstStats STATs for names in a directory went out within AttrTTL, the
// next lookup there LISTs the directory instead, which then answers the
// rest of the burst, and rescanWindow keeps it that way while it lasts.
// A directory whose last listing had more than burstMaxEntries entries is
// not re-listed for a burst: listing it costs more than the STATs.
const (
	burstStats      = 4
	burstMaxEntries = 20000
)

// wantList reports whether a lookup of path should LIST its directory
// rather than STAT it, and counts the STAT otherwise.
func (a *attrCache) wantList(path string) bool {
	if path == "" {
		return false
	}
	dir := parent(path)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if dc, ok := a.dirs[dir]; ok {
		if len(dc.entries) > burstMaxEntries {
			return false // listing it again costs more than a STAT
		}
		if now.Sub(dc.at) < rescanWindow {
			return true
		}
	}
	r := a.misses[dir]
	if now.Sub(r.since) > a.ttl {
		r = missRun{since: now}
	}
	if r.n >= burstStats {
		delete(a.misses, dir)
		return true
	}
	r.n++
	if len(a.misses) >= 1024 {
		clear(a.misses)
	}
	a.misses[dir] = r
	return false
}

// rootSeen records the export root's attributes, as just answered.
func (a *attrCache) rootSeen(e peerproto.Entry) {
	a.mu.Lock()
	a.root = &e
	a.mu.Unlock()
}

// lastRoot returns the export root's last known attributes, or a plain
// directory's if none are known.
func (a *attrCache) lastRoot() peerproto.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.root != nil {
		return *a.root
	}
	return peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755}
}

// resetLocked forgets every attribute and listing. Called with a.mu held.
func (a *attrCache) resetLocked() {
	a.dirs, a.stats, a.below = map[string]*dirCache{}, map[string]statCache{}, map[string]int{}
	// The guesses stay (attrs_times.go): each holds only while the
	// peer's answers give the times tied to it.
}

// countLocked adds d to below of every directory above path. Called with
// a.mu held.
func (a *attrCache) countLocked(path string, d int) { countAbove(a.below, path, d) }

// countAbove adds d to counts of every directory above path, keeping no
// zero counts.
func countAbove(counts map[string]int, path string, d int) {
	for path != "" {
		path = parent(path)
		if n := counts[path] + d; n != 0 {
			counts[path] = n
		} else {
			delete(counts, path)
		}
	}
}

// putStatLocked sets stats[path]. Called with a.mu held.
func (a *attrCache) putStatLocked(path string, sc statCache) { putCounted(a, a.stats, path, sc) }

// delStatLocked deletes stats[path]. Called with a.mu held.
func (a *attrCache) delStatLocked(path string) { delCounted(a, a.stats, path) }

// putDirLocked sets dirs[dir]. Called with a.mu held.
func (a *attrCache) putDirLocked(dir string, dc *dirCache) { putCounted(a, a.dirs, dir, dc) }

// delDirLocked deletes dirs[dir]. Called with a.mu held.
func (a *attrCache) delDirLocked(dir string) { delCounted(a, a.dirs, dir) }

// putCounted sets m[k], m one of a's maps counted in below. Called with
// a.mu held.
func putCounted[V any](a *attrCache, m map[string]V, k string, v V) {
	if _, had := m[k]; !had {
		a.countLocked(k, 1)
	}
	m[k] = v
}

// delCounted deletes m[k], m one of a's maps counted in below. Called
// with a.mu held.
func delCounted[V any](a *attrCache, m map[string]V, k string) {
	if _, had := m[k]; had {
		delete(m, k)
		a.countLocked(k, -1)
	}
}
