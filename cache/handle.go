package cache

import (
	"fmt"
	"os"
	"slices"
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
// byte reaches the data file; so is a write's range in Meta.Changed, when
// it adds to it. The data itself is durable after Sync.
func (h *Handle) WriteAt(p []byte, off int64) (int, error) {
	if h.released.Load() {
		return 0, ErrClosed
	}
	e, c := h.e, h.c
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.markDirty(e, 0, Range{off, off + int64(len(p))}); err != nil {
		return 0, err
	}
	n, err := h.f.WriteAt(p, off)
	c.mu.Lock()
	if n > 0 && off+int64(n) > e.size {
		c.setSizeLocked(e, off+int64(n))
	}
	// Bumped after the write so that an uploader that saw the old
	// generation cannot mark this write clean.
	e.gen++
	c.mu.Unlock()
	if n > 0 {
		// Only now does a partial copy hold these bytes: a crash before
		// this record leaves them unknown (fetched from the base again,
		// as if the write, never acknowledged, had not happened).
		if kerr := c.learnLocked(e, Range{off, off + int64(n)}); err == nil {
			err = kerr
		}
	}
	return n, err
}

// StreamAt reads from the local copy as ReadAt does, for a streamer: a
// reader that sends the copy somewhere while it is being written, and
// must know whether what it read is still what the copy holds. It reads
// with writes held off, and raises the copy's stream mark to the end of
// what it read; a later write, truncation or fill that changes anything
// below the mark breaks the stream (Streamed), until ResetStream.
func (h *Handle) StreamAt(p []byte, off int64) (int, error) {
	if h.released.Load() {
		return 0, ErrClosed
	}
	e := h.e
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := h.f.ReadAt(p, off)
	if n > 0 && off+int64(n) > e.streamed {
		e.streamed = off + int64(n)
	}
	return n, err
}

// Streamed reports the stream mark (how far StreamAt has read) and
// whether the copy is intact below it: nothing there changed since it
// was read, and the Handle is not released. Then the first mark bytes
// StreamAt returned are the copy's first mark bytes now.
func (h *Handle) Streamed() (mark int64, intact bool) {
	e := h.e
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.streamed, !e.streamBroken && !h.released.Load()
}

// ResetStream clears the stream mark: the streamer is done.
func (h *Handle) ResetStream() {
	e := h.e
	e.mu.Lock()
	e.streamed, e.streamBroken = 0, false
	e.mu.Unlock()
}

// FillAt puts p, bytes of the copy's base (or, clean, of its version)
// from offset off, where a partial copy does not hold them yet: it writes
// only the parts of [off, off+len(p)) still unknown (a write may have
// landed there meanwhile, and wins), and records them as known. It
// changes nothing else (the copy stays dirty or clean, its changes
// unchanged), and does nothing to a whole copy. A durable entry's filled
// bytes are made durable before its record says it holds them.
func (h *Handle) FillAt(p []byte, off int64) error {
	if h.released.Load() {
		return ErrClosed
	}
	e, c := h.e, h.c
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	var gaps []Range
	if e.partial {
		gaps = gapsIn(e.known, Range{off, min(off+int64(len(p)), e.size)})
	}
	durable := e.durable
	c.mu.Unlock()
	if len(gaps) == 0 {
		return nil
	}
	for _, g := range gaps {
		if g.Off < e.streamed {
			e.streamBroken = true
		}
		if _, err := h.f.WriteAt(p[g.Off-off:g.End-off], g.Off); err != nil {
			return fmt.Errorf("cache: fill %v: %w", h.Key(), err)
		}
	}
	if durable {
		if err := h.f.Sync(); err != nil {
			return fmt.Errorf("cache: fill %v: %w", h.Key(), err)
		}
	}
	return c.learnLocked(e, gaps...)
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
	return h.c.truncateLocked(e, h.f, size, 0)
}

// truncateLocked marks e dirty (recording mode with it unless mode is 0)
// and sets its size through f, e's data file. Caller holds e.mu.
func (c *Cache) truncateLocked(e *entry, f *os.File, size int64, mode uint32) error {
	c.mu.Lock()
	cur := e.size
	c.mu.Unlock()
	// What is cut off differs from the base if it comes back (zeros).
	if err := c.markDirty(e, mode, Range{size, cur}); err != nil {
		return err
	}
	var err error
	if size != cur {
		// Writes need e.mu, so the file still has e.size bytes; a
		// truncation to that size would change nothing but its mtime.
		err = f.Truncate(size)
	}
	c.mu.Lock()
	if err == nil {
		c.setSizeLocked(e, size)
	}
	e.gen++
	c.mu.Unlock()
	if err == nil && size < cur {
		// Whatever grows back from here is zeros, known here.
		err = c.learnLocked(e, toEnd(size))
	}
	return err
}

// markDirty marks e dirty and, unless mode is 0, records mode with it,
// and adds change (if not empty) to the ranges changed since its base;
// if that changes the record, it is written before markDirty returns,
// so before the caller's write reaches the data file. Caller holds e.mu,
// which keeps other metadata writes out.
func (c *Cache) markDirty(e *entry, mode uint32, change Range) error {
	if change.Len() > 0 && change.Off < e.streamed {
		e.streamBroken = true
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if e.removed {
		// Nothing of a detached entry is persisted any more.
		if mode != 0 {
			e.mode = mode
		}
		c.mu.Unlock()
		return nil
	}
	tracked, changed := e.tracked, e.changed
	if !e.dirty {
		// A clean copy is its version: what changes from here on is
		// what differs from it.
		tracked, changed = true, nil
	}
	if tracked && change.Len() > 0 && !covers(changed, change) {
		if changed, tracked = coalesce(addRange(changed, change), e.known, e.partial); !tracked {
			c.log.Debug().Stringer("key", e.key).Msg("changes too scattered to track: the next upload sends the whole file")
		}
	}
	if e.dirty && !e.durable && (mode == 0 || mode == e.mode) && tracked == e.tracked && slices.Equal(changed, e.changed) {
		c.mu.Unlock()
		return nil
	}
	was := e.diskState()
	wasPersisted, wasDirty, wasDurable, wasMode, wasBase := e.persisted, e.dirty, e.durable, e.mode, e.base
	wasTracked, wasChanged := e.tracked, e.changed
	if !e.dirty && e.base == "" && e.version != "" {
		// A clean copy about to be written was that peer's version:
		// that is what the writes start from (unless SetWriteBase or
		// Create said otherwise).
		e.base = e.version
	}
	c.setDirtyLocked(e, true)
	if mode != 0 {
		e.mode = mode
	}
	e.tracked, e.changed = tracked, changed
	e.persisted = true
	e.durable = false
	rec, key := e.record(), e.key
	c.mu.Unlock()
	// The record says "dirty, not durable" (boot-stamped). A process
	// crash keeps it in the page cache, and after a reboot the entry is
	// dropped — only Persist promises more. Leaving a durable record is
	// the exception, which writeRecord fsyncs before the data changes.
	if err := c.writeRecord(e, rec, false, was); err != nil {
		c.mu.Lock()
		c.setDirtyLocked(e, wasDirty)
		e.persisted, e.durable, e.mode, e.base = wasPersisted, wasDurable, wasMode, wasBase
		e.tracked, e.changed = wasTracked, wasChanged
		c.mu.Unlock()
		return fmt.Errorf("cache: mark %v dirty: %w", key, err)
	}
	return nil
}

// learnLocked records that a partial copy now holds rs (written, filled
// from its base, or zeros past a truncation); a copy that then holds
// everything is partial no more. It writes the record if that changes
// it. Caller holds e.mu.
func (c *Cache) learnLocked(e *entry, rs ...Range) error {
	c.mu.Lock()
	old := e.known
	for _, r := range rs {
		e.known = addRange(e.known, r)
	}
	if !e.partial || e.removed || slices.Equal(old, e.known) {
		e.known = old
		c.mu.Unlock()
		return nil
	}
	if covers(e.known, toEnd(0)) {
		e.partial, e.known = false, nil
	}
	rec, key, durable, was := e.record(), e.key, e.durable, e.diskState()
	persist := e.persisted
	c.mu.Unlock()
	if !persist {
		return nil
	}
	if err := c.writeRecord(e, rec, durable, was); err != nil {
		c.mu.Lock()
		e.partial, e.known = true, old
		c.mu.Unlock()
		return fmt.Errorf("cache: record what %v holds: %w", key, err)
	}
	return nil
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
	rec, key, was := e.record(), e.key, e.diskState()
	c.mu.Unlock()
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("cache: persist %v: %w", key, err)
	}
	if err := c.writeRecord(e, rec, true, was); err != nil {
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
// can restore it. Setting the mode already recorded writes nothing.
func (h *Handle) SetMode(mode uint32) error {
	return h.update("set mode", func(e *entry) (func(), bool) {
		old := e.mode
		e.mode = mode
		return func() { e.mode = old }, e.persisted && !e.removed && mode != old
	})
}

// update changes the entry's metadata in memory with change, called with
// e.mu and c.mu held, and rewrites its record (durably if it was durable)
// if change reports it must; if that fails, change's undo runs and the
// error is returned.
func (h *Handle) update(what string, change func(e *entry) (undo func(), write bool)) error {
	if h.released.Load() {
		return ErrClosed
	}
	e, c := h.e, h.c
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	undo, write := change(e)
	rec, key, durable, was := e.record(), e.key, e.durable, e.diskState()
	c.mu.Unlock()
	if !write {
		return nil
	}
	if err := c.writeRecord(e, rec, durable, was); err != nil {
		c.mu.Lock()
		undo()
		c.mu.Unlock()
		return fmt.Errorf("cache: %s of %v: %w", what, key, err)
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

// SetBase records base as the peer's version a dirty copy now starts from
// (Meta.Base): an upload stored the copy as of an earlier generation, and
// writes made since continue from what it stored. The record is rewritten
// (durably if it was durable) before SetBase returns. A clean entry is
// left alone: MarkClean made its version its base.
func (h *Handle) SetBase(base string) error {
	return h.update("set base", func(e *entry) (func(), bool) {
		if !e.dirty || e.removed || e.base == base {
			return func() {}, false
		}
		old := e.base
		e.base = base
		return func() { e.base = old }, e.persisted
	})
}

// SetSent records, with a dirty copy, the caller's note of the content of
// its last upload that failed but may have reached the peer (Meta.Sent),
// so that it survives a restart; "" clears it. MarkClean clears it too. A
// clean copy is left alone.
func (h *Handle) SetSent(sent string) error {
	return h.update("set sent", func(e *entry) (func(), bool) {
		if !e.dirty || e.removed || e.sent == sent {
			return func() {}, false
		}
		old := e.sent
		e.sent = sent
		return func() { e.sent = old }, e.persisted
	})
}

// SetWriteBase sets the base (Meta.Base) the first write to this clean
// copy records, where it is not the copy's own version. A dirty copy keeps
// the base it has. Nothing is written until that first write.
func (h *Handle) SetWriteBase(base string) {
	e, c := h.e, h.c
	c.mu.Lock()
	if !e.dirty && !e.removed {
		e.base = base
	}
	c.mu.Unlock()
}

// SettledGeneration is Generation once no write or truncation of the
// entry is in progress: a change that has already reached the data file
// (an uploader read the file short) is then counted.
func (h *Handle) SettledGeneration() uint64 {
	h.e.mu.Lock()
	defer h.e.mu.Unlock()
	return h.Generation()
}

// MarkClean is Cache.MarkClean for this Handle's entry. It reports false,
// and does nothing, if the entry was written since gen or was detached.
func (h *Handle) MarkClean(gen uint64, size int64, version string) (bool, error) {
	if h.released.Load() {
		return false, ErrClosed
	}
	h.e.mu.Lock()
	ok, err := h.c.markCleanLocked(h.e, gen, size, version)
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
