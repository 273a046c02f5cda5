package fusefs

import (
	"slices"
	"sync"

	bfs "bazil.org/fuse/fs"
)

// kernelCache drops what the kernel caches: the request server, which
// knows the kernel's NodeIDs. Each call returns nil where the kernel
// held nothing to drop.
type kernelCache interface {
	InvalidateEntry(parent bfs.Node, name string) error
	ExpireEntry(parent bfs.Node, name string) error
	InvalidateNodeAttr(n bfs.Node) error
	InvalidateNodeData(n bfs.Node) error
}

// watchEvent is one Store.Watch notification.
type watchEvent struct{ peer, dir string }

// invalidator turns Store.Watch notifications into kernel cache
// invalidations. The Watch callback only queues: an invalidation can block
// in the kernel on a directory lock held by a FUSE request in progress,
// and that request may be the very Store call that fired the callback.
// Its goroutine is owned by the Mount and stopped by stop.
type invalidator struct {
	fsys   *filesys
	kernel kernelCache
	wake   chan struct{} // buffered 1
	quit   chan struct{}
	done   chan struct{}

	mu      sync.Mutex // protects the fields below
	stopped bool
	pending map[watchEvent]struct{}
	// entries are the changes EntryWatcher reported, the last of each
	// name, Replaced if any of them was; waiting counts them by peer.
	entries map[nodeKey]EntryChange
	waiting map[string]int
	peers   []string // the peer list at the last root invalidation
}

func newInvalidator(f *filesys, kernel kernelCache) *invalidator {
	inv := &invalidator{
		fsys:    f,
		kernel:  kernel,
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		pending: map[watchEvent]struct{}{},
		entries: map[nodeKey]EntryChange{},
		waiting: map[string]int{},
		peers:   f.store.Peers(),
	}
	go inv.run()
	return inv
}

// enqueue is the Store.Watch callback; it never blocks.
func (inv *invalidator) enqueue(peer, dir string) {
	inv.mu.Lock()
	if inv.stopped {
		inv.mu.Unlock()
		return
	}
	inv.pending[watchEvent{peer, dir}] = struct{}{}
	inv.mu.Unlock()
	select {
	case inv.wake <- struct{}{}:
	default:
	}
}

// maxEntryChanges bounds the names whose invalidations wait
// (invalidator.entries).
const maxEntryChanges = 4096

// enqueueEntry is the EntryWatcher callback; it never blocks.
func (inv *invalidator) enqueueEntry(ch EntryChange) {
	inv.mu.Lock()
	if inv.stopped {
		inv.mu.Unlock()
		return
	}
	k := nodeKey{ch.Peer, ch.Path}
	was, ok := inv.entries[k]
	switch {
	case !ok && inv.waiting[ch.Peer] >= maxEntryChanges:
		// Many of its names wait (an invalidation is held up in the
		// kernel, a tree removed on the peer): the peer's whole
		// folder goes at once instead.
		inv.pending[watchEvent{ch.Peer, ""}] = struct{}{}
		for ek := range inv.entries {
			if ek.peer == ch.Peer {
				delete(inv.entries, ek)
			}
		}
		delete(inv.waiting, ch.Peer)
	default:
		ch.Replaced = ch.Replaced || ok && was.Replaced
		inv.entries[k] = ch
		if !ok {
			inv.waiting[ch.Peer]++
		}
	}
	inv.mu.Unlock()
	select {
	case inv.wake <- struct{}{}:
	default:
	}
}

// stop ends the goroutine and makes later callbacks no-ops (Store has no
// way to unregister).
func (inv *invalidator) stop() {
	inv.mu.Lock()
	already := inv.stopped
	inv.stopped = true
	inv.mu.Unlock()
	if !already {
		close(inv.quit)
	}
	<-inv.done
}

func (inv *invalidator) run() {
	defer close(inv.done)
	for {
		select {
		case <-inv.quit:
			return
		case <-inv.wake:
		}
		inv.mu.Lock()
		events, entries := inv.pending, inv.entries
		inv.pending, inv.entries = map[watchEvent]struct{}{}, map[nodeKey]EntryChange{}
		clear(inv.waiting)
		inv.mu.Unlock()
		for ev := range events {
			inv.apply(ev)
		}
		inv.applyEntries(entries)
	}
}

// apply invalidates what one event covers. The name table finds what to
// invalidate under its lock; the invalidations are sent without it.
func (inv *invalidator) apply(ev watchEvent) {
	f := inv.fsys
	f.log.Debug().Str("op", "watch").Str("peer", ev.peer).Str("path", ev.dir).Msg("invalidate")
	if ev.peer == "" {
		now := f.store.Peers()
		inv.mu.Lock()
		names := append(slices.Clone(inv.peers), now...)
		inv.peers = now
		inv.mu.Unlock()
		f.names.dropPeersGone(names, now)
		slices.Sort(names)
		for _, name := range slices.Compact(names) {
			inv.entry(f.root, name)
		}
		return
	}
	entries, data, attrs := f.names.stale(ev.peer, ev.dir)
	for _, e := range entries {
		inv.entry(e.parent, e.name)
	}
	for _, n := range data {
		inv.check("InvalidateNodeData", inv.kernel.InvalidateNodeData(n))
	}
	for _, n := range attrs {
		inv.check("InvalidateNodeAttr", inv.kernel.InvalidateNodeAttr(n))
	}
}

// applyEntries invalidates what the kernel caches of names another
// writer changed (EntryWatcher, nameTable.staleName): an entry where the
// name was made, removed or replaced, a file's cached pages and
// attributes, another node's attributes; and its directory's attributes,
// once per directory.
func (inv *invalidator) applyEntries(chs map[nodeKey]EntryChange) {
	f := inv.fsys
	data, attrs := map[bfs.Node]bool{}, map[bfs.Node]bool{}
	for _, ch := range chs {
		f.log.Debug().Str("op", "watch").Str("peer", ch.Peer).Str("path", ch.Path).Bool("gone", ch.Gone).Bool("replaced", ch.Replaced).Msg("invalidate")
		entries, d, a, nodes := f.names.staleName(ch)
		for _, n := range nodes {
			n.forgetAttrs()
		}
		for _, e := range entries {
			if e.expire {
				inv.check("ExpireEntry", inv.kernel.ExpireEntry(e.parent, e.name))
			} else {
				inv.entry(e.parent, e.name)
			}
		}
		for _, n := range d {
			data[n] = true
		}
		for _, n := range a {
			attrs[n] = true
		}
	}
	for n := range data {
		inv.check("InvalidateNodeData", inv.kernel.InvalidateNodeData(n))
	}
	for n := range attrs {
		inv.check("InvalidateNodeAttr", inv.kernel.InvalidateNodeAttr(n))
	}
}

func (inv *invalidator) entry(parent bfs.Node, name string) {
	inv.check("InvalidateEntry", inv.kernel.InvalidateEntry(parent, name))
}

// check logs a failed invalidation.
func (inv *invalidator) check(op string, err error) {
	if err != nil {
		inv.fsys.log.Debug().Err(err).Str("op", op).Msg("invalidate")
	}
}
