package cache

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Dropping and reusing entry files, off the callers' path.
//
// Creating a file is the dearest thing the cache does on common local
// file systems: about 200 us of CPU per inode on the ext4 of the machine
// this was measured on, against 7 us to open an existing file with
// O_TRUNC and 8–14 us to unlink one; and every new entry needs one, or
// two where its record is a metadata file (xattr.go). So the files of
// clean entries that are dropped (removed, renamed over, replaced or
// evicted) are kept, emptied, as spares for the next new entries, up to
// maxSpares; only the rest are unlinked, and those unlinks wait until the
// cache has been quiet for removeQuiet (rm -r of a big tree, whose every
// unlink would otherwise pay more on the same CPUs), within bounds on how
// much waits; queueing those wakes nobody (a timer wakes removeLoop once
// per removeQuiet), where a drop that may become a spare wakes it at once
// (an editor's next save creates a file).
//
// A spare's record (its data file's attribute, or its metadata file) is
// empty and is emptied before its data file, so a crash at any point
// leaves either the dropped entry whole (harmless: a clean copy that
// nothing will match, as when its unlinks are cut short) or a record that
// is empty, which Open takes back as a spare (emptyRecord). A new entry
// given a spare opens its data file with O_TRUNC and writes its record
// over the empty one: until that record is complete the entry has none,
// exactly as with new files. Close deletes the spares, and those that
// Fills still downloading are writing into (Cache.filling).

const (
	// maxSpares bounds the emptied entries' files kept for reuse.
	maxSpares = 1024
	// removeQuiet is how long the cache must have seen no drop before
	// the unlinks waiting for one run.
	removeQuiet = 100 * time.Millisecond
	// maxDeferred and maxDeferredBytes bound the dropped entries whose
	// unlinks wait: past either, they run at once.
	maxDeferred      = 16384
	maxDeferredBytes = 256 << 20
)

// dropped is an entry handed to removeLoop, with its size when it was
// detached.
type dropped struct {
	e    *entry
	size int64
}

// queueRemovalLocked hands detached e's files to removeLoop if e is
// clean, and reports whether it did. A clean copy left behind by a crash
// is harmless: nothing will match it, and Open prefers dirty and newer
// records for a key. A dirty or durable one must go now: its record would
// bring the file back. Called with c.mu held.
func (c *Cache) queueRemovalLocked(e *entry) bool {
	if e.dirty || e.durable || c.closed || len(c.dropQ) >= maxDeferred {
		return false
	}
	c.dropQ = append(c.dropQ, dropped{e: e, size: e.size})
	c.lastDrop = time.Now()
	c.waitBytes += e.size
	if len(c.spares)+c.recycling+len(c.dropQ) > maxSpares && c.waitBytes < maxDeferredBytes {
		// The spares are full: this drop's files are unlinked once the
		// cache is quiet, which is not worth waking removeLoop at every
		// drop (rm -r: at every unlink, a wake-up of a thread on another
		// CPU, ~8 us of the unlink's handler on the machine measured:
		// docs/PERFORMANCE.md, the twenty-fourth session). A timer wakes
		// it once per removeQuiet instead. Past maxDeferredBytes waiting,
		// it is woken at once, to unlink them all.
		if c.dropTimer == nil {
			c.dropTimer = time.AfterFunc(removeQuiet, c.dropTimerFired)
		}
		return true
	}
	c.kickRemoval()
	return true
}

// kickRemoval wakes removeLoop, unless a wake-up is pending already.
func (c *Cache) kickRemoval() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// dropTimerFired wakes removeLoop for the drops queueRemovalLocked queued
// without a kick, and lets the next such drop arm the timer again.
func (c *Cache) dropTimerFired() {
	c.mu.Lock()
	c.dropTimer = nil
	c.mu.Unlock()
	c.kickRemoval()
}

// takeSpareLocked returns the ID of a spare, or "" if there is none.
// Caller holds c.mu.
func (c *Cache) takeSpareLocked() string {
	n := len(c.spares)
	if n == 0 {
		return ""
	}
	id := c.spares[n-1]
	c.spares = c.spares[:n-1]
	return id
}

// newDataLocked returns the ID and open data file for a new entry: a
// spare's, emptied, if there is one, else newly created. Caller holds
// c.mu.
func (c *Cache) newDataLocked() (string, *os.File, error) {
	for {
		id := c.takeSpareLocked()
		if id == "" {
			break
		}
		fd, err := openRaw(c.dataPath(id), syscall.O_RDWR|syscall.O_TRUNC, 0)
		if err == nil {
			return id, os.NewFile(uintptr(fd), c.dataPath(id)), nil
		}
		// Gone behind our back (or unreadable): forget this spare.
		c.log.Warn().Err(err).Str("id", id).Msg("spare cache file unusable")
		c.removeFiles(id)
	}
	id := newID()
	f, err := openData(c.dataPath(id), true)
	return id, f, err
}

// recycle empties detached e's files and keeps them as a spare, if e is
// unpinned and the pool has room, and reports whether it did and whether
// e is pinned. Caller holds e.mu and not c.mu.
func (c *Cache) recycle(e *entry) (done, pinned bool) {
	c.mu.Lock()
	pinned = e.refs != 0 || e.file != nil
	ok := !pinned && !c.closed && len(c.spares)+c.recycling < maxSpares
	if ok {
		c.recycling++
	}
	c.mu.Unlock()
	if !ok {
		return false, pinned
	}
	err := c.emptyRecord(e)
	if err == nil {
		err = syscall.Truncate(c.dataPath(e.id), 0)
	}
	c.mu.Lock()
	c.recycling--
	if err == nil && c.closed {
		err = ErrClosed // Close deletes what is left: see removeLoop
	}
	if err == nil {
		c.spares = append(c.spares, e.id)
	}
	c.mu.Unlock()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && err != ErrClosed {
			c.log.Warn().Err(err).Str("id", e.id).Msg("empty cache files for reuse")
		}
		return false, false
	}
	return true, false
}

// emptyRecord makes detached e's files a spare, as far as Open is
// concerned: the record first, so that from then on Open takes them for
// one. Where records are attributes (xattr.go) a spare is a data file
// whose attribute is empty, and e's metadata file, if it may have one,
// goes after the attribute is emptied: never is the attribute, which may
// hold an older record, what speaks for the entry while the file is
// there. Caller holds e.mu.
func (c *Cache) emptyRecord(e *entry) error {
	if !c.xattrs {
		if err := syscall.Truncate(c.metaPath(e.id), 0); err != nil {
			return err
		}
		// An attribute an earlier run with attributes left would speak
		// for the spare's next entry until its record is complete.
		return clearRecordXattr(c.dataPath(e.id))
	}
	if err := c.setRecordXattr(e.id, nil, false); err != nil {
		return err
	}
	if !e.metaFile {
		return nil
	}
	if err := os.Remove(c.metaPath(e.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	e.metaFile = false
	return nil
}

// removeLoop empties or deletes the files of the entries queued by
// queueRemovalLocked (see the top of this file). It returns once Close
// has closed c.done and everything queued is deleted.
func (c *Cache) removeLoop() {
	defer c.bg.Done()
	var (
		deferred      []string // IDs whose files wait for a quiet moment
		deferredBytes int64
		timer         *time.Timer
		wake          <-chan time.Time
	)
	// settle takes n bytes of drops done with off c.waitBytes.
	settle := func(n int64) {
		if n != 0 {
			c.mu.Lock()
			c.waitBytes -= n
			c.mu.Unlock()
		}
	}
	flush := func() {
		for _, id := range deferred {
			c.removeFiles(id)
		}
		settle(deferredBytes)
		deferred, deferredBytes = nil, 0
	}
	for {
		select {
		case <-c.kick:
		case <-wake:
			wake = nil
		case <-c.done:
		}
		c.wakes.Add(1)
		c.mu.Lock()
		q := c.dropQ
		c.dropQ = nil
		closed := c.closed
		quietFor := time.Since(c.lastDrop)
		c.mu.Unlock()
		var done int64 // bytes of q recycled or deleted here
		for _, d := range q {
			done += d.size
			d.e.mu.Lock()
			recycled, pinned := c.recycle(d.e)
			switch {
			case recycled:
			case closed || pinned:
				// A pinned entry's Handles still use its files: unlink
				// them now, as a local file system would, and never
				// reuse them.
				c.removeFiles(d.e.id)
			default:
				deferred = append(deferred, d.e.id)
				deferredBytes += d.size
				done -= d.size
			}
			d.e.mu.Unlock()
		}
		settle(done)
		if closed {
			flush()
			return
		}
		if len(deferred) == 0 {
			continue
		}
		if quietFor >= removeQuiet || len(deferred) >= maxDeferred || deferredBytes >= maxDeferredBytes {
			flush()
			continue
		}
		if wake == nil {
			if timer == nil {
				timer = time.NewTimer(removeQuiet - quietFor)
			} else {
				timer.Reset(removeQuiet - quietFor)
			}
			wake = timer.C
		}
	}
}

// dropSpares deletes the spare files. Called by Close after removeLoop
// ended.
func (c *Cache) dropSpares() {
	for _, id := range c.spares {
		c.removeFiles(id)
	}
	c.spares = nil
}
