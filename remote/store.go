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
)

// Syncer runs this peer's part of a SYNC round; *peer.TrackerClient is one.
type Syncer interface {
	// Sync waits for a turn that began after the call and returns the
	// error of the work done in it (see Store.FlushAll).
	Sync(ctx context.Context) error
	// State reports the round as this peer sees it.
	State() peer.SyncState
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
		p.link.close()
	}
	for _, f := range files {
		f.up.Lock()
		f.releaseCopy()
		f.up.Unlock()
	}
	return nil
}

// peerConn is one remote peer: the link to it, what is known of its
// files' attributes, and which of this mount's uploads it has not yet made
// durable. A peer found at a new address is a new peerConn (presence.go).
type peerConn struct {
	name, addr string // read-only
	link       *link
	attrs      *attrCache
	unsynced   unsynced
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
		p.attrs.clear()
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

// listing returns dir's entries from a listing younger than AttrTTL,
// fetching one with LIST if needed. Concurrent callers for one directory
// share a single LIST, and its failure too: retrying at once would make
// each waiter wait out its own timeout.
func (s *Store) listing(ctx context.Context, p *peerConn, dir string) ([]peerproto.Entry, error) {
	for {
		if list, ok := p.attrs.listed(dir); ok {
			return list, nil
		}
		call, leader := p.attrs.beginList(dir)
		if !leader {
			select {
			case <-call.done:
				if call.err != nil {
					return nil, call.err
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		var list []peerproto.Entry
		err := s.poolDo(ctx, p, "LIST", func(c *peer.Conn) error {
			var err error
			list, err = c.List(ctx, dir)
			return err
		})
		p.attrs.endList(dir, call, list, netErr(p, err))
		if err != nil {
			return nil, call.err
		}
		return list, nil
	}
}

// stat returns the remote attributes of path, from cache when fresh.
func (s *Store) stat(ctx context.Context, p *peerConn, path string) (peerproto.Entry, error) {
	if e, exists, ok := p.attrs.cached(path); ok {
		if !exists {
			return e, fmt.Errorf("remote: %s:%s: %w", p.name, path, fs.ErrNotExist)
		}
		return e, nil
	}
	if p.attrs.wantList(path) {
		if _, err := s.listing(ctx, p, parent(path)); err == nil {
			if e, exists, ok := p.attrs.cached(path); ok {
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
			p.attrs.remember(path, e, false)
		}
		return e, netErr(p, err)
	}
	p.attrs.remember(path, e, true)
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
		switch {
		case err == nil:
			p.attrs.rootSeen(e)
		case errors.Is(err, syscall.EIO):
			// Unreachable: the folder itself is still there (the
			// tracker lists the peer); what is in it will say EIO
			// unless it is local.
			e, err = p.attrs.lastRoot(), nil
		}
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
	out := make([]fs.FileInfo, 0, len(entries))
	for _, e := range entries {
		out = append(out, infoOf(e.Name, e))
	}
	// Overlay local files: new ones not yet uploaded, and sizes of open ones.
	for _, f := range s.statesIn(peerName, dir) {
		name := base(f.currentKey().Path)
		fi := f.info(name)
		if i := slices.IndexFunc(out, func(x fs.FileInfo) bool { return x.Name() == name }); i >= 0 {
			out[i] = fi
		} else {
			out = append(out, fi)
		}
	}
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
			p.attrs.forget(path)
		}
		return nil, err
	}
	p.attrs.remember(path, e, true)
	p.unsynced.mark(path) // the new entry is durable at the next FSYNC
	// Just created, so empty: lookups of new names in it (a program
	// filling it) are answered without a STAT each.
	p.attrs.emptyDir(path)
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
			p.attrs.gone(path, false)
		} else {
			p.attrs.forget(path)
		}
		if err == nil {
			p.unsynced.mark(parent(path))
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
		if key.Peer == peerName && key.Path != dir && under(key.Path, dir) && !f.isUnlinked() {
			n++
		}
	}
	return n
}

// statesIn returns the local copies directly in directory dir, not
// unlinked.
func (s *Store) statesIn(peerName, dir string) []*fileState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*fileState
	for key, f := range s.files {
		if key.Peer == peerName && parent(key.Path) == dir && !f.isUnlinked() {
			out = append(out, f)
		}
	}
	return out
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
			p.attrs.gone(path, true)
			p.unsynced.mark(parent(path))
		} else {
			p.attrs.forgetTree(path)
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
	// Their up locks in one order, by path (moved and replaced overlap
	// only for rename(x, x), where replaced is empty).
	locked := append(append([]*fileState(nil), moved...), replaced...)
	keys := make([]string, len(locked))
	for i, f := range locked {
		keys[i] = f.currentKey().Path
	}
	sort.Sort(byPath{locked, keys})
	lockAll(locked)
	defer unlockAll(locked)

	p, err := s.do(ctx, "RENAME", peerName, func(p *peerConn, c *peer.Conn) error { return c.Rename(ctx, from, to) })
	if p != nil {
		if err == nil {
			p.attrs.moved(from, to)
			// Durable at the next FSYNC: the file (or directory) under
			// its new name, and the directory it left; uploads named
			// under the old name are elsewhere now: sync everything.
			p.unsynced.renamed(from, to)
			p.unsynced.mark(to)
			p.unsynced.mark(parent(from))
		} else {
			p.attrs.forgetTree(from)
			p.attrs.forgetTree(to)
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
		f.mu.Lock()
		if s.files[f.key] == f {
			delete(s.files, f.key)
		}
		f.key = cache.Key{Peer: peerName, Path: to + f.key.Path[len(from):]}
		f.mu.Unlock()
	}
	for _, f := range moved {
		f.mu.Lock()
		if !f.unlinked {
			s.files[f.key] = f
		}
		f.mu.Unlock()
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
			p.attrs.forget(sa.Name)
		}
		return nil, err
	}
	p.attrs.remember(sa.Name, e, true)
	p.unsynced.mark(sa.Name)
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
