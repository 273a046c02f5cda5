package remote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// Syncer runs this peer's part of a SYNC round; *tracker.Client is one.
type Syncer interface {
	// Sync waits for a turn that began after the call and returns the
	// error of the work done in it (see Store.FlushAll).
	Sync(ctx context.Context) error
	// State reports the round as this peer sees it.
	State() tracker.SyncState
	// Changed returns a channel closed at the next change of State.
	Changed() <-chan struct{}
}

// Options configures a Store. Zero values take the defaults noted.
type Options struct {
	Self string // this peer's own name, left out of Peers
	// Cluster is the cluster's identity (derived from its secret): with
	// each peer's identity, it binds what this mount writes (identity.go).
	Cluster   string
	Client    peer.ClientOptions // timeouts for talking to peers
	Cache     *cache.Cache       // required: local copies of files
	AttrTTL   time.Duration      // how long attributes and listings are trusted (default 1s)
	WholeFile int64              // files up to this size are fetched whole into the cache on first read (default 4 MiB)
	// HoldTimeout bounds how long an upload waits while another peer holds
	// the write token (default 30s); after it the upload goes ahead.
	HoldTimeout time.Duration
	// RetryInterval is how often dirty copies whose upload failed are
	// retried (default 5s).
	RetryInterval time.Duration
	// Observer, if set, receives each request's outcome and the bytes
	// moved (status.go).
	Observer Observer
	Logger   zerolog.Logger

	// ForgetAfter is how long a peer that is neither listed by the
	// tracker nor answering stays a folder (default DefaultForgetAfter);
	// see presence.go.
	ForgetAfter time.Duration
	// PeersFile, if set, keeps the set of peers across restarts, so that
	// the folders of peers that are down show after a restart too. It is
	// tagged with Cluster: a list written in another cluster is not
	// restored.
	PeersFile string
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

// Store implements fusefs.Store over the peers of the last UPDATE.
//
// Lock order: Store.mu before peerConn.mu before fileState.mu is never
// taken the other way; no lock is held across network I/O except
// fileState.up, which serialises uploads of one file.
type Store struct {
	opts  Options
	log   zerolog.Logger
	cache *cache.Cache

	mu       sync.Mutex           // protects the fields below
	peers    map[string]*peerConn // every peer shown as a folder, listed or not (presence.go)
	unlisted map[string]time.Time // peers the tracker does not list now, since when
	departed map[string]bool      // peers gone for good in this run (quit, forgotten): their pending copies are set aside
	watchers []func(peer, dir string)
	files    map[cache.Key]*fileState // local copies being written or not yet uploaded
	handles  map[uint64]*handle
	nextFH   uint64
	syncer   Syncer
	closed   bool

	health health // peers' reachability and stored files, for reports (status.go)

	// wrote is set before every request that changes a peer's export
	// and cleared by TakeWrote, which reports it with SYNC FIN.
	wrote atomic.Bool

	stop chan struct{} // closed by Close: stops the retry loop
	wg   sync.WaitGroup

	saveMu sync.Mutex // serialises writes of Options.PeersFile
}

// New returns a Store and starts its upload retry loop. Dirty copies left
// in the cache by an earlier run are picked up and uploaded once their
// peer appears.
func New(opts Options) (*Store, error) {
	if opts.Cache == nil {
		return nil, errors.New("remote: Options.Cache is required")
	}
	if opts.AttrTTL <= 0 {
		opts.AttrTTL = time.Second
	}
	if opts.WholeFile <= 0 {
		opts.WholeFile = 4 << 20
	}
	if opts.HoldTimeout <= 0 {
		opts.HoldTimeout = 30 * time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 5 * time.Second
	}
	// Versions tell contents apart where mtimes cannot (coarse
	// timestamps): conditional uploads and cached copies depend on them.
	opts.Client.Attrs = true
	if opts.ForgetAfter <= 0 {
		opts.ForgetAfter = DefaultForgetAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		opts:     opts,
		log:      opts.Logger.With().Str("component", "remote").Logger(),
		cache:    opts.Cache,
		peers:    make(map[string]*peerConn),
		unlisted: make(map[string]time.Time),
		departed: make(map[string]bool),
		files:    make(map[cache.Key]*fileState),
		handles:  make(map[uint64]*handle),
		stop:     make(chan struct{}),
	}
	// A predecessor may have written before it died: the first turn
	// reports it (TakeWrote).
	s.wrote.Store(true)
	for _, key := range s.cache.Dirty() {
		if key.Peer == unsentPeer {
			continue // set aside: only on request (unsent.go)
		}
		ch, _, err := s.cache.Acquire(key, -1, "", false)
		if err != nil || ch == nil {
			s.log.Error().Err(err).Str("peer", key.Peer).Str("path", key.Path).Msg("cannot reopen dirty copy")
			continue
		}
		// The upload is conditional on the version the copy was started
		// from, as before the restart: another writer's file that
		// appeared or changed meanwhile is not replaced (a conflict
		// copy). Only to the peer it was written for: records from
		// before owners were kept go to none (identity.go).
		owner, base := ownedBase(ch.Meta().Base)
		f := &fileState{key: key, mtime: time.Now(), mode: 0o644, base: base, owner: owner,
			sent: parseDigest(ch.Meta().Sent)}
		// The mode is recorded with the copy when the file was created
		// or chmodded here; 0 means it was never set: keep the peer's.
		if m := fs.FileMode(ch.Meta().Mode).Perm(); m != 0 {
			f.mode, f.setMode = m, true
		}
		f.remote.Mode = uint32(f.mode)
		f.ch.Store(ch)
		s.files[key] = f
		s.log.Info().Str("peer", key.Peer).Str("path", key.Path).Int64("size", ch.Size()).Msg("found unuploaded file from an earlier run")
	}
	if err := s.loadPeers(); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.retryLoop()
	return s, nil
}

// now reads the Store's clock.
func (s *Store) now() time.Time { return s.opts.Now() }

// SetSyncer connects the Store to the tracker client that runs SYNC
// rounds. Without one, Sync uploads directly.
func (s *Store) SetSyncer(sy Syncer) {
	s.mu.Lock()
	s.syncer = sy
	s.mu.Unlock()
}

// Close stops background work, uploads nothing more, and closes every
// connection. Dirty copies stay in the cache for the next run.
func (s *Store) Close() error {
	// The last answers of peers that are down count towards their
	// forgetting in the next run.
	s.savePeers()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	peers := s.peers
	s.peers = map[string]*peerConn{}
	files := s.files
	s.files = map[cache.Key]*fileState{}
	handles := make([]*handle, 0, len(s.handles))
	for _, h := range s.handles {
		handles = append(handles, h)
	}
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	// Streams of handles still open stop: their chunks (and the
	// process-wide read-ahead tokens they hold) go back.
	for _, h := range handles {
		h.mu.Lock()
		h.stopStream()
		h.mu.Unlock()
	}
	for _, p := range peers {
		p.pool.Close()
	}
	for _, f := range files {
		f.up.Lock()
		f.releaseCopy()
		f.up.Unlock()
	}
	return nil
}

// peerConn is one remote peer: its connection pool and attribute caches.
type peerConn struct {
	name, addr string
	pool       *peer.Pool

	mu      sync.Mutex // protects the fields below
	dirs    map[string]*dirCache
	stats   map[string]statCache
	listing map[string]*listCall // directories with a LIST in flight
	// downUntil: after a network failure, requests fail at once until
	// then instead of each waiting out its own timeout.
	downUntil time.Time
	// unsynced is set by an async PUT and cleared by a successful FSYNC:
	// the peer holds files of ours that may not be on its disk yet;
	// unsyncedNames names them for FSYNC <name>..., unless there were too
	// many (maxFsyncNames) and it is nil: then FSYNC syncs everything.
	unsynced      bool
	unsyncedNames map[string]bool
	// fsyncMu is held from taking unsynced to the FSYNC's answer
	// (fsyncPeers); it is never taken with mu held.
	fsyncMu sync.Mutex
	// misses counts, per directory, the STATs recently sent for names in
	// it: a burst of them is answered with one LIST instead (see stat).
	misses map[string]missRun
	// root is the export root's last known attributes, kept through
	// invalidations: the peer's folder stays reachable while the peer is
	// not (Stat), so local files pending upload can still be opened.
	root *peerproto.Entry
	// id is the identity of the peer's export, as its connections last
	// reported it (identity.go); "" until then, or from an older peer.
	id string
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
}

type dirCache struct {
	at      time.Time
	entries map[string]peerproto.Entry
}

type statCache struct {
	at     time.Time
	e      peerproto.Entry
	exists bool
}

// Peers implements fusefs.Store.
func (s *Store) Peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.peers))
	for n := range s.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// PeerAddr returns the address of peer name, if it is known.
func (s *Store) PeerAddr(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[name]
	if !ok {
		return "", false
	}
	return p.addr, true
}

// Watch implements fusefs.Store.
func (s *Store) Watch(fn func(peer, dir string)) {
	s.mu.Lock()
	s.watchers = append(s.watchers, fn)
	s.mu.Unlock()
}

func (s *Store) notify(peer, dir string) {
	s.mu.Lock()
	ws := slices.Clone(s.watchers)
	s.mu.Unlock()
	for _, fn := range ws {
		fn(peer, dir)
	}
}

// InvalidateAll forgets every cached attribute and listing and tells the
// kernel to do the same: another peer may have written anything.
func (s *Store) InvalidateAll() {
	s.mu.Lock()
	peers := make([]*peerConn, 0, len(s.peers))
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	s.mu.Unlock()
	for _, p := range peers {
		p.mu.Lock()
		p.dirs = map[string]*dirCache{}
		p.stats = map[string]statCache{}
		p.mu.Unlock()
		s.notify(p.name, "")
	}
}

func (s *Store) peer(name string) (*peerConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[name]
	if !ok {
		return nil, errNoPeer
	}
	return p, nil
}

// netErr turns a failure to reach a peer into EIO with context, keeping
// refusals (which carry their own errno) as they are.
func netErr(p *peerConn, err error) error {
	if err == nil {
		return nil
	}
	var fe *peerproto.FailError
	if errors.As(err, &fe) || errors.Is(err, context.Canceled) {
		return err
	}
	if isLocal(err) {
		// Keep the cause's errno (ENOSPC...); a local copy that ended
		// early is EIO.
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return fmt.Errorf("remote: the local copy of a file of peer %s: %w", p.name, err)
		}
		return fmt.Errorf("remote: the local copy of a file of peer %s: %v: %w", p.name, err, syscall.EIO)
	}
	return fmt.Errorf("remote: peer %s (%s) unreachable: %v: %w", p.name, p.addr, err, syscall.EIO)
}

// ---- attribute cache ----

func (p *peerConn) cached(path string, ttl time.Duration) (peerproto.Entry, bool, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if sc, ok := p.stats[path]; ok && now.Sub(sc.at) < ttl {
		return sc.e, sc.exists, true
	}
	if path != "" {
		if dc, ok := p.dirs[parent(path)]; ok && now.Sub(dc.at) < ttl {
			e, exists := dc.entries[base(path)]
			return e, exists, true
		}
	}
	return peerproto.Entry{}, false, false
}

func (p *peerConn) remember(path string, e peerproto.Entry, exists bool) {
	p.mu.Lock()
	p.setStatLocked(path, statCache{at: time.Now(), e: e, exists: exists})
	if dc, ok := p.dirs[parent(path)]; ok && path != "" {
		if exists {
			e.Name = base(path)
			dc.entries[base(path)] = e
		} else {
			delete(dc.entries, base(path))
		}
	}
	p.mu.Unlock()
}

// forget drops what is known about path (and, for a directory, its listing).
func (p *peerConn) forget(path string) {
	p.mu.Lock()
	delete(p.stats, path)
	delete(p.dirs, path)
	delete(p.dirs, parent(path))
	p.mu.Unlock()
}

// gone records that path (a file, or a directory with everything under
// it) no longer exists on the peer, keeping the parent's listing: a
// program removing a directory's entries one by one (rm -r) then costs no
// re-listing per entry.
func (p *peerConn) gone(path string, isDir bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked(path, isDir)
	p.setStatLocked(path, statCache{at: time.Now(), exists: false})
	if dc, ok := p.dirs[parent(path)]; ok && path != "" {
		delete(dc.entries, base(path))
	}
}

// moved records a successful rename of from to to, keeping both parents'
// listings.
// Attributes carried over are those younger than ttl, and keep their age:
// a rename never makes stale attributes fresh.
func (p *peerConn) moved(from, to string, ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var e peerproto.Entry
	var at time.Time
	known := false
	if dc, ok := p.dirs[parent(from)]; ok {
		e, known = dc.entries[base(from)]
		at = dc.at
		delete(dc.entries, base(from))
	}
	if sc, ok := p.stats[from]; ok && sc.exists && (!known || sc.at.After(at)) {
		e, at, known = sc.e, sc.at, true
	}
	// Only a directory has anything cached under it: a file's rename
	// costs no scan of the caches (rm -r, mv of many files).
	dir := !known || e.IsDir() || now.Sub(at) >= ttl
	p.dropLocked(from, dir)
	p.dropLocked(to, true)
	p.setStatLocked(from, statCache{at: now, exists: false})
	fresh := known && now.Sub(at) < ttl
	if fresh && !e.IsDir() {
		// The file's attributes did not change with its name: the next
		// lookup of the new name (an editor's save loop) needs no STAT.
		e.Name = base(to)
		p.setStatLocked(to, statCache{at: at, e: e, exists: true})
	}
	if dc, ok := p.dirs[parent(to)]; ok {
		if fresh && !dc.at.After(at) { // never fresher than what it says
			e.Name = base(to)
			dc.entries[base(to)] = e
		} else {
			delete(p.dirs, parent(to)) // the new entry's attributes are unknown
		}
	}
}

// dropLocked forgets what is cached about path; for a directory also
// everything under it (a scan of the caches). Called with p.mu held.
func (p *peerConn) dropLocked(path string, isDir bool) {
	if isDir {
		p.dropTreeLocked(path)
		return
	}
	delete(p.stats, path)
	delete(p.dirs, path)
}

// maxStats bounds the attribute cache: past it, expired entries are swept
// (the map would otherwise grow with every name ever looked up).
const maxStats = 50000

// setStatLocked records one attribute-cache entry, sweeping expired ones
// when the cache is large. Called with p.mu held.
func (p *peerConn) setStatLocked(path string, sc statCache) {
	if len(p.stats) >= maxStats {
		for k, v := range p.stats {
			if time.Since(v.at) > rescanWindow {
				delete(p.stats, k)
			}
		}
		if len(p.stats) >= maxStats {
			clear(p.stats)
		}
	}
	p.stats[path] = sc
}

// dropTreeLocked forgets stats and listings at or under path. Called with
// p.mu held.
func (p *peerConn) dropTreeLocked(path string) {
	for k := range p.stats {
		if under(k, path) {
			delete(p.stats, k)
		}
	}
	for k := range p.dirs {
		if under(k, path) {
			delete(p.dirs, k)
		}
	}
}

// forgetTree drops everything at or under path.
func (p *peerConn) forgetTree(path string) {
	p.mu.Lock()
	for k := range p.stats {
		if k == path || len(k) > len(path) && k[:len(path)] == path && k[len(path)] == '/' {
			delete(p.stats, k)
		}
	}
	for k := range p.dirs {
		if k == path || len(k) > len(path) && k[:len(path)] == path && k[len(path)] == '/' {
			delete(p.dirs, k)
		}
	}
	delete(p.dirs, parent(path))
	p.mu.Unlock()
}

// listing returns dir's entries from a listing younger than AttrTTL,
// fetching one with LIST if needed. Concurrent callers for one directory
// share a single LIST. The map must be read under p.mu.
func (s *Store) listing(ctx context.Context, p *peerConn, dir string) (map[string]peerproto.Entry, error) {
	for {
		p.mu.Lock()
		if dc, ok := p.dirs[dir]; ok && time.Since(dc.at) < s.opts.AttrTTL {
			p.mu.Unlock()
			return dc.entries, nil
		}
		if call, busy := p.listing[dir]; busy {
			p.mu.Unlock()
			select {
			case <-call.done:
				if call.err != nil {
					// Share the failure too: retrying at once would
					// make each waiter wait out its own timeout.
					return nil, call.err
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		call := &listCall{done: make(chan struct{})}
		p.listing[dir] = call
		p.mu.Unlock()

		var list []peerproto.Entry
		err := s.poolDo(ctx, p, "LIST", func(c *peer.Conn) error {
			var err error
			list, err = c.List(ctx, dir)
			return err
		})
		entries := make(map[string]peerproto.Entry, len(list))
		for _, e := range list {
			entries[e.Name] = e
		}
		p.mu.Lock()
		delete(p.listing, dir)
		if err == nil {
			p.dirs[dir] = &dirCache{at: time.Now(), entries: entries}
		}
		if err != nil {
			call.err = netErr(p, err)
		}
		p.mu.Unlock()
		close(call.done)
		if err != nil {
			return nil, call.err
		}
		return entries, nil
	}
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
func (p *peerConn) wantList(path string, ttl time.Duration) bool {
	if path == "" {
		return false
	}
	dir := parent(path)
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if dc, ok := p.dirs[dir]; ok {
		if len(dc.entries) > burstMaxEntries {
			return false // listing it again costs more than a STAT
		}
		if now.Sub(dc.at) < rescanWindow {
			return true
		}
	}
	r := p.misses[dir]
	if now.Sub(r.since) > ttl {
		r = missRun{since: now}
	}
	if r.n >= burstStats {
		delete(p.misses, dir)
		return true
	}
	r.n++
	if len(p.misses) >= 1024 {
		clear(p.misses)
	}
	p.misses[dir] = r
	return false
}

// stat returns the remote attributes of path, from cache when fresh.
func (s *Store) stat(ctx context.Context, p *peerConn, path string) (peerproto.Entry, error) {
	if e, exists, ok := p.cached(path, s.opts.AttrTTL); ok {
		if !exists {
			return e, fmt.Errorf("remote: %s:%s: %w", p.name, path, fs.ErrNotExist)
		}
		return e, nil
	}
	if p.wantList(path, s.opts.AttrTTL) {
		if _, err := s.listing(ctx, p, parent(path)); err == nil {
			if e, exists, ok := p.cached(path, s.opts.AttrTTL); ok {
				if !exists {
					return e, fmt.Errorf("remote: %s:%s: %w", p.name, path, fs.ErrNotExist)
				}
				return e, nil
			}
		}
	}
	var e peerproto.Entry
	err := s.poolDo(ctx, p, "STAT", func(c *peer.Conn) error {
		var err error
		e, err = c.Stat(ctx, path)
		return err
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			p.remember(path, e, false)
		}
		return e, netErr(p, err)
	}
	p.remember(path, e, true)
	return e, nil
}

// Stat implements fusefs.Store.
func (s *Store) Stat(ctx context.Context, peerName, path string) (fs.FileInfo, error) {
	if fi := s.localInfo(cache.Key{Peer: peerName, Path: path}); fi != nil {
		return fi, nil
	}
	p, err := s.peer(peerName)
	if err != nil {
		return nil, err
	}
	e, err := s.stat(ctx, p, path)
	if path == "" {
		p.mu.Lock()
		switch {
		case err == nil:
			p.root = &e
		case errors.Is(err, syscall.EIO):
			// Unreachable: the folder itself is still there (the
			// tracker lists the peer); what is in it will say EIO
			// unless it is local.
			e = peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755}
			if p.root != nil {
				e = *p.root
			}
			err = nil
		}
		p.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	return infoOf(base(path), e), nil
}

// List implements fusefs.Store: one LIST round trip, with local files not
// yet uploaded shown as well.
func (s *Store) List(ctx context.Context, peerName, dir string) ([]fs.FileInfo, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return nil, err
	}
	entries, err := s.listing(ctx, p, dir)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	out := make([]fs.FileInfo, 0, len(entries))
	for name, e := range entries {
		out = append(out, infoOf(name, e))
	}
	p.mu.Unlock()
	// Overlay local files: new ones not yet uploaded, and sizes of open ones.
	s.mu.Lock()
	for key, f := range s.files {
		if key.Peer != peerName || parent(key.Path) != dir || f.unlinked {
			continue
		}
		name := base(key.Path)
		fi := f.info(name)
		if i := slices.IndexFunc(out, func(x fs.FileInfo) bool { return x.Name() == name }); i >= 0 {
			out[i] = fi
		} else {
			out = append(out, fi)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b fs.FileInfo) int {
		switch {
		case a.Name() < b.Name():
			return -1
		case a.Name() > b.Name():
			return 1
		}
		return 0
	})
	return out, nil
}

// do runs fn on a connection to peerName and maps the error.
// verb names the request in measurements.
func (s *Store) do(ctx context.Context, verb, peerName string, fn func(p *peerConn, c *peer.Conn) error) (*peerConn, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return nil, err
	}
	err = s.poolDo(ctx, p, verb, func(c *peer.Conn) error { return fn(p, c) })
	return p, netErr(p, err)
}

// Mkdir implements fusefs.Store. A file created here and not yet
// uploaded holds the name (EEXIST), though the peer may not know it yet.
func (s *Store) Mkdir(ctx context.Context, peerName, path string, mode fs.FileMode) (fs.FileInfo, error) {
	if s.localInfo(cache.Key{Peer: peerName, Path: path}) != nil {
		return nil, fmt.Errorf("remote: mkdir %s:%s: a file of that name was created here: %w", peerName, path, fs.ErrExist)
	}
	var e peerproto.Entry
	p, err := s.do(ctx, "MKDIR", peerName, func(p *peerConn, c *peer.Conn) error {
		if err := c.Mkdir(ctx, path, uint32(mode.Perm())); err != nil {
			return err
		}
		var err error
		e, err = c.Stat(ctx, path)
		return err
	})
	if err != nil {
		if p != nil {
			p.forget(path)
		}
		return nil, err
	}
	p.remember(path, e, true)
	p.markUnsynced(path) // the new entry is durable at the next FSYNC
	// Just created, so empty: lookups of new names in it (a program
	// filling it) are answered without a STAT each.
	p.mu.Lock()
	p.dirs[path] = &dirCache{at: time.Now(), entries: map[string]peerproto.Entry{}}
	p.mu.Unlock()
	s.notify(peerName, parent(path))
	return infoOf(base(path), e), nil
}

// Remove implements fusefs.Store. The local copy (if any) is locked
// across the DELETE so that no upload can recreate the file after it, and
// forgotten only once the peer has deleted it.
func (s *Store) Remove(ctx context.Context, peerName, path string) error {
	key := cache.Key{Peer: peerName, Path: path}
	s.mu.Lock()
	f := s.files[key]
	s.mu.Unlock()
	if f != nil {
		f.up.Lock()
		defer f.up.Unlock()
	}
	p, err := s.do(ctx, "DELETE", peerName, func(p *peerConn, c *peer.Conn) error { return c.Delete(ctx, path) })
	if p != nil {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			p.gone(path, false)
		} else {
			p.forget(path)
		}
		if err == nil {
			p.markUnsynced(parent(path))
		}
	}
	if f != nil && errors.Is(err, fs.ErrNotExist) {
		err = nil // created here and never uploaded: removing the local copy is all
	}
	if err != nil {
		return err
	}
	if f != nil {
		s.unlinkLocked(f)
	}
	_ = s.cache.Remove(key)
	return nil
}

// filesIn counts the files inside directory dir (at any depth) that this
// mount has and its peer may not: created or written here and not yet
// uploaded, or open here. The peer cannot see them, so every namespace
// operation on dir must ask here too: a directory holding one is not
// empty.
func (s *Store) filesIn(peerName, dir string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for key, f := range s.files {
		if key.Peer == peerName && key.Path != dir && under(key.Path, dir) && !f.unlinked {
			n++
		}
	}
	return n
}

// notEmpty is the error of removing or replacing directory path, which
// holds n files of this mount the peer does not know yet.
func notEmpty(op, peerName, path string, n int) error {
	return fmt.Errorf("remote: %s %s:%s: %d files created or written here are in it: %w", op, peerName, path, n, syscall.ENOTEMPTY)
}

// Rmdir implements fusefs.Store. A directory holding files this mount
// created or wrote and has not uploaded is not empty (ENOTEMPTY), though
// the peer may not know them yet.
func (s *Store) Rmdir(ctx context.Context, peerName, path string) error {
	if n := s.filesIn(peerName, path); n > 0 {
		return notEmpty("rmdir", peerName, path, n)
	}
	p, err := s.do(ctx, "RMDIR", peerName, func(p *peerConn, c *peer.Conn) error { return c.Rmdir(ctx, path) })
	if p != nil {
		if err == nil {
			p.gone(path, true)
			p.markUnsynced(parent(path))
		} else {
			p.forgetTree(path)
		}
	}
	return err
}

// Rename implements fusefs.Store. Local changes to the source are uploaded
// first, so the rename moves what the writer wrote; the local copies at
// both names are locked across the RENAME so no upload lands in between
// under a stale name.
func (s *Store) Rename(ctx context.Context, peerName, from, to string) error {
	if from != to && !under(to, from) {
		if n := s.filesIn(peerName, to); n > 0 {
			// to is a directory holding files the peer may not know
			// yet: replacing it would drop them. Refused as a local
			// filesystem refuses it.
			fi, err := s.Stat(ctx, peerName, from)
			switch {
			case err != nil:
				return err
			case fi.IsDir():
				return notEmpty("rename over", peerName, to, n)
			default:
				return fmt.Errorf("remote: rename %s:%s over the directory %s: %w", peerName, from, to, syscall.EISDIR)
			}
		}
	}
	if err := s.flushTree(ctx, peerName, from); err != nil {
		return err
	}
	moved := s.statesUnder(peerName, from)
	replaced := s.statesUnder(peerName, to)
	if from == to {
		replaced = nil // rename(x, x) changes nothing
	}
	locked := append(append([]*fileState(nil), moved...), replaced...)
	sort.Slice(locked, func(i, j int) bool { return locked[i].key.Path < locked[j].key.Path })
	locked = slices.Compact(locked)
	lockAll(locked)
	defer unlockAll(locked)

	p, err := s.do(ctx, "RENAME", peerName, func(p *peerConn, c *peer.Conn) error { return c.Rename(ctx, from, to) })
	if p != nil {
		if err == nil {
			p.moved(from, to, s.opts.AttrTTL)
			// Durable at the next FSYNC: the file (or directory) under
			// its new name, and the directory it left; uploads named
			// under the old name are elsewhere now: sync everything.
			p.renamedUnsynced(from, to)
			p.markUnsynced(to)
			p.markUnsynced(parent(from))
		} else {
			p.forgetTree(from)
			p.forgetTree(to)
		}
	}
	if err != nil {
		return err
	}
	// Whatever was at the target is gone: a writer still holding it open
	// must not upload over the renamed file.
	for _, f := range replaced {
		s.unlinkLocked(f)
	}
	s.mu.Lock()
	for _, f := range moved {
		if s.files[f.key] == f {
			delete(s.files, f.key)
		}
		f.key = cache.Key{Peer: peerName, Path: to + f.key.Path[len(from):]}
	}
	for _, f := range moved {
		if !f.unlinked {
			s.files[f.key] = f
		}
	}
	s.mu.Unlock()
	_ = s.cache.Rename(cache.Key{Peer: peerName, Path: from}, cache.Key{Peer: peerName, Path: to})
	return nil
}

// setattr applies s remotely and returns the new attributes.
func (s *Store) setattr(ctx context.Context, peerName string, sa peerproto.Setattr) (fs.FileInfo, error) {
	var e peerproto.Entry
	p, err := s.do(ctx, "SETATTR", peerName, func(p *peerConn, c *peer.Conn) error {
		var err error
		e, err = c.Setattr(ctx, sa)
		return err
	})
	if err != nil {
		if p != nil {
			p.forget(sa.Name)
		}
		return nil, err
	}
	p.remember(sa.Name, e, true)
	p.markUnsynced(sa.Name)
	return infoOf(base(sa.Name), e), nil
}

// Truncate implements fusefs.Store.
func (s *Store) Truncate(ctx context.Context, peerName, path string, size int64) (fs.FileInfo, error) {
	if fi, ok, err := s.truncateLocal(ctx, cache.Key{Peer: peerName, Path: path}, size); ok {
		return fi, err
	}
	return s.setattr(ctx, peerName, peerproto.Setattr{Name: path, HasSize: true, Size: size})
}

// Chmod implements fusefs.Store.
func (s *Store) Chmod(ctx context.Context, peerName, path string, mode fs.FileMode) (fs.FileInfo, error) {
	if fi, ok := s.chmodLocal(cache.Key{Peer: peerName, Path: path}, mode); ok {
		return fi, nil
	}
	return s.setattr(ctx, peerName, peerproto.Setattr{Name: path, HasMode: true, Mode: uint32(mode.Perm())})
}

// Chtimes implements fusefs.Store.
func (s *Store) Chtimes(ctx context.Context, peerName, path string, mtime time.Time) (fs.FileInfo, error) {
	if fi, ok := s.chtimesLocal(cache.Key{Peer: peerName, Path: path}, mtime); ok {
		return fi, nil
	}
	return s.setattr(ctx, peerName, peerproto.Setattr{Name: path, HasMtime: true, Mtime: mtime.UnixNano()})
}

// Statfs implements fusefs.Store.
func (s *Store) Statfs(ctx context.Context, peerName string) (total, free, avail uint64, err error) {
	var st peerproto.StatfsOK
	_, err = s.do(ctx, "STATFS", peerName, func(p *peerConn, c *peer.Conn) error {
		var err error
		st, err = c.Statfs(ctx)
		return err
	})
	return uint64(st.Total), uint64(st.Free), uint64(st.Avail), err
}
