package cache

import (
	"errors"
	"fmt"
	"strings"
)

// Removing and renaming entries: the cache follows the namespace
// changes its mount makes.

// Remove drops key's entry, dirty or not, because the file was deleted.
// Handles pinning it keep an unlinked copy. Removing a key with no entry
// is not an error.
func (c *Cache) Remove(key Key) error {
	e, err := c.lockEntry(key)
	if err != nil || e == nil {
		return err
	}
	c.removeLocked(e)
	e.mu.Unlock()
	return nil
}

// removeLocked detaches e and deletes its files, or has removeLoop do
// it. Caller holds e.mu.
//
// Eviction and the replacement of a stale copy detach entries without
// e.mu, so e may have been detached since the caller found it; whoever
// did that discards its files. Discarding them a second time would queue
// e twice, and removeLoop could then empty (or unlink) its files again
// after a new entry had taken them as a spare.
func (c *Cache) removeLocked(e *entry) {
	c.mu.Lock()
	if e.removed {
		c.mu.Unlock()
		return
	}
	c.detachLocked(e)
	queued := c.queueRemovalLocked(e) // removeLoop waits for e.mu
	c.mu.Unlock()
	if !queued {
		c.removeFiles(e.id)
	}
}

// Rename moves the entry of from, and every entry whose path lies under
// from.Path + "/" on from.Peer, to the corresponding key under to, as a
// rename of a file or directory does. An entry already cached at a
// destination key is dropped, as the rename replaces that file; so is an
// entry cached at to even if nothing is cached at from. Pinning Handles
// follow the moved entries.
func (c *Cache) Rename(from, to Key) error {
	if from == to {
		return nil
	}
	c.renameMu.Lock()
	defer c.renameMu.Unlock()

	type move struct {
		e        *entry
		from, to Key
	}
	var moves []move
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	var replaced *entry
	if e := c.entries[from]; e != nil {
		moves = append(moves, move{e, from, to})
	} else if t := c.entries[to]; t != nil {
		c.detachLocked(t)
		replaced = t
	}
	// Only entries under from need the scan: a file's rename (an
	// editor's or rsync's, rename after rename) costs none.
	if c.under[from] > 0 {
		prefix := from.Path + "/"
		for k, e := range c.entries {
			if k.Peer == from.Peer && strings.HasPrefix(k.Path, prefix) {
				moves = append(moves, move{e, k, Key{to.Peer, to.Path + "/" + k.Path[len(prefix):]}})
			}
		}
	}
	c.mu.Unlock()
	c.discard(replaced)

	var errs []error
	for _, m := range moves {
		errs = append(errs, c.move(m.e, m.from, m.to))
	}
	return errors.Join(errs...)
}

// move renames one entry. Caller holds c.renameMu.
func (c *Cache) move(e *entry, from, to Key) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	if e.removed || e.key != from {
		c.mu.Unlock()
		return nil
	}
	target := c.entries[to]
	c.detachLocked(target)
	delete(c.entries, from)
	c.countUnderLocked(from, -1)
	e.key = to
	c.entries[to] = e
	c.countUnderLocked(to, 1)
	rec, persist, durable, was := e.record(), e.persisted, e.durable, e.diskState()
	c.mu.Unlock()
	// Delete the replaced entry before recording the new key, so that the
	// disk never holds two entries for one key. Holding two entry locks
	// is safe under renameMu.
	c.discard(target)
	if persist {
		if err := c.writeRecord(e, rec, durable, was); err != nil {
			return fmt.Errorf("cache: rename %v to %v: %w", from, to, err)
		}
	}
	return nil
}
