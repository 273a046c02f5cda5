package cache

// The operations on entries by key. The lock order is at the top of cache.go.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Acquire returns a Handle pinning key's local copy, and whether that copy
// is valid content:
//
//   - A dirty entry is always returned as valid: local writes are newer
//     than anything remote. (A partial one, which holds only part of its
//     content, is returned pinned but not valid.)
//   - A clean entry is valid if it matches size and version (size < 0 or
//     version "" skips that check) and is whole (not Meta.Partial).
//   - Otherwise, if create is set, the stale entry (if any) is replaced by
//     a new, empty, clean one with unknown version, which the caller then
//     fills or writes into; the bool is false.
//   - Otherwise Acquire returns (nil, false, nil), dropping a stale entry
//     that nobody pins.
//
// The caller must Release the Handle.
func (c *Cache) Acquire(key Key, size int64, version string, create bool) (*Handle, bool, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	var stale *entry
	if e := c.entries[key]; e != nil {
		if e.dirty || e.matches(size, version) {
			h, err := c.pinLocked(e)
			if err == nil && !e.partial {
				c.hits++
			}
			c.mu.Unlock()
			return h, err == nil && !e.partial, err
		}
		if create || e.refs == 0 {
			c.detachLocked(e)
			stale = e
		}
	}
	c.misses++
	if !create {
		c.mu.Unlock()
		c.discard(stale)
		return nil, false, nil
	}
	id, f, err := c.newDataLocked()
	if err != nil {
		c.mu.Unlock()
		c.discard(stale)
		return nil, false, fmt.Errorf("cache: create %v: %w", key, err)
	}
	e := &entry{id: id, key: key}
	c.insertLocked(e)
	e.file = f
	e.refs = 1
	h := &Handle{c: c, e: e, f: f}
	c.mu.Unlock()
	c.discard(stale)
	return h, false, nil
}

// Create returns a Handle pinning key's local copy, emptied and marked
// dirty, as open(2) with O_CREAT or O_TRUNC leaves a file that is about to
// be written: it does what Acquire(key, -1, "", true), SetWriteBase(base),
// Truncate(0) and, unless mode is 0, SetMode(mode) do in turn, but writes
// the entry's record once instead of up to three times. An existing entry, clean or
// dirty, is truncated in place, so Handles that pin it see the
// truncation; otherwise a new entry is created, with its record saying
// dirty (and mode) before Create returns. The caller must Release the
// Handle.
//
// base is the peer's version the new content replaces (Meta.Base), or
// the mount's "none" for a file that does not exist there. A dirty entry
// keeps the base it has: its unuploaded writes started from that.
func (c *Cache) Create(key Key, mode uint32, base string) (*Handle, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if e := c.entries[key]; e != nil {
		h, err := c.pinLocked(e)
		if err == nil {
			c.hits++
		}
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		c.mu.Lock()
		oldBase := e.base
		if !e.dirty {
			e.base = base // markDirty records it
		}
		c.mu.Unlock()
		err = c.truncateLocked(e, h.f, 0, mode)
		if err != nil {
			c.mu.Lock()
			e.base = oldBase
			c.mu.Unlock()
		}
		e.mu.Unlock()
		if err != nil {
			h.Release()
			return nil, err
		}
		return h, nil
	}
	c.misses++
	id, f, err := c.newDataLocked()
	if err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("cache: create %v: %w", key, err)
	}
	e := &entry{id: id, key: key, mode: mode, base: base, dirty: true, dirtySince: time.Now(), persisted: true}
	rec := e.record()
	// Nobody can know e, so taking e.mu under c.mu cannot deadlock. It
	// keeps writes through other Handles out until the record is written.
	e.mu.Lock()
	c.insertLocked(e)
	e.file = f
	e.refs = 1
	h := &Handle{c: c, e: e, f: f}
	c.mu.Unlock()
	err = c.writeRecord(e, rec, false, noRecord)
	if err != nil {
		// Like a failed Fill, leave nothing behind; Handles that found
		// e meanwhile keep a detached copy.
		c.mu.Lock()
		c.detachLocked(e)
		c.mu.Unlock()
		c.removeFiles(e.id)
	}
	e.mu.Unlock()
	if err != nil {
		h.Release()
		return nil, fmt.Errorf("cache: create %v: %w", key, err)
	}
	return h, nil
}

// ErrPartial is returned where a copy holding only part of its content
// (Meta.Partial) cannot serve.
var ErrPartial = errors.New("cache: copy holds only part of its content")

// Partial returns a Handle pinning a copy of key to write into without
// its content, as a write-only open of a file of size bytes, at version
// on the peer, leaves it: the cache's valid clean copy of that size and
// version, if it holds one (whole), or a dirty entry already there, or
// else a new entry of size bytes that holds none of them (Meta.Partial:
// its data file is sparse, and only what is written, or filled in with
// Handle.FillAt, becomes known). The new entry is clean and has no
// record until its first write, which records base as its Meta.Base
// (as SetWriteBase does) and tracks its changes from there; it is never
// valid content for Acquire, and is dropped when its last Handle goes
// unless written. The caller must Release the Handle.
func (c *Cache) Partial(key Key, size int64, version, base string) (*Handle, error) {
	if size < 0 {
		return nil, fmt.Errorf("cache: partial %v: negative size %d", key, size)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	var stale *entry
	if e := c.entries[key]; e != nil {
		if e.dirty || (version != "" && e.matches(size, version) && !e.partial) {
			h, err := c.pinLocked(e)
			if err == nil {
				c.hits++
			}
			c.mu.Unlock()
			return h, err
		}
		c.detachLocked(e)
		stale = e
	}
	c.misses++
	id, f, err := c.newDataLocked()
	if err == nil {
		if err = f.Truncate(size); err != nil {
			f.Close()
			c.removeFiles(id)
		}
	}
	if err != nil {
		c.mu.Unlock()
		c.discard(stale)
		return nil, fmt.Errorf("cache: partial %v: %w", key, err)
	}
	e := &entry{id: id, key: key, size: size, base: base, scratch: true, partial: true, known: []Range{toEnd(size)}}
	c.insertLocked(e)
	e.file = f
	e.refs = 1
	h := &Handle{c: c, e: e, f: f}
	c.mu.Unlock()
	c.discard(stale)
	return h, nil
}

// Fill stores a downloaded clean copy of key: it reads exactly size bytes
// from r (never more, so r may be a shared stream) into a temporary file,
// renames it into the cache and records it with version (boot-stamped, so
// nothing is fsynced: see Durability in the package documentation). It
// returns a Handle pinning the new entry, which the caller must Release.
// If r yields fewer than size bytes, Fill fails and leaves nothing behind.
//
// If key has a dirty entry (written locally while the download ran), the
// downloaded copy is dropped and the Handle pins the dirty entry instead:
// local writes win. A stale clean entry is replaced.
func (c *Cache) Fill(key Key, r io.Reader, size int64, version string) (*Handle, error) {
	if size < 0 {
		return nil, fmt.Errorf("cache: fill %v: negative size %d", key, size)
	}
	c.mu.Lock()
	closed := c.closed
	id := ""
	if !closed {
		id = c.takeSpareLocked()
		if id != "" {
			c.filling[id] = true
		}
	}
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	// Into a spare's data file directly (its empty record makes it no
	// entry until the new one is written), else into a temporary file
	// renamed into place once complete.
	var f *os.File
	var err error
	if id != "" {
		var fd int
		if fd, err = openRaw(c.dataPath(id), syscall.O_RDWR|syscall.O_TRUNC, 0); err == nil {
			f = os.NewFile(uintptr(fd), c.dataPath(id))
		} else {
			c.mu.Lock()
			delete(c.filling, id)
			c.mu.Unlock()
			c.removeFiles(id)
		}
	}
	if f == nil {
		id = newID()
		if f, err = os.CreateTemp(c.tmpDir, "fill-*"); err != nil {
			return nil, fmt.Errorf("cache: fill %v: %w", key, err)
		}
	}
	fail := func(err error) (*Handle, error) {
		c.mu.Lock()
		delete(c.filling, id)
		c.mu.Unlock()
		f.Close()
		// Its files, data first (removeFiles): a crash in between
		// leaves a record without data, which Open discards.
		c.removeFiles(id)
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("cache: fill %v: %w", key, err)
	}
	n, err := io.CopyN(f, r, size)
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("got %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fail(err)
	}
	c.mu.Lock()
	closed = c.closed
	c.mu.Unlock()
	if closed {
		// Closed during the download: put nothing into a
		// directory another Cache may own by now.
		return fail(ErrClosed)
	}
	// No fsync: the metadata carries the boot ID, and after a reboot the
	// entry is discarded rather than trusted (see writeRecord).
	if f.Name() != c.dataPath(id) {
		if err := os.Rename(f.Name(), c.dataPath(id)); err != nil {
			return fail(err)
		}
	}
	e := &entry{id: id, key: key, size: size, version: version}
	// Nobody else knows e yet, so no lock is needed to use it.
	if err := c.writeRecord(e, e.record(), false, noRecord); err != nil {
		return fail(err)
	}
	e.persisted = true

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fail(ErrClosed)
	}
	delete(c.filling, id)
	old := c.entries[key]
	if old != nil && old.dirty {
		if old.partial {
			c.mu.Unlock()
			return fail(fmt.Errorf("a dirty copy holding only part of its content is there: %w", ErrPartial))
		}
		h, err := c.pinLocked(old)
		c.mu.Unlock()
		f.Close()
		c.removeFiles(id)
		return h, err
	}
	c.detachLocked(old)
	c.insertLocked(e)
	e.file = f
	e.refs = 1
	h := &Handle{c: c, e: e, f: f}
	victims := c.evictLocked()
	c.mu.Unlock()
	c.discard(old)
	c.discard(victims...)
	return h, nil
}

// lockEntry returns key's entry with e.mu held, or nil if key has none.
// The caller must still check e.removed under c.mu before relying on the
// mapping, since eviction detaches entries without e.mu.
func (c *Cache) lockEntry(key Key) (*entry, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		e := c.entries[key]
		c.mu.Unlock()
		if e == nil {
			return nil, nil
		}
		e.mu.Lock()
		c.mu.Lock()
		ok := !e.removed && e.key == key
		c.mu.Unlock()
		if ok {
			return e, nil
		}
		e.mu.Unlock()
	}
}

// Generation returns key's write generation: a counter bumped after every
// write or truncation has reached the data file. An uploader reads it
// before reading the content and passes it to MarkClean. It returns 0 if
// key has no entry.
func (c *Cache) Generation(key Key) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		return e.gen
	}
	return 0
}

// MarkClean records that key's content as of generation gen was uploaded
// and that the peer now has it with the given size and version. If the entry
// was written since gen it stays dirty and MarkClean reports false; the
// caller uploads again later. It fails with ErrNotCached if key has no
// entry, and if size differs from the local copy's size.
func (c *Cache) MarkClean(key Key, gen uint64, size int64, version string) (bool, error) {
	e, err := c.lockEntry(key)
	if err != nil {
		return false, err
	}
	if e == nil {
		return false, fmt.Errorf("cache: mark clean %v: %w", key, ErrNotCached)
	}
	ok, err := c.markCleanLocked(e, gen, size, version)
	e.mu.Unlock()
	c.evict()
	return ok, err
}

// markCleanLocked implements MarkClean. Caller holds e.mu.
func (c *Cache) markCleanLocked(e *entry, gen uint64, size int64, version string) (bool, error) {
	c.mu.Lock()
	key := e.key
	switch {
	case e.removed:
		c.mu.Unlock()
		return false, nil
	case e.gen != gen:
		c.mu.Unlock()
		return false, nil
	case e.size != size:
		local := e.size
		c.mu.Unlock()
		return false, fmt.Errorf("cache: mark clean %v: peer has %d bytes, local copy %d", key, size, local)
	}
	rec, was := e.record(), e.diskState()
	rec.Dirty, rec.DirtySince, rec.Version = false, 0, version
	rec.BaseVersion, rec.Sent = "", "" // a dirty copy's notes
	rec.Tracked, rec.Changed = false, nil
	c.mu.Unlock()

	// Writes need e.mu, so the content cannot change from here on. The
	// peer has the content durably; the local copy needs no fsync. But a
	// durable record must not survive a power loss that a later write's
	// bytes survive, and that write would find the entry clean and not
	// durable: writeRecord fsyncs the replacement of a durable record.
	if err := c.writeRecord(e, rec, false, was); err != nil {
		return false, fmt.Errorf("cache: mark clean %v: %w", key, err)
	}
	c.mu.Lock()
	e.persisted = true
	e.durable = false
	e.version = version
	e.base, e.sent = "", "" // the next write starts from version
	e.tracked, e.changed = false, nil
	e.scratch = false // now a version
	c.setDirtyLocked(e, false)
	c.mu.Unlock()
	return true, nil
}

// evict runs eviction now.
func (c *Cache) evict() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	victims := c.evictLocked()
	c.mu.Unlock()
	c.discard(victims...)
}

// Dirty returns the keys of all dirty entries, oldest dirty first.
func (c *Cache) Dirty() []Key {
	c.mu.Lock()
	var es []*entry
	for _, e := range c.entries {
		if e.dirty {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int {
		if n := a.dirtySince.Compare(b.dirtySince); n != 0 {
			return n
		}
		return strings.Compare(a.id, b.id)
	})
	keys := make([]Key, len(es))
	for i, e := range es {
		keys[i] = e.key
	}
	c.mu.Unlock()
	return keys
}

// DirtyInfo returns the number and total size of dirty entries and when
// the oldest of them turned dirty (zero if none).
func (c *Cache) DirtyInfo() (files int, bytes int64, oldest time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.dirty && (oldest.IsZero() || e.dirtySince.Before(oldest)) {
			oldest = e.dirtySince
		}
	}
	return c.dirtyFiles, c.dirtyBytes, oldest
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	pinned := 0
	for _, e := range c.entries {
		if e.refs > 0 {
			pinned++
		}
	}
	return Stats{
		Entries:    len(c.entries),
		Bytes:      c.bytes,
		MaxBytes:   c.max,
		DirtyFiles: c.dirtyFiles,
		DirtyBytes: c.dirtyBytes,
		Pinned:     pinned,
		OverLimit:  c.bytes > c.max,
		Hits:       c.hits,
		Misses:     c.misses,
		Evictions:  c.evictions,
	}
}

// Meta returns key's metadata, and false if key has no entry.
func (c *Cache) Meta(key Key) (Meta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		return e.meta(), true
	}
	return Meta{}, false
}
