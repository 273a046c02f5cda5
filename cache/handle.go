package cache

import (
	"fmt"
	"os"
	"sync/atomic"
)

// Handle pins one cache entry: while any Handle pins it, the entry is not
// evicted and its data file stays open. A Handle is safe for concurrent
// use; several Handles may pin the same entry and share its file. After
// Release every method fails with ErrClosed.
type Handle struct {
	c *Cache   // read-only
	e *entry   // read-only
	f *os.File // read-only: the entry's data file, shared by its Handles

	released atomic.Bool
}

// ReadAt reads from the local copy, as os.File.ReadAt does.
func (h *Handle) ReadAt(p []byte, off int64) (int, error) {
	if h.released.Load() {
		return 0, ErrClosed
	}
	return h.f.ReadAt(p, off)
}

// WriteAt writes to the local copy, as os.File.WriteAt does. The first
// write to a clean entry marks it dirty, and that is durable before any
// byte reaches the data file. The data itself is durable after Sync.
func (h *Handle) WriteAt(p []byte, off int64) (int, error) {
	if h.released.Load() {
		return 0, ErrClosed
	}
	e := h.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := h.c.markDirty(e); err != nil {
		return 0, err
	}
	n, err := h.f.WriteAt(p, off)
	h.c.mu.Lock()
	if n > 0 && off+int64(n) > e.size {
		h.c.setSizeLocked(e, off+int64(n))
	}
	// Bumped after the write so that an uploader that saw the old
	// generation cannot mark this write clean.
	e.gen++
	h.c.mu.Unlock()
	return n, err
}

// Truncate sets the local copy's size and marks the entry dirty, like
// WriteAt.
func (h *Handle) Truncate(size int64) error {
	if h.released.Load() {
		return ErrClosed
	}
	e := h.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := h.c.markDirty(e); err != nil {
		return err
	}
	err := h.f.Truncate(size)
	h.c.mu.Lock()
	if err == nil {
		h.c.setSizeLocked(e, size)
	}
	e.gen++
	h.c.mu.Unlock()
	return err
}

// markDirty marks e dirty, persisting the flag first if it was clean.
// Caller holds e.mu, which keeps other metadata writes out.
func (c *Cache) markDirty(e *entry) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if (e.dirty && !e.durable) || e.removed {
		c.mu.Unlock()
		return nil
	}
	wasPersisted, wasDirty, wasDurable := e.persisted, e.dirty, e.durable
	c.setDirtyLocked(e, true)
	e.persisted = true
	e.durable = false
	rec, key := e.record(), e.key
	c.mu.Unlock()
	// The record says "dirty, not durable" (boot-stamped). Written without
	// fsync: a process crash keeps it in the page cache, and after a
	// reboot the entry is dropped — only Persist promises more. Leaving a
	// durable state is the exception: that flip must reach the disk
	// before the data changes, or a reboot could pair new bytes with the
	// old durable record.
	if err := c.writeMetaFlip(e.id, rec, wasDurable); err != nil {
		c.mu.Lock()
		c.setDirtyLocked(e, wasDirty)
		e.persisted, e.durable = wasPersisted, wasDurable
		c.mu.Unlock()
		return fmt.Errorf("cache: mark %v dirty: %w", key, err)
	}
	return nil
}

// writeMetaFlip writes a non-durable record; with sync set it still
// fsyncs it (used when leaving a durable state).
func (c *Cache) writeMetaFlip(id string, rec record, sync bool) error {
	if !sync {
		return c.writeMeta(id, rec, false)
	}
	rec.Boot = c.boot
	if err := c.writeMeta(id, rec, false); err != nil {
		return err
	}
	if err := syncFile(c.metaPath(id)); err != nil {
		return err
	}
	return syncDir(c.entriesDir)
}

// Persist makes the entry durable: its data is fsynced and its record
// written with fsync, so it survives a power loss and a reboot. The mount
// calls it when an upload fails, so that what a program wrote and closed
// is never lost.
func (h *Handle) Persist() error {
	if h.released.Load() {
		return ErrClosed
	}
	e, c := h.e, h.c
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	if e.removed || e.durable {
		c.mu.Unlock()
		return nil
	}
	rec, key := e.record(), e.key
	c.mu.Unlock()
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("cache: persist %v: %w", key, err)
	}
	if err := c.writeMeta(e.id, rec, true); err != nil {
		return fmt.Errorf("cache: persist %v: %w", key, err)
	}
	c.mu.Lock()
	e.persisted, e.durable = true, true
	c.mu.Unlock()
	return nil
}

// Size returns the local copy's size.
func (h *Handle) Size() int64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.e.size
}

// Key returns the entry's current key, which changes if it is renamed.
func (h *Handle) Key() Key {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.e.key
}

// Meta returns the entry's metadata.
func (h *Handle) Meta() Meta {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.e.meta()
}

// File returns the entry's data file, for streaming an upload (for example
// through io.NewSectionReader). The caller must not close it, and must
// write only through WriteAt and Truncate.
func (h *Handle) File() *os.File { return h.f }

// Sync makes the local copy's data durable.
func (h *Handle) Sync() error {
	if h.released.Load() {
		return ErrClosed
	}
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("cache: sync %v: %w", h.Key(), err)
	}
	return nil
}

// SetMode records the file's mode with the entry, persisting it if the
// entry is persisted (dirty or filled), so that an upload after a restart
// can restore it.
func (h *Handle) SetMode(mode uint32) error {
	if h.released.Load() {
		return ErrClosed
	}
	e := h.e
	e.mu.Lock()
	defer e.mu.Unlock()
	h.c.mu.Lock()
	e.mode = mode
	persist := e.persisted && !e.removed
	rec, key, durable := e.record(), e.key, e.durable
	h.c.mu.Unlock()
	if persist {
		if err := h.c.writeMeta(e.id, rec, durable); err != nil {
			return fmt.Errorf("cache: set mode of %v: %w", key, err)
		}
	}
	return nil
}

// Generation returns the entry's write generation, as Cache.Generation
// does, but for this Handle's entry even if it was renamed or detached.
func (h *Handle) Generation() uint64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.e.gen
}

// MarkClean is Cache.MarkClean for this Handle's entry. It reports false,
// and does nothing, if the entry was written since gen or was detached.
func (h *Handle) MarkClean(gen uint64, size, mtime int64) (bool, error) {
	if h.released.Load() {
		return false, ErrClosed
	}
	h.e.mu.Lock()
	ok, err := h.c.markCleanLocked(h.e, gen, size, mtime)
	h.e.mu.Unlock()
	h.c.evict()
	return ok, err
}

// Release unpins the entry; eviction may run afterwards. Releasing twice
// returns ErrClosed.
func (h *Handle) Release() error {
	if !h.released.CompareAndSwap(false, true) {
		return ErrClosed
	}
	return h.c.unpin(h.e)
}

// Reopen opens a second, independent descriptor of the local copy,
// positioned at offset 0, so that a caller can stream it (with sendfile)
// without disturbing the shared file. The caller must close it, and must
// not Release h concurrently with Reopen.
func (h *Handle) Reopen() (*os.File, error) {
	if h.released.Load() {
		return nil, ErrClosed
	}
	// Through /proc: the data file may have been renamed since it was
	// opened (Fill writes it under a temporary name).
	return os.Open(fmt.Sprintf("/proc/self/fd/%d", h.f.Fd()))
}
