package cache

// Lock order: Cache.renameMu, then entry.mu (only Rename holds two entry
// locks, and renameMu makes it the only one doing so), then Cache.mu.
// entry.mu is held across the entry's file I/O; Cache.mu never is, except
// for opening and creating data files. Create locks a new entry's mu under
// Cache.mu, before anyone else can see the entry.

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// DefaultMaxBytes is the bound used when Options.MaxBytes is 0.
const DefaultMaxBytes = 1 << 30

// ErrClosed is returned by operations on a closed Cache or a released Handle.
var ErrClosed = errors.New("cache: closed")

// ErrNotCached is returned by operations on a key that has no entry.
var ErrNotCached = errors.New("cache: not cached")

// Options configures Open.
type Options struct {
	// Dir is the cache directory, created with mode 0700 if missing.
	Dir string
	// MaxBytes bounds the total size of all entries; 0 means DefaultMaxBytes.
	MaxBytes int64
	// Logger receives the cache's log lines; Open adds component=cache.
	Logger zerolog.Logger
	// BootIDFile holds the kernel's boot ID, which stamps the records
	// written without fsync (see bootID in store.go); "" means
	// DefaultBootIDFile. Tests point it at a file of their own to
	// simulate a reboot, or at none.
	BootIDFile string
	// MetaFiles keeps every entry's record in a metadata file of its
	// own, as on a file system without user extended attributes, where
	// the cache does so anyway (xattr.go). Tests set it.
	MetaFiles bool
}

// Key names a cached file: a peer and a slash-separated path relative to
// that peer's export.
type Key struct {
	Peer, Path string
}

// String returns the key as "peer:path", quoted, for messages.
func (k Key) String() string { return fmt.Sprintf("%q", k.Peer+":"+k.Path) }

// Meta describes an entry.
type Meta struct {
	// Size is the local copy's size in bytes.
	Size int64
	// Version is the remote version (opaque to the cache: the mount's
	// peerproto.Version) that a clean copy is; "" if unknown.
	Version string
	// Dirty reports whether the local copy holds writes not yet uploaded.
	Dirty bool
	// DirtySince is when the entry last turned dirty; zero if clean.
	DirtySince time.Time
	// Mode is the file mode recorded with SetMode, 0 if none.
	Mode uint32
	// Base is, for a dirty copy, the peer's version it was started from:
	// the Version of the clean copy it was when first written, or the
	// base given to Create or SetBase (the mount's "none" for a file
	// created here). "" if unknown. It survives restarts with the copy.
	Base string
	// Sent is what SetSent recorded with a dirty copy; empty if nothing.
	Sent string
	// Parked is, for a dirty copy set aside with Park, why it was (the
	// mount's words); empty otherwise. Origin is the key it had then.
	Parked string
	Origin Key
	// Tracked reports that Changed lists every byte of a dirty copy that
	// differs from Base: each range written, or truncated away and so
	// zero if written past again, since the copy was its Base. An
	// upload may then send just those ranges (clipped to Size) and the
	// new size. A copy created or emptied by Create is not tracked, nor
	// one whose changes were too scattered to keep within MaxChanged.
	Tracked bool
	Changed []Range
	// Partial reports that the copy holds only some of its content: the
	// Known ranges (and anything at or past a size it was truncated to);
	// the rest is its Base's, on the peer, not fetched yet (Cache.Partial,
	// Handle.FillAt). Such a copy is never valid content for Acquire.
	Partial bool
	Known   []Range
	// Gen is the entry's write generation (see Cache.Generation).
	Gen uint64
	// Detached reports that the entry was removed or replaced while pinned:
	// it is no longer in the cache and nothing written to it is persisted.
	Detached bool
}

// Stats is a snapshot of the cache's counters.
type Stats struct {
	Entries    int    // entries in the cache
	Bytes      int64  // their total size
	MaxBytes   int64  // the configured bound
	DirtyFiles int    // dirty entries
	DirtyBytes int64  // their total size
	Pinned     int    // entries pinned by at least one Handle
	OverLimit  bool   // Bytes > MaxBytes because dirty or pinned data cannot be evicted
	Hits       uint64 // Acquire and Create calls that found an entry (for Acquire, a valid one)
	Misses     uint64 // Acquire and Create calls that did not
	Evictions  uint64 // entries evicted to stay within MaxBytes
}

// Cache is an on-disk content cache. It is safe for concurrent use.
type Cache struct {
	entriesDir string
	tmpDir     string
	max        int64
	log        zerolog.Logger
	lockFile   *os.File
	boot       string // stamp on metadata written without fsync: the boot ID (see bootID)
	xattrs     bool   // new records go into data files' attributes (xattr.go)

	journal *Journal // the namespace journal (journal.go); set by Open

	// renameMu serializes Rename, the only operation that holds two
	// entry locks at once.
	renameMu sync.Mutex

	mu         sync.Mutex // protects the fields below and the entry fields marked "c.mu"
	closed     bool
	entries    map[Key]*entry
	under      map[Key]int // directory -> number of entries below it, for Rename
	lru        *list.List  // of *entry; front is most recently used
	bytes      int64       // total size of entries in the map
	dirtyFiles int
	dirtyBytes int64
	overLimit  bool // last eviction left the cache over the bound (logged once)
	hits       uint64
	misses     uint64
	evictions  uint64
	// For removeLoop (reuse.go):
	dropQ     []dropped   // detached clean entries whose files it empties or deletes
	lastDrop  time.Time   // when the last one was queued
	spares    []string    // IDs of emptied entries' files kept for new entries
	recycling int         // dropped entries' files being emptied into spares
	dropTimer *time.Timer // kicks removeLoop for drops queued without a kick; nil if not armed
	waitBytes int64       // sizes of the drops in dropQ and of those removeLoop defers
	// filling holds the IDs of the spares that Fills are writing into,
	// which Close deletes: a Fill still downloading outlives Close, and
	// the next Open would take such files (their record still empty) for
	// a spare of its own.
	filling map[string]bool

	kick  chan struct{} // wakes removeLoop; capacity 1
	wakes atomic.Int64  // times removeLoop woke (tests)
	done  chan struct{} // closed by Close, which then waits for bg
	bg    sync.WaitGroup
}

// entry is one cached file.
type entry struct {
	id string // read-only: names the entry's files

	// mu serializes changes to the entry's files (data writes and
	// truncation, metadata writes and deletion) and is held across that
	// I/O. Detaching an entry from the map needs only c.mu; its files are
	// then deleted under mu, so a metadata write in progress finishes first.
	mu sync.Mutex

	// metaLen is the length of the metadata file, 0 if unknown. Guarded
	// by mu.
	metaLen int
	// metaFile reports that the entry's record is, or may be, a
	// metadata file of its own rather than its data file's attribute
	// (xattr.go); once set it stays. Guarded by mu.
	metaFile bool
	// streamed is how far a streamer has read the copy (Handle.StreamAt),
	// and streamBroken whether a change has reached below that since
	// (Handle.Streamed). Guarded by mu.
	streamed     int64
	streamBroken bool

	// Guarded by c.mu; persisted and durable change only with mu held too:
	key        Key
	size       int64
	version    string // see Meta.Version
	mode       uint32
	base       string  // see Meta.Base; meaningful while dirty
	sent       string  // see record.Sent; meaningful while dirty
	tracked    bool    // see Meta.Tracked; meaningful while dirty
	changed    []Range // see Meta.Changed; meaningful while tracked
	partial    bool    // see Meta.Partial
	known      []Range // see Meta.Known; meaningful while partial
	scratch    bool    // made by Partial and not stored since: dropped when unpinned while clean
	parked     string  // see Meta.Parked; meaningful while dirty
	origin     Key     // see Meta.Origin; meaningful while parked
	dirty      bool
	dirtySince time.Time
	gen        uint64
	persisted  bool          // a metadata file exists or is being written
	durable    bool          // data and metadata were fsynced (Persist, or loaded so)
	removed    bool          // detached from the map; files deleted or about to be
	refs       int           // pinning Handles
	file       *os.File      // open while refs > 0
	elem       *list.Element // in c.lru while not removed
}

// record returns the entry's metadata. Caller holds c.mu.
func (e *entry) record() record {
	r := record{
		Peer:    escapeName(e.key.Peer),
		Path:    escapeName(e.key.Path),
		Size:    e.size,
		Version: e.version,
		Dirty:   e.dirty,
		Mode:    e.mode,
	}
	if e.dirty {
		r.BaseVersion, r.Sent = e.base, e.sent
		r.Tracked, r.Changed = e.tracked, encodeRanges(e.changed)
	}
	if e.partial {
		r.Partial, r.Known = true, encodeRanges(e.known)
	}
	if e.dirty && e.parked != "" {
		r.Parked = e.parked
		r.OriginPeer, r.OriginPath = escapeName(e.origin.Peer), escapeName(e.origin.Path)
	}
	if e.dirty {
		r.DirtySince = e.dirtySince.UnixNano()
	}
	return r
}

// meta returns the entry's Meta. Caller holds c.mu.
func (e *entry) meta() Meta {
	m := Meta{Size: e.size, Version: e.version, Dirty: e.dirty, DirtySince: e.dirtySince,
		Mode: e.mode, Gen: e.gen, Detached: e.removed}
	if e.dirty {
		m.Base, m.Sent = e.base, e.sent
		m.Parked, m.Origin = e.parked, e.origin
		m.Tracked, m.Changed = e.tracked, slices.Clone(e.changed)
	}
	if e.partial {
		m.Partial, m.Known = true, slices.Clone(e.known)
	}
	return m
}

// ChangedNow returns Changed clipped to the copy's size: the ranges an
// upload of a tracked copy sends (what lies past the size was cut off).
func (m Meta) ChangedNow() []Range {
	return clipRanges(m.Changed, m.Size)
}

// Unknown returns the parts of [off, end), clipped to the copy's size,
// that a partial copy does not hold (nil for a whole one): what must be
// fetched from its base before they are read.
func (m Meta) Unknown(off, end int64) []Range {
	if !m.Partial {
		return nil
	}
	return gapsIn(m.Known, Range{off, min(end, m.Size)})
}

// matches reports whether a clean entry is the remote file of the given
// size and version; size < 0 or version "" skips that check.
func (e *entry) matches(size int64, version string) bool {
	return (size < 0 || e.size == size) && (version == "" || e.version == version)
}

// countUnderLocked adds delta to the number of entries under each
// directory above k (the peer's root excepted). Caller holds c.mu.
func (c *Cache) countUnderLocked(k Key, delta int) {
	p := k.Path
	for {
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return
		}
		p = p[:i]
		d := Key{Peer: k.Peer, Path: p}
		if n := c.under[d] + delta; n > 0 {
			c.under[d] = n
		} else {
			delete(c.under, d)
		}
	}
}

// insertLocked adds e to the map as the most recently used entry. Caller
// holds c.mu (or owns c exclusively, as in Open).
func (c *Cache) insertLocked(e *entry) {
	c.entries[e.key] = e
	c.countUnderLocked(e.key, 1)
	e.elem = c.lru.PushFront(e)
	c.bytes += e.size
	if e.dirty {
		c.dirtyFiles++
		c.dirtyBytes += e.size
	}
}

// detachLocked removes e from the map; its files must then be deleted with
// discard. Handles pinning e keep working on the unlinked file. Caller
// holds c.mu.
func (c *Cache) detachLocked(e *entry) {
	if e == nil || e.removed {
		return
	}
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
		c.countUnderLocked(e.key, -1)
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	e.removed = true
	c.bytes -= e.size
	if e.dirty {
		c.dirtyFiles--
		c.dirtyBytes -= e.size
	}
}

// setSizeLocked records e's new size. Caller holds c.mu.
func (c *Cache) setSizeLocked(e *entry, size int64) {
	if !e.removed {
		c.bytes += size - e.size
		if e.dirty {
			c.dirtyBytes += size - e.size
		}
	}
	e.size = size
}

// setDirtyLocked flips e's dirty flag in memory. Caller holds c.mu.
func (c *Cache) setDirtyLocked(e *entry, dirty bool) {
	if e.dirty == dirty {
		return
	}
	e.dirty = dirty
	e.dirtySince = time.Time{}
	if dirty {
		e.dirtySince = time.Now()
	}
	if e.removed {
		return
	}
	if dirty {
		c.dirtyFiles++
		c.dirtyBytes += e.size
	} else {
		c.dirtyFiles--
		c.dirtyBytes -= e.size
	}
}

// discard deletes the files of detached entries. Caller holds no entry
// lock (Rename excepted, see the lock order) and not c.mu.
func (c *Cache) discard(es ...*entry) {
	for _, e := range es {
		if e == nil {
			continue
		}
		c.mu.Lock()
		queued := c.queueRemovalLocked(e)
		c.mu.Unlock()
		if queued {
			continue
		}
		e.mu.Lock()
		c.removeFiles(e.id)
		e.mu.Unlock()
	}
}

// evictLocked detaches least recently used clean, unpinned entries until
// the cache is within its bound, and returns them for discard. Caller holds
// c.mu.
func (c *Cache) evictLocked() []*entry {
	var victims []*entry
	for el := c.lru.Back(); el != nil && c.bytes > c.max; {
		prev := el.Prev()
		e := el.Value.(*entry)
		if e.refs == 0 && !e.dirty {
			c.detachLocked(e)
			c.evictions++
			victims = append(victims, e)
			c.log.Debug().Stringer("key", e.key).Int64("size", e.size).Msg("evict")
		}
		el = prev
	}
	over := c.bytes > c.max
	if over && !c.overLimit {
		c.log.Warn().Int64("bytes", c.bytes).Int64("max", c.max).Int64("dirty_bytes", c.dirtyBytes).
			Msg("cache over its bound: the rest is dirty or pinned")
	}
	c.overLimit = over
	return victims
}

// pinLocked returns a new Handle on e, opening its data file if e was
// unpinned. Caller holds c.mu.
func (c *Cache) pinLocked(e *entry) (*Handle, error) {
	if e.refs == 0 {
		f, err := openData(c.dataPath(e.id), false)
		if err != nil {
			return nil, fmt.Errorf("cache: open %v: %w", e.key, err)
		}
		e.file = f
	}
	e.refs++
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
	}
	return &Handle{c: c, e: e, f: e.file}, nil
}

// unpin drops one reference to e and runs eviction.
func (c *Cache) unpin(e *entry) error {
	c.mu.Lock()
	e.refs--
	var f *os.File
	var victims []*entry
	if e.refs == 0 {
		f, e.file = e.file, nil
		if !e.dirty && (e.partial || e.scratch) && !e.removed && !c.closed {
			// Part of a version, or a copy filled in from the peer
			// piece by piece (which another writer may have replaced
			// in between): nobody reads it as a version, so it only
			// takes room.
			c.detachLocked(e)
			victims = append(victims, e)
		}
	}
	if !c.closed {
		victims = append(victims, c.evictLocked()...)
	}
	c.mu.Unlock()
	c.discard(victims...)
	if f != nil {
		if err := f.Close(); err != nil && !errors.Is(err, fs.ErrClosed) {
			return fmt.Errorf("cache: release %v: %w", e.key, err)
		}
	}
	return nil
}
