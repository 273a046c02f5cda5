package cache

import (
	"errors"
	"fmt"
)

// ErrKeyInUse is returned by Park and Unpark when the key to move to
// already has an entry.
var ErrKeyInUse = errors.New("cache: key in use")

// Park sets this Handle's dirty entry aside: it moves it to key to (which
// must have no entry), records why (reason, Meta.Parked) and the key it
// had (Meta.Origin), and makes data and record durable, as Persist does.
// A parked entry is never evicted and stays parked across restarts until
// Unpark or Remove; the cache does nothing else with the note.
func (h *Handle) Park(to Key, reason string) error {
	return h.relocate(to, func(e *entry) {
		if e.parked == "" {
			e.origin = e.key
		}
		e.parked = reason
	}, true)
}

// Unpark moves this Handle's parked entry to key to (which must have no
// entry), clearing its note: it is an ordinary dirty entry again.
func (h *Handle) Unpark(to Key) error {
	return h.relocate(to, func(e *entry) { e.parked, e.origin = "", Key{} }, false)
}

// relocate moves h's dirty entry to to, applies note, and rewrites its
// record (durably, with its data, if durable).
func (h *Handle) relocate(to Key, note func(*entry), durable bool) error {
	if h.released.Load() {
		return ErrClosed
	}
	c, e := h.c, h.e
	c.renameMu.Lock()
	defer c.renameMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	from := e.key
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case e.removed:
		c.mu.Unlock()
		return fmt.Errorf("cache: move %v: %w", from, ErrNotCached)
	case !e.dirty:
		c.mu.Unlock()
		return fmt.Errorf("cache: move %v: not a dirty entry", from)
	case from != to && c.entries[to] != nil:
		c.mu.Unlock()
		return fmt.Errorf("cache: move %v to %v: %w", from, to, ErrKeyInUse)
	}
	oldParked, oldOrigin := e.parked, e.origin
	note(e)
	c.rekeyLocked(e, to)
	durable = durable || e.durable
	rec, was := e.record(), e.diskState()
	c.mu.Unlock()
	err := error(nil)
	if durable {
		err = h.f.Sync()
	}
	if err == nil {
		err = c.writeRecord(e, rec, durable, was)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		e.parked, e.origin = oldParked, oldOrigin
		c.rekeyLocked(e, from)
		return fmt.Errorf("cache: move %v to %v: %w", from, to, err)
	}
	e.persisted = true
	e.durable = durable
	return nil
}

// rekeyLocked moves entry e to key to, which has no entry. Caller holds
// c.mu.
func (c *Cache) rekeyLocked(e *entry, to Key) {
	if e.key == to {
		return
	}
	delete(c.entries, e.key)
	c.countUnderLocked(e.key, -1)
	e.key = to
	c.entries[to] = e
	c.countUnderLocked(to, 1)
}
