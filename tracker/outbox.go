package tracker

import "sync"

// maxPending bounds the bytes waiting for one connection's writer. It
// holds a full peer list (PEERS and MaxPeers JOINED lines of at most
// about 120 bytes) several times over; a peer further behind is not
// reading, and is dropped.
const maxPending = 8 << 20

// outbox holds the bytes queued for one connection until its writer
// takes them. Lines are appended whole, so the writer always takes
// whole lines, and a burst (a peer list, a join storm) costs its
// writer one wakeup and one Write, not one per line.
type outbox struct {
	wake chan struct{} // capacity 1: something was queued since the writer last looked

	mu   sync.Mutex // protects the field below
	buf  []byte     // queued bytes, whole lines
	over bool       // a put was refused: the connection is being dropped
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

// put queues line and reports whether it fit under maxPending. It never
// blocks.
func (o *outbox) put(line []byte) bool {
	o.mu.Lock()
	if o.over || len(o.buf)+len(line) > maxPending {
		o.over = true
		o.mu.Unlock()
		return false
	}
	o.buf = append(o.buf, line...)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return true
}

// take returns what is queued and leaves spare, emptied, in its place,
// so that two buffers serve a connection in turn.
func (o *outbox) take(spare []byte) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.buf
	o.buf = spare[:0]
	return b
}
