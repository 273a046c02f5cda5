package remote

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// Sync implements fusefs.Store: it runs a SYNC round through the tracker,
// in whose turn FlushAll stores every local change. Without a tracker (none
// configured, or unreachable) the changes are uploaded directly, so a
// writer's fsync still means "stored on the peer".
//
// A change written behind that its peer refused since the last Sync is
// its error too (behind.go): the program that fsyncs hears of it.
func (s *Store) Sync(ctx context.Context) error {
	err := s.syncRound(ctx)
	if err == nil {
		err = s.refusals()
	}
	return err
}

// syncRound is Sync without the refusals.
func (s *Store) syncRound(ctx context.Context) error {
	s.mu.Lock()
	sy := s.syncer
	s.mu.Unlock()
	if sy == nil {
		return s.FlushAll(ctx)
	}
	err := sy.Sync(ctx)
	if errors.Is(err, tracker.ErrNotRegistered) || errors.Is(err, tracker.ErrDisconnected) {
		s.log.Warn().Err(err).Msg("no SYNC round possible; uploading directly")
		return s.FlushAll(ctx)
	}
	return err
}

// TakeWrote reports whether this Store may have changed a peer's export
// (sent PUT, DELETE, RENAME, MKDIR, RMDIR or SETATTR) since the last
// call, and starts counting afresh. It implements tracker.WroteReporter.
func (s *Store) TakeWrote() bool {
	wrote := s.wrote.Swap(false)
	s.wroteLast.Store(wrote)
	return wrote
}

// RoundEnded is the last step of SyncEnd (round.go). After a round in which
// another peer may have stored something, every cached attribute and
// listing is dropped (InvalidateAll), so that from now on this client
// reads what the others wrote: the round is a barrier. After a round in
// which only this peer wrote, the caches already hold what it stored and
// are kept.
func (s *Store) RoundEnded(end peerproto.SyncEnd) {
	if end.OthersWrote(s.opts.Self) {
		s.InvalidateAll()
	}
}

// FlushAll uploads every local change and has the peers make what they
// stored from here durable. It is this peer's work during its SYNC OK
// turn, and returns the first upload error. A single file (an fsync's,
// when its turn came before its upload began) takes the FSYNC behind its
// PUT (uploadDurable): one round trip. Several go as a close sends them,
// and fsyncPeers has each peer make them durable at once.
func (s *Store) FlushAll(ctx context.Context) error {
	// The removals acknowledged before go first (behind.go).
	first := s.drainBehind(ctx)
	states := s.states()
	for _, f := range states {
		// A copy set aside now is its writer's to hear of, at its
		// close or fsync: it must not fail everybody's fsync.
		if err := s.uploadWith(ctx, f, true, len(states) == 1); err != nil && first == nil && !errors.Is(err, errSetAside) {
			first = err
		}
	}
	if err := s.fsyncPeers(ctx); err != nil && first == nil {
		first = err
	}
	return first
}

// fsyncPeers asks every peer that received async uploads since its last
// FSYNC to make them durable. A peer the tracker no longer lists that
// fails it keeps them for its return: its failure is logged, not returned,
// so that a peer gone for days does not fail every fsync of this mount
// (as it did not when such a peer was forgotten at once).
func (s *Store) fsyncPeers(ctx context.Context) error {
	s.mu.Lock()
	peers := make([]*peerConn, 0, len(s.peers))
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	unlisted := maps.Clone(s.unlisted)
	s.mu.Unlock()
	var first error
	for _, p := range peers {
		// Held until this FSYNC is answered: a concurrent caller that
		// finds nothing pending must not return before it.
		p.unsynced.fsyncMu.Lock()
		// (What take leaves out, this FSYNC covers; if it fails, the
		// next syncs everything.)
		need, names, _ := p.unsynced.take()
		if !need {
			p.unsynced.fsyncMu.Unlock()
			continue
		}
		list := make([]string, 0, len(names))
		for n := range names {
			list = append(list, n)
		}
		slices.Sort(list)
		err := s.poolDo(ctx, p, "FSYNC", func(c *peer.Conn) error {
			if names == nil {
				return c.Fsync(ctx)
			}
			// Just the files uploaded (and their directories): the
			// peer's filesystem may hold much else that is not ours.
			return c.FsyncFiles(ctx, list)
		})
		if err != nil {
			p.unsynced.markAll() // everything, next time
			if _, gone := unlisted[p.name]; gone {
				s.log.Warn().Err(err).Str("peer", p.name).Msg("cannot FSYNC a peer the tracker no longer lists; it is asked again when it is back")
			} else if first == nil {
				first = netErr(p, err)
			}
		}
		p.unsynced.landed()
		p.unsynced.fsyncMu.Unlock()
	}
	return first
}

// putSynced sends PUT m, with src's bytes, and an FSYNC behind it in the
// same round trip (peer.Conn.PutFsync), naming m's file and whatever p
// stored from here before without making it durable: a writer's fsync
// costs one round trip to the peer, and its turn finds nothing left for
// FSYNC. The file's own mark, which putContent makes once the PUT is
// stored, is not needed then (unsynced.cover). What the FSYNC did not make
// durable, because it failed or could not be sent, is left for the next.
// While another FSYNC to p is on its way (a concurrent fsync), that one
// has what was pending: this one names m's file alone, and waits for no
// other.
func (s *Store) putSynced(ctx context.Context, c *peer.Conn, p *peerConn, m peerproto.Put, src io.Reader) (peerproto.PutDone, error) {
	u := &p.unsynced
	var need, took bool
	var names map[string]bool
	var left []string // covered by m.Name's directory
	if u.fsyncMu.TryLock() {
		// Held until the FSYNC is answered, as in fsyncPeers.
		defer u.fsyncMu.Unlock()
		need, names, left = u.take(m.Name)
		took = true
	}
	var list []string // nil: everything
	if !need || names != nil {
		list = slices.Sorted(maps.Keys(names))
		list = append(list, m.Name)
	}
	pd, synced, err := c.PutFsync(ctx, m, src, list)
	if took {
		// After the marks below: a rename meanwhile sees the name
		// taken, or marked again.
		defer u.landed()
	}
	switch {
	case !synced && need && names == nil:
		u.markAll()
	case !synced:
		for n := range names {
			u.mark(n)
		}
		for _, n := range left {
			// Left out for m.Name, which a failed PUT may not have
			// stored (and so not marked).
			u.markEntry(n)
		}
	case err == nil:
		u.cover(m.Name)
	}
	return pd, err
}

// maxFsyncNames is how many uploads an FSYNC names at most; past it, the
// peer syncs its whole filesystem, which is then cheaper.
const maxFsyncNames = 64

// unsynced is what a peer stored for this mount without making it
// durable yet (async PUTs, namespace changes): FSYNC names it. Its zero
// value is ready.
type unsynced struct {
	// fsyncMu is held from take to the FSYNC's answer (fsyncPeers), so
	// that a concurrent caller that finds nothing to do does not return
	// before it; it is never taken with mu held.
	fsyncMu sync.Mutex

	mu sync.Mutex // protects the fields below
	// need is set by a change and cleared by take; names names the
	// changed paths for FSYNC <name>..., unless there were too many
	// (maxFsyncNames) and it is nil: then FSYNC syncs everything.
	need  bool
	names map[string]bool
	// entryOnly holds the names in names marked for their directory
	// entry alone (markEntry: a file renamed within its directory, whose
	// content was durable). The peer syncs the directory of every name
	// FSYNC gives, so take leaves such a name out when another name of
	// the same directory goes: an editor's save names its temporary
	// file, whose directory fsync makes the last save's rename durable,
	// and the peer does not fsync the document again.
	entryOnly map[string]bool
	// flying holds the names the FSYNC on its way took (take), until it
	// is answered (landed): a file renamed from one of them may not be
	// durable yet, so its new name is marked for its content.
	flying map[string]bool
	// covered holds the files an FSYNC made durable with their PUT
	// (putSynced): the next mark of each is not needed, and is skipped.
	// The upload that covered a file drops its cover when it ends
	// (uncover), marked or not.
	covered map[string]bool
}

// mark records that path was changed on the peer and is durable only at
// the next FSYNC.
func (u *unsynced) mark(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.covered[path] {
		delete(u.covered, path)
		return
	}
	delete(u.entryOnly, path)
	u.addLocked(path)
}

// markEntry records that path's directory entry changed on the peer
// (path now names a file whose content was durable already), durable at
// the next FSYNC: naming path has the peer sync its directory, which
// naming another entry of that directory does as well (take).
func (u *unsynced) markEntry(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.names[path] {
		return // marked already, maybe for its content
	}
	if u.addLocked(path) {
		if u.entryOnly == nil {
			u.entryOnly = map[string]bool{}
		}
		u.entryOnly[path] = true
	}
}

// addLocked adds path to what the next FSYNC covers, and reports whether
// it went into names (and not into "everything"). Caller holds u.mu.
func (u *unsynced) addLocked(path string) bool {
	switch {
	case !u.need:
		u.need, u.names = true, map[string]bool{path: true}
	case u.names != nil:
		u.names[path] = true
		if len(u.names) > maxFsyncNames {
			u.names, u.entryOnly = nil, nil
		}
	}
	return u.names != nil
}

// cover records that path is durable as stored by the PUT just answered:
// the mark that follows for it is skipped.
func (u *unsynced) cover(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.covered == nil {
		u.covered = map[string]bool{}
	}
	u.covered[path] = true
}

// uncover drops what is left of path's cover: a later change of path is
// durable only at the next FSYNC.
func (u *unsynced) uncover(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.covered, path)
}

// markAll records that the next FSYNC must sync everything.
func (u *unsynced) markAll() {
	u.mu.Lock()
	u.need, u.names = true, nil
	u.mu.Unlock()
}

// pending reports whether the next FSYNC has anything to cover.
func (u *unsynced) pending() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.need
}

// take returns what the next FSYNC must cover and forgets it. The FSYNC
// names also, besides names (nil: everything); a name marked for its
// directory entry alone is left out of names when another name the FSYNC
// gives is in the same directory, or is that directory: left lists them,
// for the caller to mark again (markEntry) if that FSYNC is not carried
// out.
func (u *unsynced) take(also ...string) (need bool, names map[string]bool, left []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	need, names, entryOnly := u.need, u.names, u.entryOnly
	u.need, u.names, u.entryOnly = false, nil, nil
	u.flying = maps.Clone(names)
	for _, n := range also {
		if u.flying != nil {
			u.flying[n] = true
		}
	}
	if names == nil || len(entryOnly) == 0 {
		return need, names, nil
	}
	// The directories the peer syncs anyway: the parents of the names
	// given for their content, and those names themselves (a directory
	// named is synced; a file has no entries).
	synced := map[string]bool{}
	for n := range names {
		if !entryOnly[n] {
			synced[n], synced[parent(n)] = true, true
		}
	}
	for _, n := range also {
		synced[n], synced[parent(n)] = true, true
	}
	// Sorted: a directory comes before the names under it, and which
	// one of several entries of a directory no other name covers stays
	// named does not depend on map order.
	for _, n := range slices.Sorted(maps.Keys(entryOnly)) {
		if d := parent(n); synced[d] {
			delete(names, n)
			left = append(left, n)
		} else {
			synced[n], synced[d] = true, true
		}
	}
	return need, names, left
}

// landed records that the FSYNC that took names (take) is answered; the
// caller marks again what it did not make durable.
func (u *unsynced) landed() {
	u.mu.Lock()
	u.flying = nil
	u.mu.Unlock()
}

// renamed moves the names at or under from, which a RENAME just moved to
// to, to their new names: the old ones may name another file by the time
// FSYNC goes out. A mark for content moved onto a name marked for its
// entry only makes it a mark for content. It reports whether the FSYNC
// on its way took a name at or under from: if that FSYNC fails, the
// name marked again is the old one, which may name another file by then.
func (u *unsynced) renamed(from, to string) (flying bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var moved []string
	for n := range u.names {
		if under(n, from) {
			moved = append(moved, n)
		}
	}
	entry := map[string]bool{}
	for _, n := range moved {
		entry[n] = u.entryOnly[n]
		delete(u.names, n)
		delete(u.entryOnly, n)
	}
	for _, n := range moved {
		nn := to + n[len(from):]
		if entry[n] && (!u.names[nn] || u.entryOnly[nn]) {
			u.names[nn] = true
			if u.entryOnly == nil {
				u.entryOnly = map[string]bool{}
			}
			u.entryOnly[nn] = true
			continue
		}
		u.names[nn] = true
		delete(u.entryOnly, nn)
	}
	for n := range u.flying {
		if under(n, from) {
			return true
		}
	}
	return false
}

// moved records a rename carried out on the peer, durable at the next
// FSYNC: the marks under from follow it to to, and to is marked, and with
// it its directory (the peer syncs the directory of every name FSYNC
// gives). The directory from left is marked too if it is another one;
// naming the same directory again would only have the peer sync that
// directory's own parent as well (an editor's save, a rename within one
// directory, cost an fsync more). Within one directory, a name whose
// content was durable (no mark followed it, and no FSYNC that may yet
// fail took it) is marked for its entry alone (markEntry): the next
// FSYNC names it only if it names nothing else in that directory.
// (Across directories to is marked whole: a directory moved there has
// its ".." entry changed too.)
func (u *unsynced) moved(from, to string) {
	flying := u.renamed(from, to)
	if parent(from) == parent(to) && !flying {
		u.markEntry(to)
		return
	}
	u.mark(to)
	if parent(from) != parent(to) {
		u.mark(parent(from))
	}
}

// PendingInfo reports the local changes not yet stored on a peer.
func (s *Store) PendingInfo() (files int, bytes int64) {
	for _, f := range s.states() {
		if f.pending() {
			files++
			bytes += f.size()
		}
	}
	return files, bytes
}

// states returns every local copy in the upload queue.
func (s *Store) states() []*fileState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*fileState, 0, len(s.files))
	for _, f := range s.files {
		out = append(out, f)
	}
	return out
}

// retryBackoffMax bounds the wait between retries of one upload.
const retryBackoffMax = time.Minute

// retryBackoff is how long the retry loop waits after the n-th failure in
// a row of one upload: interval, doubling from the second failure on, up
// to retryBackoffMax (but never less than interval).
func retryBackoff(interval time.Duration, n int) time.Duration {
	d := interval
	for i := 1; i < n && d < retryBackoffMax; i++ {
		d *= 2
	}
	return max(interval, min(d, retryBackoffMax))
}

// retryDue returns the copies the retry loop uploads now: closed by every
// handle, pending, for a peer known (or that left for good: its upload
// sets the copy aside without a request), and not backing off.
func (s *Store) retryDue(now time.Time) []*fileState {
	s.mu.Lock()
	var candidates []*fileState
	for key, f := range s.files {
		if _, known := s.peers[key.Peer]; known || s.departed[key.Peer] {
			candidates = append(candidates, f)
		}
	}
	s.mu.Unlock()
	var out []*fileState
	for _, f := range candidates {
		f.mu.Lock()
		due := f.refs <= 0 && !now.Before(f.retryAt)
		f.mu.Unlock()
		if due && f.pending() {
			out = append(out, f)
		}
	}
	return out
}

// retryLoop uploads, every RetryInterval, the changes whose upload failed
// or that an earlier run left behind, once their peer is reachable.
func (s *Store) retryLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.opts.RetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.forgetSilent()
		for _, f := range s.retryDue(time.Now()) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			go func() { // stop waiting when the Store closes
				select {
				case <-s.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := s.upload(ctx, f, false)
			cancel()
			switch {
			case err == nil:
				key := f.currentKey()
				s.log.Info().Str("remote_peer", key.Peer).Str("path", key.Path).Msg("delivered a pending upload")
			case !errors.Is(err, errSetAside):
				// Not final: try again later, less often each time.
				f.mu.Lock()
				f.failures++
				f.retryAt = time.Now().Add(retryBackoff(s.opts.RetryInterval, f.failures))
				f.mu.Unlock()
			}
		}
	}
}
