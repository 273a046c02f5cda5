package remote

// Watching a peer's directories (WATCH, docs/PROTOCOL.md "Watching
// directories"): the mount keeps one event connection to each peer that
// serves it, and asks it to watch every directory it lists (and those
// above it). A listing taken while its directory and every one above it
// were watched is trusted past the attribute timeout, up to
// Options.WatchTTL, while the peer's events keep coming (a line at least
// every TickEvery): each event is applied to it, so that a program on
// this machine sees another's change to the peer as soon as it is
// reported, and a path walk or `ls` in a known directory costs no round
// trip to the peer however long ago it was listed. A peer that falls
// silent (it writes a TICK every TickEvery at least) ends the trust
// within watchSilence. The kernel's own
// caches still expire after the attribute timeout; it then asks the
// mount, which answers from such a listing.
//
// Order: events come in order on their connection, answers to this
// mount's requests on others, so either may be the older. An answer (a
// STAT, a PUT DONE) or this mount's own change that disagrees with a
// watched listing is kept in it, but unconfirmed: the listing is trusted
// for the attribute timeout only until an event agrees with it
// (dirCache.unconfirmed), and events that disagree meanwhile are not
// applied over it. A LIST during which an event about its directory
// came is trusted for the attribute timeout only (attrCache.gens), and
// so is a directory's STAT (rememberStat). A lost connection, a RESET
// or an UNWATCHED ends the trust of what it covered.

import (
	"container/list"
	"context"
	"errors"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

const (
	// watchSilence is how long the mount waits for a line on an event
	// connection (the peer writes one every TickEvery at least) before
	// it takes the connection for dead.
	watchSilence = 8 * peerproto.TickEvery
	// watchPing is how often the mount pings an event connection, so
	// that the peer does not close it as idle.
	watchPing = time.Minute
	// Bounds of the wait between attempts to open an event connection;
	// a peer without WATCH is asked again after watchNone.
	watchRetryMin = time.Second
	watchRetryMax = 30 * time.Second
	watchNone     = 5 * time.Minute
	// watchDial bounds opening an event connection.
	watchDial = 15 * time.Second
	// DefaultWatchTTL is how long a watched listing is trusted at most.
	DefaultWatchTTL = 30 * time.Second
	// maxWatches bounds the directories a mount has one peer watch:
	// each is an inotify watch of the peer's user, a budget
	// (fs.inotify.max_user_watches, 8192 on older kernels) that the
	// peer's other programs share. Past it, the directory listed least
	// recently is no longer watched (UNWATCH); listed again, it is
	// watched again.
	maxWatches = 4096
)

// watchEpochs numbers event connections, process-wide (never 0).
var watchEpochs atomic.Uint64

// sameEntry reports whether a and b say the same of an entry, as far as
// both say: a listing's entry and an answer's, or an event's.
func sameEntry(a, b peerproto.Entry) bool {
	if a.Type != b.Type || a.Mode != b.Mode || a.Size != b.Size || a.Mtime != b.Mtime || a.Ver != b.Ver {
		return false
	}
	both := a.Has & b.Has
	switch {
	case both&peerproto.AttrIno != 0 && a.Ino != b.Ino,
		both&peerproto.AttrNlink != 0 && a.Nlink != b.Nlink,
		both&peerproto.AttrUid != 0 && a.Uid != b.Uid,
		both&peerproto.AttrGid != 0 && a.Gid != b.Gid,
		both&peerproto.AttrCtime != 0 && a.Ctime != b.Ctime,
		both&peerproto.AttrLink != 0 && a.Target != b.Target,
		both&peerproto.AttrRdev != 0 && (a.RdevMajor != b.RdevMajor || a.RdevMinor != b.RdevMinor):
		return false
	}
	return true
}

// replaced reports whether e, reported at a path whose listed entry is
// was, is another file or directory than was (a directory replaced).
func replaced(was, e peerproto.Entry) bool {
	if was.Type == 0 || !was.IsDir() {
		return false
	}
	return !e.IsDir() || was.Has&e.Has&peerproto.AttrIno != 0 && was.Ino != e.Ino
}

// maxGens bounds attrCache.gens; past it, it starts afresh from a floor
// that every request on its way then sees as an event (genLocked).
const maxGens = 1 << 16

// genLocked returns the number of the last event about dir or its
// entries (0 for none); a request compares it before and after. Called
// with a.mu held.
func (a *attrCache) genLocked(dir string) uint64 {
	return max(a.gens[dir], a.gensFloor)
}

// otherNames reports whether e, not a directory, has other hard links:
// changed through one of them, it is reported in that one's directory.
func otherNames(e peerproto.Entry) bool {
	return e.Type != peerproto.TypeDir && linkedIno(e) != 0
}

// askLocked has dir, and every directory above it, watched if they are
// not yet, on the event connection there is or the next one, and notes
// them as the directories listed last (recent: each one above after the
// one below it, so that none is ever older than a directory under it).
// Called with a.mu held.
func (a *attrCache) askLocked(dir string) {
	if a.wake == nil {
		return
	}
	added := false
	for {
		if e := a.asked[dir]; e != nil {
			a.recent.MoveToFront(e)
		} else {
			a.asked[dir] = a.recent.PushFront(dir)
			if a.epoch != 0 {
				// (Without an event connection, the next one asks
				// for what recent holds: watchStarted.)
				a.want = append(a.want, dir)
				a.wanted[dir] = true
				added = true
			}
		}
		if dir == "" {
			break
		}
		dir = parent(dir)
	}
	if a.evictLocked() || added {
		a.pokeLocked()
	}
}

// pokeLocked wakes the event connection's writer: there is something to
// ask. Called with a.mu held.
func (a *attrCache) pokeLocked() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// evictLocked stops watching the directories listed least recently
// while more than maxWatch are asked: each has nothing asked under it
// (askLocked's order), so letting it go touches nothing else. One whose
// WATCH is on its way is kept until its answer; one not sent yet is not
// sent. It reports whether an UNWATCH is to be sent. Called with a.mu
// held.
func (a *attrCache) evictLocked() bool {
	unwant := false
	for len(a.asked) > a.maxWatch {
		e := a.recent.Back()
		dir := e.Value.(string)
		if dir == "" || a.inFlight[dir] > 0 {
			break // the root stays; an answer to come stays awaited
		}
		delete(a.wanted, dir)
		if a.watched[dir] {
			a.unwant = append(a.unwant, dir)
			unwant = true
		}
		a.recent.Remove(e)
		delete(a.asked, dir)
		delete(a.watched, dir)
		a.unwatchedOneLocked(dir)
	}
	return unwant
}

// unwatchedOneLocked drops the trust of what was learned of dir while it
// was watched: its listing and own attributes, and the answers on their
// way about it (a LIST or STAT that began while it was watched must not
// count as watched if it is watched again before they come: changes in
// between went unreported). Called with a.mu held.
func (a *attrCache) unwatchedOneLocked(dir string) {
	a.bumpGenLocked(dir)
	if dc := a.dirs[dir]; dc != nil {
		dc.epoch = 0
	}
	if sc, ok := a.stats[dir]; ok && sc.epoch != 0 {
		sc.epoch = 0
		a.putStatLocked(dir, sc)
	}
}

// bumpGenLocked numbers a new event about path (gens). Called with a.mu
// held.
func (a *attrCache) bumpGenLocked(path string) {
	a.evSeq++
	if len(a.gens) >= maxGens {
		clear(a.gens)
		a.gensFloor = a.evSeq
	}
	a.gens[path] = a.evSeq
}

// watchStarted begins a new epoch for a new event connection: what it
// must watch is the directories asked before (those listed most
// recently, at most maxWatch), in the same order, and the root.
func (a *attrCache) watchStarted() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := make([]string, 0, a.recent.Len())
	for e := a.recent.Back(); e != nil; e = e.Prev() {
		old = append(old, e.Value.(string)) // the least recent first
	}
	a.epoch = watchEpochs.Add(1)
	a.asked, a.gens = map[string]*list.Element{}, map[string]uint64{}
	a.recent.Init()
	a.dropRequestsLocked()
	for _, dir := range old {
		a.askLocked(dir)
	}
	a.askLocked("")
	return a.epoch
}

// watchEnded ends epoch: nothing is trusted for its events any more,
// and what was to be asked on its connection, or awaits an answer there,
// is forgotten (the next connection asks anew: watchStarted).
func (a *attrCache) watchEnded(epoch uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epoch != epoch && a.epoch != 0 {
		return // (a new one began: not possible from watchOnce)
	}
	a.epoch = 0
	a.dropRequestsLocked()
}

// dropRequestsLocked forgets what an event connection was told and is
// to be told: what it watches, what is to be asked on it or awaits an
// answer there. Called with a.mu held.
func (a *attrCache) dropRequestsLocked() {
	a.watched = map[string]bool{}
	a.want, a.sent, a.unwant = nil, nil, nil
	a.wanted, a.inFlight, a.void = map[string]bool{}, map[string]int{}, map[string]int{}
}

// takeWant returns the directories to ask for now on the event
// connection of epoch, noted as sent (their answers come in that order),
// and those to stop watching; nothing once epoch ended.
func (a *attrCache) takeWant(epoch uint64) (want, unwant []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epoch != epoch || epoch == 0 {
		return nil, nil
	}
	for _, dir := range a.want {
		if a.wanted[dir] {
			delete(a.wanted, dir)
			want = append(want, dir)
			a.inFlight[dir]++
		}
	}
	unwant = a.unwant
	a.want, a.unwant = nil, nil
	a.sent = append(a.sent, want...)
	return want, unwant
}

// answeredLocked notes the answer to the first WATCH on its way, and
// returns its directory and whether an UNWATCH of it was queued since it
// went (void: the peer stops watching it after this answer). Called with
// a.mu held.
func (a *attrCache) answeredLocked() (dir string, void bool) {
	dir = a.sent[0]
	a.sent = a.sent[1:]
	if a.inFlight[dir]--; a.inFlight[dir] <= 0 {
		delete(a.inFlight, dir)
	}
	if a.void[dir] > 0 {
		if a.void[dir]--; a.void[dir] == 0 {
			delete(a.void, dir)
		}
		return dir, true
	}
	return dir, false
}

// onEvent applies line m of the event connection of epoch; false if m
// makes no sense there (an answer to nothing asked): the connection is
// then out of step.
func (a *attrCache) onEvent(epoch uint64, m peerproto.Message) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epoch != epoch {
		return true // ended meanwhile
	}
	switch m := m.(type) {
	case peerproto.Tick, peerproto.Pong, peerproto.UnwatchOK:
	case peerproto.WatchOK:
		if len(a.sent) == 0 || a.sent[0] != m.Dir {
			return false
		}
		if _, void := a.answeredLocked(); void {
			break // an UNWATCH follows it
		}
		if a.asked[m.Dir] == nil {
			// Forgotten meanwhile (UNWATCHED above it): not wanted
			// watched until listed again. The WATCHes of it still on
			// their way go before the UNWATCH: void.
			a.unwant = append(a.unwant, m.Dir)
			if n := a.inFlight[m.Dir]; n > 0 {
				a.void[m.Dir] = n
			}
			a.pokeLocked()
			break
		}
		a.watched[m.Dir] = true
		// Let go of what was kept only for this answer.
		if a.evictLocked() {
			a.pokeLocked()
		}
	case peerproto.Refusal:
		// Not watched (a limit, gone meanwhile): it stays asked, so
		// not asked again in this epoch.
		if len(a.sent) == 0 {
			return false
		}
		dir, void := a.answeredLocked()
		if !void && a.watched[dir] {
			// Watched, and asked again (a listing while its first
			// answer was on its way): the peer may have dropped it
			// (moved while watched anew) without an UNWATCHED, or may
			// still hold it (no longer readable): trusted no more, and
			// let go on the peer too.
			a.unwatchedLocked(dir)
			a.unwant = append(a.unwant, dir)
			if n := a.inFlight[dir]; n > 0 {
				a.void[dir] = n
			}
			a.pokeLocked()
		}
		// Let go of what was kept only for this answer.
		if a.evictLocked() {
			a.pokeLocked()
		}
	case peerproto.Unwatched:
		a.unwatchedLocked(m.Dir)
		a.pathsMovedLocked(m.Dir)
	case peerproto.Reset:
		// Changes were lost: this connection's word counts no more.
		// A new one (a new epoch) watches anew.
		a.epoch, a.watched = 0, map[string]bool{}
		return false
	case peerproto.Changed:
		a.eventedLocked(m.Entry.Name, m.Entry, false)
	case peerproto.Gone:
		a.eventedLocked(m.Path, peerproto.Entry{}, true)
	default:
		return false
	}
	return true
}

// pathsMovedLocked handles what UNWATCHED dir says beyond that: the
// path leads to another directory now, or none (moved, removed or
// replaced on the peer): what is known at or under it goes, and so does
// what the kernel holds of it, unless this mount moved it itself just
// now. Called with a.mu held.
func (a *attrCache) pathsMovedLocked(dir string) {
	now := a.now()
	for p := dir; ; p = parent(p) {
		if a.ownSelfLocked(p, now) {
			// This mount moved or removed it, or one above it (the
			// peer lets go of each watched one under it): its own
			// moved and gone dealt with what it knew there, and a
			// directory it made at the old path since is its own.
			return
		}
		if p == "" {
			break
		}
	}
	a.dropTreeLocked(dir)
	if dir == "" {
		return
	}
	a.foreign = append(a.foreign, fusefs.EntryChange{Path: dir, Type: fs.ModeDir, Replaced: true})
	a.foreignN++
}

// unwatchedLocked handles UNWATCHED dir: dir and everything under it
// are not watched any more, and nothing learned of them while they were
// is trusted past ttl (watched again later, they are listed again).
// Called with a.mu held.
func (a *attrCache) unwatchedLocked(dir string) {
	for d := range a.watched {
		if under(d, dir) {
			delete(a.watched, d)
			a.bumpGenLocked(d) // see unwatchedOneLocked
		}
	}
	for d, e := range a.asked {
		if under(d, dir) {
			a.recent.Remove(e)
			delete(a.asked, d)
			delete(a.wanted, d)
		}
	}
	a.unwatchedOneLocked(dir)
	if a.below[dir] == 0 {
		return // nothing cached under it
	}
	for d, dc := range a.dirs {
		if under(d, dir) {
			dc.epoch = 0
		}
	}
	for p, sc := range a.stats {
		if sc.epoch != 0 && under(p, dir) {
			sc.epoch = 0
			a.putStatLocked(p, sc)
		}
	}
}

// eventedLocked applies the peer's report that path is now e, or gone.
// Called with a.mu held.
func (a *attrCache) eventedLocked(path string, e peerproto.Entry, gone bool) {
	now := a.now()
	own := a.ownRecentLocked(path, now)
	foreign, swapped := a.foreignLocked(path, e, gone, own, now)
	if foreign && !gone && e.IsDir() && !a.watchedLocked(path) {
		// A directory not watched: what is in it may have changed
		// unreported (its entry's times moved; its inode number may
		// even be the removed one's, reused).
		swapped = true
	}
	if foreign {
		ch := fusefs.EntryChange{Path: path, Gone: gone, Type: typeMode(e.Type), Replaced: swapped}
		if e.Has&peerproto.AttrIno != 0 {
			ch.Ino = e.Ino
		}
		a.foreign = append(a.foreign, ch)
		a.foreignN++
		// (A file's other names, its hard links, changed too, and are
		// not reported: trusted for ttl only, they show it within the
		// attribute timeout. Finding them here would scan every name
		// cached, per report: a tree of hard links made on the peer
		// would hold the event connection up for seconds.)
	}
	a.bumpGenLocked(path)
	if path != "" {
		a.gens[parent(path)] = a.evSeq
	}
	if path != "" {
		// The directory's own times and link count change with its
		// entries: its attributes are asked again.
		if sc, ok := a.stats[parent(path)]; ok && sc.epoch != 0 {
			a.delStatLocked(parent(path))
		}
	}
	if sc, ok := a.stats[path]; ok {
		switch {
		case now.Sub(sc.at) >= a.ttl, foreign:
			// Expired, or another writer's change since: the kernel,
			// told of it, asks again, and must not be answered this.
			a.delStatLocked(path)
		case sc.exists == gone || !gone && !sameEntry(sc.e, e):
			// A fresh answer, or this mount's own change (a mkdir
			// written behind counts in its parent's links before the
			// peer has it), that says otherwise may be newer than this
			// event or older: kept for its ttl, no longer.
			sc.epoch = 0
			a.putStatLocked(path, sc)
		}
	}
	if path == "" {
		return
	}
	dc, ok := a.dirs[parent(path)]
	if gone || swapped || ok && replaced(dc.entries[base(path)], e) {
		// A directory gone, or another one (or a file) in its place:
		// nothing known under it holds.
		a.dropTreeLocked(path)
	}
	if !ok {
		return
	}
	name := base(path)
	if dc.unconfirmed[name] {
		// The listing has this mount's answer for it: kept until an
		// event agrees (this one may be older than the answer), or
		// until this mount's change is ownQuiet old (a report then is
		// of what came after it: the answer may hold an estimate, a
		// directory's times, that no report ever agrees with).
		old, had := dc.entries[name]
		agrees := had != gone && (gone || sameEntry(old, e))
		if agrees || !own {
			delete(dc.unconfirmed, name)
		}
		if own {
			return
		}
	}
	if old, had := dc.entries[name]; own && (had == gone || !gone && !sameEntry(old, e)) { // disagrees
		if at, ok := a.ownMarkLocked(path, now); ok && !dc.at.Before(at) {
			// The listing was taken after this mount changed the name,
			// and this report of it, its echo, may have been read
			// before the listing was (its request went on another
			// connection): kept, unconfirmed (trusted for ttl only).
			// (A LIST read before the change and answered after it
			// has the change's answer laid over it: listCall.own.)
			a.ownEntryLocked(dc, parent(path), name)
			return
		}
	}
	if gone {
		delete(dc.entries, name)
		delete(dc.stale, name)
	} else {
		e.Name = name
		dc.entries[name] = e
		// (A stale name stays so: the change of this mount's that made
		// it stale, a chmod through another of its hard links, may be
		// later than this report. The next answer clears it.)
	}
}

// foreignLocked reports whether the peer's report that path is now e,
// or gone, tells of another writer's change (for takeForeign), and
// whether it replaced what this mount knew there (made, removed, of
// another type, or a directory of another inode). It compares with what
// this mount last said of path: its parent's listing, else its own
// STAT's answer; a path of which it knows nothing counts as changed
// (the kernel may hold what an answer since let go of said), without
// replaced. Not foreign: a report of a path this mount changed within
// ownQuiet (own), which may be the echo of that change, and come before
// its answer. Called with a.mu held, before the report is applied.
func (a *attrCache) foreignLocked(path string, e peerproto.Entry, gone, own bool, now time.Time) (foreign, swapped bool) {
	if path == "" || own {
		return false, false
	}
	var old peerproto.Entry
	var had bool
	if dc, ok := a.dirs[parent(path)]; ok {
		old, had = dc.entries[base(path)]
	} else if sc, ok := a.stats[path]; ok && now.Sub(sc.at) < a.ttl {
		old, had = sc.e, sc.exists
	} else {
		return true, false
	}
	switch {
	case had == gone:
		return true, true // made or removed
	case gone:
		return false, false // known gone already
	case old.Type != e.Type || replaced(old, e):
		return true, true
	case !sameEntry(old, e):
		return true, false
	}
	return false, false
}

// watchLoop keeps an event connection to p while p is a peer of this
// Store: it opens one, asks for the directories the attribute cache
// wants watched, feeds it the events, and opens another when it breaks.
func (s *Store) watchLoop(p *peerConn, stop <-chan struct{}) {
	defer s.wg.Done()
	wait := watchRetryMin
	for {
		err := s.watchOnce(p, stop)
		select {
		case <-stop:
			return
		case <-s.stop:
			return
		default:
		}
		switch {
		case errors.Is(err, peer.ErrNoWatch):
			wait = watchNone
		case err != nil:
			s.log.Debug().Err(err).Str("remote_peer", p.name).Msg("event connection lost; listings are trusted for the attribute timeout only until it is back")
		}
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, watchRetryMax)
		if errors.Is(err, peer.ErrNoWatch) {
			wait = watchNone
		} else if err == nil {
			wait = watchRetryMin
		}
	}
}

// watchOnce runs one event connection to p until it breaks or stop.
func (s *Store) watchOnce(p *peerConn, stop <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), watchDial)
	c, err := p.link.pool.Dial(ctx)
	if err != nil {
		cancel()
		return err
	}
	ev, err := c.Events(ctx)
	cancel()
	if err != nil {
		c.Close()
		return err
	}
	defer ev.Close()
	a := p.attrs
	epoch := a.watchStarted()
	defer a.watchEnded(epoch)
	done := make(chan struct{})
	defer close(done)
	// The requests go out from here; the lines are read below.
	go func() {
		ping := time.NewTicker(watchPing)
		defer ping.Stop()
		for {
			want, unwant := a.takeWant(epoch)
			for _, dir := range unwant {
				if ev.Unwatch(dir) != nil {
					ev.Close() // the reader ends
					return
				}
			}
			for _, dir := range want {
				if ev.Watch(dir) != nil {
					ev.Close()
					return
				}
			}
			select {
			case <-done:
				return
			case <-stop:
				ev.Close()
				return
			case <-s.stop:
				ev.Close()
				return
			case <-ping.C:
				if ev.Ping() != nil {
					ev.Close()
					return
				}
			case <-a.wake:
			}
		}
	}()
	for {
		m, err := ev.Next(watchSilence)
		if err != nil {
			return err
		}
		if !a.onEvent(epoch, m) {
			return errors.New("remote: event connection out of step")
		}
		for _, ch := range a.takeForeign() {
			ch.Peer = p.name
			s.notifyEntry(ch)
		}
	}
}

// watchCounts returns how many directories the peer watches for this
// mount now, and how many foreign changes its events told of so far.
func (a *attrCache) watchCounts() (watched int, foreign uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epoch == 0 {
		return 0, a.foreignN
	}
	return len(a.watched), a.foreignN
}

// takeForeign returns (and forgets) the foreign changes the events
// applied so far reported.
func (a *attrCache) takeForeign() []fusefs.EntryChange {
	a.mu.Lock()
	defer a.mu.Unlock()
	fc := a.foreign
	a.foreign = nil
	return fc
}

// statBegin notes, before a STAT of path, what rememberStat needs to
// tell whether its answer can be trusted as long as a watched listing:
// the events about path so far, and the epoch if path is watched now.
func (a *attrCache) statBegin(path string) (gen, epoch uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epoch != 0 && a.watchedLocked(path) {
		epoch = a.epoch
	}
	return a.genLocked(path), epoch
}

// rememberStat is remember for a STAT's answer e about path, which
// statBegin preceded: a watched directory's own attributes, with no
// event about it since the STAT went out, are trusted past ttl.
func (a *attrCache) rememberStat(path string, e peerproto.Entry, gen, epoch uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rememberLocked(path, e, true) // shown compares it with a guess
	if epoch == 0 || !e.IsDir() {
		return
	}
	if sc, ok := a.stats[path]; ok && epoch == a.epoch && gen == a.genLocked(path) && a.watchedLocked(path) {
		sc.epoch = epoch
		a.putStatLocked(path, sc)
	}
}
