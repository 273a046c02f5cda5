package remote

// Presence: which peers this mount shows as folders, and for how long.
//
// A peer this mount has seen listed by the tracker stays a folder until it
// leaves on purpose (the tracker reports LEFT <name> quit), an operator
// forgets it (Forget: peerfs forget NAME), or it has been silent, neither
// listed nor answering, for Options.ForgetAfter. A peer the tracker drops
// (idle timeout, partition, SIGSTOP, a crash, SIGTERM) or stops listing
// because the tracker restarted is only down: its folder stays, requests
// still go to its last address (so it keeps working while the tracker
// forgets it but the peer is fine), and fail with EIO while it does not
// answer. Nothing here ever turns into "no such file": to rsync --delete,
// a backup or a sync client a vanished folder looks like every file in it
// was deleted.
//
// The set is kept in Options.PeersFile, so that a mount restarted while the
// tracker is down still shows the folders.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// DefaultForgetAfter is how long a peer that is neither listed by the
// tracker nor answering stays a folder, when Options.ForgetAfter is 0.
const DefaultForgetAfter = 7 * 24 * time.Hour

// errNoPeer is returned for a peer name that is not (or no longer) known:
// it left on purpose or was forgotten. It is EIO, not ENOENT: a stale
// descriptor in its folder must not read as a deleted file.
var errNoPeer = fmt.Errorf("remote: no such peer (it left, or was forgotten): %w", fusefs.ErrUnavailable)

// Errors of Forget.
var (
	ErrUnknownPeer = errors.New("remote: no such peer")
	ErrPeerListed  = errors.New("remote: the tracker lists this peer")
	ErrPeerPending = errors.New("remote: files written here wait for upload to this peer")
)

// newPeerConn returns the connection state of a peer at addr.
func (s *Store) newPeerConn(name, addr string) *peerConn {
	p := &peerConn{
		name: name, addr: addr,
		link:  newLink(name, addr, s.opts.Client, s.opts.Observer, s.opts.Now),
		attrs: newAttrCache(s.opts.AttrTTL, s.opts.Now),
	}
	p.attrs.pending = func(path string, in bool) bool { return s.ns.names(name, path, in) }
	if s.opts.WatchTTL > 0 && !s.closed {
		// The peer watches what this mount lists (watch.go), for as
		// long as the link lasts.
		p.attrs.wake, p.attrs.watchTTL = make(chan struct{}, 1), s.opts.WatchTTL
		s.wg.Add(1)
		go s.watchLoop(p, p.link.stopped)
	}
	return p
}

// SetPeers takes the peer list of an UPDATE; this peer itself is left
// out. New peers appear; a peer at a new address is followed there; a
// peer missing from the list stays, as unlisted (down), until it comes
// back, leaves on purpose (PeerLeft) or is forgotten.
func (s *Store) SetPeers(list []peerproto.PeerAddr) {
	now := s.now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	seen := make(map[string]bool, len(list))
	added, changed := false, false
	var gone []*peerConn
	var back, unlisted []string
	for _, pa := range list {
		if pa.Name == s.opts.Self || !peerproto.ValidPeerName(pa.Name) {
			continue
		}
		if pa.Name == ReservedName {
			s.log.Warn().Str("addr", pa.Addr).Msg("ignoring a peer named " + ReservedName + ": the name is reserved for the control folder")
			continue
		}
		seen[pa.Name] = true
		if _, was := s.unlisted[pa.Name]; was {
			delete(s.unlisted, pa.Name)
			back = append(back, pa.Name)
			changed = true
		}
		old := s.peers[pa.Name]
		if old != nil && old.addr == pa.Addr {
			continue
		}
		if old != nil {
			gone = append(gone, old)
		} else {
			added = true
		}
		np := s.newPeerConn(pa.Name, pa.Addr)
		if old != nil {
			// What it stored from here and has not made durable may be
			// in its page cache yet (a restart on another port), and
			// an upload to the old address may still mark the old
			// connection: the next FSYNC syncs everything there.
			np.unsynced.markAll()
		}
		s.peers[pa.Name] = np
		delete(s.departed, pa.Name) // back (its identity decides what it gets)
		changed = true
	}
	for name, p := range s.peers {
		if _, already := s.unlisted[name]; !seen[name] && !already {
			s.unlisted[name] = now
			unlisted = append(unlisted, name)
			changed = true
			// What was cached of it is asked again: it may be gone.
			p.attrs.clear()
		}
	}
	s.mu.Unlock()
	for _, p := range gone {
		p.link.close()
		s.log.Info().Str("peer", p.name).Str("old_addr", p.addr).Msg("peer moved to a new address; its folder follows")
		s.notify(p.name, "") // the new address may serve other content
	}
	for _, name := range back {
		s.log.Info().Str("peer", name).Msg("peer listed by the tracker again")
	}
	for _, name := range unlisted {
		s.log.Warn().Str("peer", name).Msg("the tracker no longer lists this peer; its folder stays (EIO while it does not answer) until it returns, leaves on purpose or is forgotten")
		s.notify(name, "")
	}
	if changed {
		s.savePeers()
	}
	if added {
		s.log.Info().Strs("peers", s.Peers()).Msg("peer set changed")
		s.notify("", "")
	}
	s.resumeBehind() // removals waiting for a peer that is back
}

// PeerLeft implements tracker.LeftHandler: a peer that quit on purpose is
// forgotten (its folder goes); one that was dropped is only down (the
// UPDATE that follows no longer lists it: SetPeers).
func (s *Store) PeerLeft(name string, quit bool) {
	if !quit {
		s.log.Warn().Str("peer", name).Msg("the tracker dropped this peer (it went silent or its connection closed); its folder stays")
		return
	}
	if s.remove(name) {
		s.log.Info().Str("peer", name).Msg("peer left on purpose (QUIT); its folder is gone")
	}
}

// Forget removes a peer the tracker does not list now (an operator's
// peerfs forget): its folder goes. It refuses a listed peer
// (ErrPeerListed: it would come back at the next UPDATE) and, unless
// force is set, one with files written here and not yet uploaded to it
// (ErrPeerPending: they stay in the cache either way, but would no longer
// show).
func (s *Store) Forget(name string, force bool) error {
	s.mu.Lock()
	_, known := s.peers[name]
	_, unlisted := s.unlisted[name]
	pending := s.pendingForLocked(name)
	s.mu.Unlock()
	switch {
	case !known:
		return fmt.Errorf("%w %q", ErrUnknownPeer, name)
	case !unlisted:
		return fmt.Errorf("%w %q: it is registered now; it can be forgotten once it is gone", ErrPeerListed, name)
	case pending > 0 && !force:
		return fmt.Errorf("%w %q (%d files): they would no longer show; force to forget it anyway (they stay in the cache)", ErrPeerPending, name, pending)
	}
	if s.remove(name) {
		s.log.Info().Str("peer", name).Int("pending", pending).Msg("peer forgotten by the operator; its folder is gone")
	}
	return nil
}

// pendingForLocked counts the files with changes for peer name not yet
// uploaded, and the removals not yet carried out (behind.go). Called
// with s.mu held.
func (s *Store) pendingForLocked(name string) int {
	n := s.ns.pendingFor(name)
	for key, f := range s.files {
		if key.Peer == name && !f.isUnlinked() && f.pending() {
			n++
		}
	}
	return n
}

// remove forgets peer name and reports whether it was known.
func (s *Store) remove(name string) bool {
	s.mu.Lock()
	p, known := s.peers[name]
	delete(s.peers, name)
	delete(s.unlisted, name)
	if known {
		s.departed[name] = true
	}
	s.mu.Unlock()
	if !known {
		return false
	}
	p.link.close()
	s.savePeers()
	s.notify("", "")
	return true
}

// forgetSilent forgets the peers that have been neither listed nor
// answering for ForgetAfter, unless files wait for upload to them.
func (s *Store) forgetSilent() {
	now := s.now()
	s.mu.Lock()
	unlisted := maps.Clone(s.unlisted)
	s.mu.Unlock()
	for name, since := range unlisted {
		if now.Sub(later(since, s.lastAnswer(name))) < s.opts.ForgetAfter {
			continue
		}
		s.mu.Lock()
		n := s.pendingForLocked(name)
		s.mu.Unlock()
		if n > 0 {
			s.log.Debug().Str("peer", name).Int("pending", n).Msg("silent past --forget-after, kept: files wait for upload to it")
			continue
		}
		if s.remove(name) {
			s.log.Warn().Str("peer", name).Dur("forget_after", s.opts.ForgetAfter).Msg("peer silent for too long (neither listed by the tracker nor answering); forgotten, its folder is gone")
		}
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// lastAnswer returns when peer name last answered a request, or the zero
// time.
func (s *Store) lastAnswer(name string) time.Time {
	p, err := s.peer(name)
	if err != nil {
		return time.Time{}
	}
	return p.link.lastAnswer()
}

// follow points h at its peer's current connection, after the peer came
// back at another address. Called with h.mu held.
func (s *Store) follow(h *handle) {
	p, err := s.peer(h.key.Peer)
	if err != nil || p == h.p {
		return
	}
	h.stopStream()
	h.ra = h.ra[:0]
	h.p = p
}

// peersFile is the persisted peer set (Options.PeersFile).
type peersFile struct {
	Version int         `json:"version"`
	Scope   string      `json:"scope"`
	Peers   []savedPeer `json:"peers"`
}

type savedPeer struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// LastSeen is when it was last listed by the tracker or answered.
	LastSeen time.Time `json:"last_seen"`
}

const peersFileVersion = 1

// loadPeers restores the peer set of an earlier run, every peer unlisted
// (down) since it was last seen, until an UPDATE lists it. Peers silent
// past ForgetAfter are left out, unless files wait for upload to them.
func (s *Store) loadPeers() error {
	if s.opts.PeersFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.opts.PeersFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remote: peer list: %w", err)
	}
	var pf peersFile
	if err := json.Unmarshal(b, &pf); err != nil || pf.Version != peersFileVersion {
		s.log.Warn().Err(err).Str("file", s.opts.PeersFile).Msg("ignoring an unreadable peer list of an earlier run")
		return nil
	}
	if pf.Scope != s.opts.Cluster {
		s.log.Info().Str("file", s.opts.PeersFile).Msg("the peer list of an earlier run is of another cluster; not restored")
		return nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range pf.Peers {
		if sp.Name == s.opts.Self || !peerproto.ValidPeerName(sp.Name) || sp.Name == ReservedName || sp.Addr == "" {
			continue
		}
		if now.Sub(sp.LastSeen) >= s.opts.ForgetAfter && s.pendingForLocked(sp.Name) == 0 {
			continue
		}
		s.peers[sp.Name] = s.newPeerConn(sp.Name, sp.Addr)
		s.unlisted[sp.Name] = sp.LastSeen
	}
	if len(s.peers) > 0 {
		s.log.Info().Int("peers", len(s.peers)).Msg("restored the peers of the last run; down until the tracker lists them or they answer")
	}
	return nil
}

// savePeers writes the peer set to Options.PeersFile (atomically: a
// temporary file renamed over it). A failure is logged: the folders are
// still right for this run.
func (s *Store) savePeers() {
	if s.opts.PeersFile == "" {
		return
	}
	now := s.now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return // the set is empty now; the file keeps the last one
	}
	pf := peersFile{Version: peersFileVersion, Scope: s.opts.Cluster, Peers: make([]savedPeer, 0, len(s.peers))}
	type entry struct {
		name, addr string
		since      time.Time
		listed     bool
	}
	entries := make([]entry, 0, len(s.peers))
	for name, p := range s.peers {
		since, unlisted := s.unlisted[name]
		entries = append(entries, entry{name, p.addr, since, !unlisted})
	}
	s.mu.Unlock()
	for _, e := range entries {
		last := now
		if !e.listed {
			last = later(e.since, s.lastAnswer(e.name))
		}
		pf.Peers = append(pf.Peers, savedPeer{Name: e.name, Addr: e.addr, LastSeen: last.UTC()})
	}
	slices.SortFunc(pf.Peers, func(a, b savedPeer) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if err := writeFileAtomic(s.opts.PeersFile, pf); err != nil {
		s.log.Warn().Err(err).Str("file", s.opts.PeersFile).Msg("cannot save the peer list; a restart may not show the folders of peers that are down")
	}
}

// writeFileAtomic writes v as JSON to path through a temporary file in
// the same directory, fsynced and renamed into place.
func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, nothing to remove
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
