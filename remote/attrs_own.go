package remote

import (
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// What the attribute cache learns from this mount's own changes, before
// or without asking the peer: a directory made, entries removed or moved,
// times moved on, and the versions a change written behind is bound to.

// lastVersion returns the last version known of file path, from an
// answer of any age ("" if none is known, or path is not a regular file).
func (a *attrCache) lastVersion(path string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.lastKnownLocked(path)
	if !ok || e.IsDir() {
		return ""
	}
	return string(e.Version())
}

// entryChanged records that an entry was just made in directory dir on
// the peer, or removed from it (removed; a directory if sub), at about
// mtime (the new entry's own modification time on the peer's clock, or
// this mount's clock for a change written behind): dir's modification
// and change times are that late at least, and its link count follows a
// subdirectory made or removed. Its cached attributes are moved on to it,
// keeping their age, rather than dropped: a program creating (or removing) file
// after file in dir would otherwise cost a STAT of dir each (the kernel
// checks its permissions before every create). They are the directory's,
// a moment early, until the next STAT.
func (a *attrCache) entryChanged(dir string, mtime int64, removed, sub bool) {
	moved := func(e *peerproto.Entry) {
		e.Mtime = tickAfter(e.Mtime, mtime)
		if e.Has&peerproto.AttrCtime != 0 {
			e.Ctime = tickAfter(e.Ctime, mtime)
		}
		switch {
		case !sub || e.Has&peerproto.AttrNlink == 0:
		case removed && e.Nlink > 2:
			e.Nlink--
		case !removed && e.Nlink >= 2:
			// The new subdirectory's "..", where directories count
			// them (btrfs keeps 1).
			e.Nlink++
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.supersedeLocked(dir) // a LIST in flight may predate the entry
	a.ownInLocked(dir)
	a.editLocked(dir, moved)
}

// editLocked applies change to the attributes cached of path that say it
// exists: its own STAT's and its entry in its parent's listing, each
// keeping its age. Called with a.mu held.
//
// The times it gives are this mount's guess (guessEditLocked): shown,
// not the peer's when they come, until the peer's are known and tied to
// it.
func (a *attrCache) editLocked(path string, change func(*peerproto.Entry)) {
	var edited *peerproto.Entry
	if sc, ok := a.stats[path]; ok && sc.exists {
		change(&sc.e)
		a.putStatLocked(path, sc)
		edited = &sc.e
	}
	if dc, ok := a.dirs[parent(path)]; ok && path != "" {
		if e, ok := dc.entries[base(path)]; ok {
			change(&e)
			dc.entries[base(path)] = e
			a.ownEntryLocked(dc, parent(path), base(path))
			if edited == nil {
				edited = &e
			}
		}
	}
	a.guessEditLocked(path, edited, change)
}

// changedAt records that path's change time moved to ctime (this mount's
// clock; a rename written behind), keeping the rest and its age.
func (a *attrCache) changedAt(path string, ctime int64) {
	a.changedHere(path, func(e *peerproto.Entry) {
		if e.Has&peerproto.AttrCtime == 0 {
			e.Has |= peerproto.AttrCtime
			e.Ctime = ctime
			return
		}
		e.Ctime = tickAfter(e.Ctime, ctime)
	})
}

// emptyDir records that directory path was just created here, so empty:
// lookups of new names in it (a program filling it) need no STAT.
func (a *attrCache) emptyDir(path string) {
	a.mu.Lock()
	a.ownLocked(path)
	a.putDirLocked(path, &dirCache{at: a.now(), entries: map[string]peerproto.Entry{}})
	a.mu.Unlock()
}

// gone records that path (a file, or a directory with everything under
// it) no longer exists on the peer, keeping the parent's listing: a
// program removing a directory's entries one by one (rm -r) then costs no
// re-listing per entry.
func (a *attrCache) gone(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ownLocked(path)
	a.supersedeLocked(parent(path))
	a.dropTreeLocked(path)
	a.unguessTreeLocked(path)
	a.setStatLocked(path, statCache{at: a.now(), exists: false})
	if dc, ok := a.dirs[parent(path)]; ok && path != "" {
		delete(dc.entries, base(path))
		delete(dc.stale, base(path))
		a.ownEntryLocked(dc, parent(path), base(path))
	}
}

// moved records a successful rename of from to to, keeping both parents'
// listings. Attributes carried over are those younger than ttl, and keep
// their age: a rename never makes stale attributes fresh.
func (a *attrCache) moved(from, to string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ownLocked(from)
	a.ownLocked(to)
	a.supersedeLocked(parent(from))
	a.supersedeLocked(parent(to))
	a.moveGuessesLocked(from, to)
	now := a.now()
	var e peerproto.Entry
	var at time.Time
	known := false
	if dc, ok := a.dirs[parent(from)]; ok {
		e, known = dc.entries[base(from)]
		known = known && !dc.stale[base(from)]
		at = dc.at
		delete(dc.entries, base(from))
		delete(dc.stale, base(from))
		a.ownEntryLocked(dc, parent(from), base(from))
	}
	if sc, ok := a.stats[from]; ok && sc.exists && (!known || sc.at.After(at)) {
		e, at, known = sc.e, sc.at, true
	}
	// Only a path with something cached under it costs a scan of the
	// caches (below): a file's rename (rm -r, mv of many files, an
	// editor's save) costs none.
	a.dropTreeLocked(from)
	a.dropTreeLocked(to)
	a.setStatLocked(from, statCache{at: now, exists: false})
	fresh := known && now.Sub(at) < a.ttl
	if fresh && !e.IsDir() {
		// The file's attributes did not change with its name: the next
		// lookup of the new name (an editor's save loop) needs no STAT.
		e.Name = base(to)
		a.setStatLocked(to, statCache{at: at, e: e, exists: true})
	}
	if dc, ok := a.dirs[parent(to)]; ok {
		if fresh && !dc.at.After(at) { // never fresher than what it says
			e.Name = base(to)
			dc.entries[base(to)] = e
			delete(dc.stale, base(to))
			a.ownEntryLocked(dc, parent(to), base(to))
		} else {
			a.delDirLocked(parent(to)) // the new entry's attributes are unknown
		}
	}
}

// changedHere applies change to the attributes cached of path (a SETATTR
// written behind: new permission bits or times), keeping their age: a
// change made here never makes the rest of an answer fresher. A LIST of
// its directory in flight is superseded: it may predate the change.
func (a *attrCache) changedHere(path string, change func(*peerproto.Entry)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.supersedeLocked(parent(path))
	a.ownAttrsLocked(path)
	a.editLocked(path, change)
}

// ownQuiet is how long after this mount sent a change of a path (or
// made one here) the peer's reports of it are taken for that change's
// echo, not another writer's (takeForeign): a report may come before the
// change's answer, on another connection, or agree with neither the
// answer nor what was listed (a directory's times). Another writer's
// change of the same path within it goes untold to the kernel, which
// then sees it when its attribute timeout ends, as without watching.
const ownQuiet = 2 * time.Second

// ownChange records that this mount is about to send a change of each
// of paths (and so of the directory holding it) to the peer. Called
// before the request goes: its report may come before its answer.
func (a *attrCache) ownChange(paths ...string) {
	a.mu.Lock()
	for _, p := range paths {
		a.ownLocked(p)
	}
	a.mu.Unlock()
}

// ownSending records that this mount is about to send an upload of file
// path (a change of it, and so of the directory holding it) that may
// take long, and returns the function to call once it is answered (or
// failed): until then every report of path is taken for its echo, and
// for ownQuiet after (see attrCache.sending).
func (a *attrCache) ownSending(path string) (answered func()) {
	a.mu.Lock()
	a.ownLocked(path)
	a.sending[path]++
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		if a.sending[path]--; a.sending[path] <= 0 {
			delete(a.sending, path)
		}
		a.ownLocked(path)
		a.mu.Unlock()
	}
}

// ownLocked notes path, and its directory, as changed by this mount now
// (ownAt, ownQ), and lets go of the marks ownQuiet old, or the oldest
// past maxOwnMarks (their reports long come). Called with a.mu held.
func (a *attrCache) ownLocked(path string) {
	now := a.now()
	a.markOwnLocked(a.ownAt, path, now)
	if path != "" {
		a.markOwnLocked(a.ownIn, parent(path), now)
	}
	a.pruneOwnLocked(now)
}

// pruneOwnLocked lets go of the marks ownQuiet old, or the oldest past
// maxOwnMarks. Called with a.mu held.
func (a *attrCache) pruneOwnLocked(now time.Time) {
	for len(a.ownQ) > 0 && (now.Sub(a.ownQ[0].at) >= ownQuiet || len(a.ownQ) > maxOwnMarks) {
		m := a.ownQ[0]
		a.ownQ = a.ownQ[1:]
		if m.marks[m.path].Equal(m.at) {
			delete(m.marks, m.path)
		}
	}
}

// ownInLocked notes an entry of directory dir as changed by this mount
// now (ownIn): reports of dir's own attributes are its echo, but not a
// report that dir itself was moved (pathsMovedLocked). Called with a.mu
// held.
func (a *attrCache) ownInLocked(dir string) {
	now := a.now()
	a.markOwnLocked(a.ownIn, dir, now)
	a.pruneOwnLocked(now)
}

// ownAttrs records that this mount is about to send a change of the
// attributes of each of paths (a SETATTR): reports of it are its echo,
// but not one that it was moved (pathsMovedLocked).
func (a *attrCache) ownAttrs(paths ...string) {
	a.mu.Lock()
	for _, p := range paths {
		a.ownAttrsLocked(p)
	}
	a.mu.Unlock()
}

// ownAttrsLocked is ownAttrs for one path. Called with a.mu held.
func (a *attrCache) ownAttrsLocked(path string) {
	a.ownInLocked(path)
	if path != "" {
		a.ownInLocked(parent(path))
	}
}

// markOwnLocked records one mark in marks (ownAt or ownIn). Called with
// a.mu held.
func (a *attrCache) markOwnLocked(marks map[string]time.Time, path string, now time.Time) {
	marks[path] = now
	a.ownQ = append(a.ownQ, ownMark{marks, path, now})
}

// ownMark is one of ownQ's marks, in the map it was made in.
type ownMark struct {
	marks map[string]time.Time
	path  string
	at    time.Time
}

// maxOwnMarks bounds ownQ (and so ownAt): an rm -r written behind marks
// two paths per file, some thousands a second.
const maxOwnMarks = 1 << 16

// ownRecentLocked reports whether this mount changed path within
// ownQuiet, or has a change of it written behind still to carry out.
// Called with a.mu held.
func (a *attrCache) ownRecentLocked(path string, now time.Time) bool {
	return marked(a.ownIn, path, now) || marked(a.ownAt, path, now) || a.sending[path] > 0 ||
		a.pending != nil && a.pending(path, true)
}

// ownMarkLocked returns when this mount last marked path as changed by
// it (ownAt, ownIn), if within ownQuiet of now. Called with a.mu held.
func (a *attrCache) ownMarkLocked(path string, now time.Time) (time.Time, bool) {
	at, ok := a.ownAt[path]
	if in, has := a.ownIn[path]; has && (!ok || in.After(at)) {
		at, ok = in, true
	}
	return at, ok && now.Sub(at) < ownQuiet
}

// marked reports whether marks (ownAt, ownIn) has path within ownQuiet
// of now.
func marked(marks map[string]time.Time, path string, now time.Time) bool {
	at, ok := marks[path]
	return ok && now.Sub(at) < ownQuiet
}

// ownSelfLocked is ownRecentLocked for a change of path itself, not
// only of an entry in it. Called with a.mu held.
func (a *attrCache) ownSelfLocked(path string, now time.Time) bool {
	return marked(a.ownAt, path, now) || a.sending[path] > 0 || a.pending != nil && a.pending(path, false)
}
