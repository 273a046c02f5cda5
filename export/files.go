package export

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A mount reads a file with one ranged GET per FUSE read, so random reads
// would open the same file again for every 4 KiB. openFiles keeps the
// descriptors of recently read files open, briefly, for GET only.
//
// Freshness: every use re-reads the attributes with fstat, so the size
// is current and a change made in place (by a client or by the export's
// owner) is seen at once; a file that was since deleted or replaced by a
// rename (its link count is then 0) is reopened. Every write request this
// server handles drops the entries it may affect (the path, and for
// directories everything under it) before it answers. What is left is a
// change made behind the server's back that keeps the old file linked
// (a local rename of it, or of a directory above it, or a path now
// reaching another file through a symbolic link): a GET may see the old
// file for up to fileTTL after its open.
const (
	fileTTL     = 200 * time.Millisecond // how long an open descriptor is reused
	fileEntries = 64                     // most files held open
)

// openFiles is the server's cache of open, read-only file descriptors,
// keyed by clean path. It is safe for concurrent use.
type openFiles struct {
	mu      sync.Mutex // protects the fields below
	m       map[string]*openFile
	sweep   *time.Timer // armed while m is not empty; closes expired entries
	stopped bool        // after close: nothing is cached any more
	// gen counts invalidations: a descriptor opened before one (by a GET
	// racing with a write) is not cached (add).
	gen uint64
}

// generation returns the current invalidation count, for add.
func (c *openFiles) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// openFile is one open descriptor, shared by the GETs using it (pread
// needs no offset, so they do not interfere). Its fields are read-only
// after creation but refs, which is atomic: the descriptor closes when it
// drops to 0.
type openFile struct {
	fd   int
	path string
	// strict: opened through no symbolic link (jail.Strict), so it is
	// the file of path on every connection; else it may be what a link
	// names, which a posix connection must not read.
	strict  bool
	expires time.Time
	refs    atomic.Int32 // GETs using fd, plus 1 while in openFiles.m
}

// unref ends one use of f, closing the descriptor after the last.
func (f *openFile) unref() {
	if f.refs.Add(-1) == 0 {
		unix.Close(f.fd)
	}
}

// get returns the cached descriptor of p, counted as in use, or nil;
// if strict, only one opened through no symbolic link.
func (c *openFiles) get(p string, strict bool, now time.Time) *openFile {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.m[p]
	if f == nil || strict && !f.strict {
		return nil
	}
	if now.After(f.expires) {
		c.dropLocked(f)
		return nil
	}
	f.refs.Add(1)
	return f
}

// add caches a descriptor opened for p (through no link if strict) after
// generation returned gen,
// and returns it counted as in use; the cache now owns fd. If p was added
// meanwhile, something was invalidated since gen (the descriptor may be
// of the file a write just replaced), or the cache is closed, fd is used
// by this GET only.
func (c *openFiles) add(p string, fd int, strict bool, now time.Time, gen uint64) *openFile {
	f := &openFile{fd: fd, path: p, strict: strict, expires: now.Add(fileTTL)}
	f.refs.Store(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.m[p] != nil || c.gen != gen {
		return f
	}
	if c.m == nil {
		c.m = make(map[string]*openFile)
	}
	if len(c.m) >= fileEntries {
		c.evictLocked(now)
	}
	f.refs.Add(1)
	c.m[p] = f
	if c.sweep == nil {
		c.sweep = time.AfterFunc(fileTTL, c.expire)
	} else if len(c.m) == 1 {
		c.sweep.Reset(fileTTL)
	}
	return f
}

// release ends one use of f.
func (c *openFiles) release(f *openFile) { f.unref() }

// forget drops f from the cache if it is still there, for a descriptor
// found stale.
func (c *openFiles) forget(f *openFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[f.path] == f {
		c.dropLocked(f)
	}
}

// invalidate drops p and everything under it. Write requests call it
// before they answer.
func (c *openFiles) invalidate(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, f := range c.m {
		if p == "" || k == p || (strings.HasPrefix(k, p) && k[len(p)] == '/') {
			c.dropLocked(f)
		}
	}
}

// close drops every entry and stops caching; descriptors in use are
// closed when their GETs end.
func (c *openFiles) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.sweep != nil {
		c.sweep.Stop()
	}
	for _, f := range c.m {
		c.dropLocked(f)
	}
}

// expire runs on the sweep timer: it closes the expired entries, so a
// deleted file's space is not held, and re-arms while entries remain.
func (c *openFiles) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var next time.Time
	for _, f := range c.m {
		if now.After(f.expires) {
			c.dropLocked(f)
		} else if next.IsZero() || f.expires.Before(next) {
			next = f.expires
		}
	}
	if !next.IsZero() && !c.stopped {
		c.sweep.Reset(next.Sub(now) + time.Millisecond)
	}
}

// evictLocked makes room: it drops the expired entries, or else the one
// that expires first.
func (c *openFiles) evictLocked(now time.Time) {
	var oldest *openFile
	for _, f := range c.m {
		if now.After(f.expires) {
			c.dropLocked(f)
		} else if oldest == nil || f.expires.Before(oldest.expires) {
			oldest = f
		}
	}
	if len(c.m) >= fileEntries && oldest != nil {
		c.dropLocked(oldest)
	}
}

// dropLocked removes f from the map, ending the map's use of it.
func (c *openFiles) dropLocked(f *openFile) {
	delete(c.m, f.path)
	f.unref()
}
