package remote

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
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
	Cluster string
	Client  peer.ClientOptions // timeouts for talking to peers
	Cache   *cache.Cache       // required: local copies of files
	AttrTTL time.Duration      // how long attributes and listings are trusted (default 1s)
	// WatchTTL is how long a listing of a directory the peer watches
	// for this mount (watch.go) is trusted at most (default
	// DefaultWatchTTL); negative: no directory is watched, every
	// listing is trusted for AttrTTL.
	WatchTTL  time.Duration
	WholeFile int64 // files up to this size are fetched whole into the cache on first read (default 4 MiB)
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
	// SyncNamespace makes every unlink, rmdir and rename wait for its
	// peer's answer, as before write-behind (behind.go).
	SyncNamespace bool
}

// Store implements fusefs.Store over the peers of the last UPDATE.
//
// Lock order (see doc.go): fileState.up, fileState.fetch, handle.mu,
// Store.mu, then the leaves (fileState.mu, a part's own mutex: link,
// attrCache, unsynced, health). No lock but fileState.up, fileState.fetch
// and handle.mu is held across network I/O; Store.mu guards only the
// Store's own fields below.
type Store struct {
	opts  Options
	log   zerolog.Logger
	cache *cache.Cache

	mu       sync.Mutex           // protects the fields below
	peers    map[string]*peerConn // every peer shown as a folder, listed or not (presence.go)
	unlisted map[string]time.Time // peers the tracker does not list now, since when
	departed map[string]bool      // peers gone for good in this run (quit, forgotten): their pending copies are set aside
	watchers []func(peer, dir string)
	// entryWatchers are WatchEntries' callbacks, storedWatchers
	// WatchStored's.
	entryWatchers  []func(fusefs.EntryChange)
	storedWatchers []func(peer, path string)
	files          map[cache.Key]*fileState // local copies being written or not yet uploaded
	handles        map[uint64]*handle
	nextFH         uint64
	syncer         Syncer
	closed         bool

	health health // what the reports show beyond the links (status.go)

	// wrote is set before every request that changes a peer's export
	// and cleared by TakeWrote, which reports it with SYNC FIN.
	wrote atomic.Bool
	// wroteLast is what TakeWrote reported last: this mount wrote
	// before its last turn, and is likely to write again (round.go).
	wroteLast atomic.Bool

	stop chan struct{} // closed by Close: stops the retry loop and the streams
	wg   sync.WaitGroup

	// streams counts the uploads under way while files are written
	// (upload_stream.go). Protected by mu.
	streams int

	saveMu sync.Mutex // serialises writes of Options.PeersFile

	chunks *chunkPool // read-ahead budget and buffers (prefetch.go)

	ns *behind // removals acknowledged and not yet carried out (behind.go)
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
	if opts.WatchTTL == 0 {
		opts.WatchTTL = DefaultWatchTTL
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
	// A peer folder is a whole filesystem where the peer serves it:
	// links, special files, owners and all three times (peer.Conn.Posix
	// says which connections got it).
	opts.Client.Posix = true
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
		chunks:   newChunkPool(),
	}
	s.ns = newBehind(opts.Cache.Journal(), opts.AttrTTL, opts.Now)
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
		if m := peerproto.FileMode(ch.Meta().Mode); m != 0 {
			f.mode, f.setMode = m, true
		}
		f.remote.Mode = peerproto.UnixBits(f.mode)
		f.ch.Store(ch)
		s.files[key] = f
		s.log.Info().Str("peer", key.Peer).Str("path", key.Path).Int64("size", ch.Size()).Msg("found unuploaded file from an earlier run")
	}
	s.setAsideStrangers()
	// Changes written behind by an earlier run: queued first (a peer
	// they wait for is kept by loadPeers), sent once the peers are
	// known.
	senders := s.replayBehind()
	if err := s.loadPeers(); err != nil {
		return nil, err
	}
	for _, name := range senders {
		s.startSender(name)
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
	s.ns.close() // waits for changes written behind end: they stay journalled
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
	statfs     statfsCache
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

// WatchEntries implements fusefs.EntryWatcher: fn hears of each change
// a peer reported that this mount did not make (another writer's), as
// soon as it is reported (remote/watch.go).
func (s *Store) WatchEntries(fn func(fusefs.EntryChange)) {
	s.mu.Lock()
	s.entryWatchers = append(s.entryWatchers, fn)
	s.mu.Unlock()
}

// WatchStored implements fusefs.StoredWatcher.
func (s *Store) WatchStored(fn func(peer, path string)) {
	s.mu.Lock()
	s.storedWatchers = append(s.storedWatchers, fn)
	s.mu.Unlock()
}

// notifyStored calls the WatchStored callbacks: peer's file at path,
// stored, shows the peer's times from now on (stored). Called with no
// Store lock held (the file's upload lock may be).
func (s *Store) notifyStored(peer, path string) {
	for _, fn := range watchersIn(s, &s.storedWatchers) {
		fn(peer, path)
	}
}

// notifyEntry calls the WatchEntries callbacks.
func (s *Store) notifyEntry(ch fusefs.EntryChange) {
	for _, fn := range watchersIn(s, &s.entryWatchers) {
		fn(ch)
	}
}

// notify calls the Watch callbacks: peer's directory dir changed.
func (s *Store) notify(peer, dir string) {
	for _, fn := range watchersIn(s, &s.watchers) {
		fn(peer, dir)
	}
}

// watchersIn returns a copy of the callbacks *ws, one of the Store's
// lists, taken under s.mu: they are called with no Store lock held.
func watchersIn[F any](s *Store, ws *[]F) []F {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(*ws)
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
	// Names removed here and carried out are no longer hidden: what
	// the peers have now counts (another writer may have made one again).
	s.ns.settleAll()
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
