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
		events := inv.pending
		inv.pending = map[watchEvent]struct{}{}
		inv.mu.Unlock()
		for ev := range events {
			inv.apply(ev)
		}
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

func (inv *invalidator) entry(parent bfs.Node, name string) {
	inv.check("InvalidateEntry", inv.kernel.InvalidateEntry(parent, name))
}

// check logs a failed invalidation.
func (inv *invalidator) check(op string, err error) {
	if err != nil {
		inv.fsys.log.Debug().Err(err).Str("op", op).Msg("invalidate")
	}
}
