package remote

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peerproto"
)

// The queues of namespace operations written behind (behind.go), by
// peer: what waits,
// which names it hides, and the outcomes of the sender's attempts.

// behind holds the namespace operations acknowledged here and not yet
// carried out on their peers, by peer. It is safe for concurrent use; mu
// is a leaf (nothing else is locked, no I/O is done, while it is held).
type behind struct {
	journal *cache.Journal // read-only
	now     func() time.Time
	ttl     time.Duration // how long a carried-out removal stays hidden (AttrTTL)
	closed  chan struct{} // closed by close: waits end

	// pushMu is held from an operation's journal Append to its place in
	// its queue, across the journal's write: queues are in sequence
	// order, as the journal replays them (wait counts on it).
	pushMu sync.Mutex

	mu     sync.Mutex          // protects the fields below and every nsQueue
	queues map[string]*nsQueue // by peer name
}

// nsQueue is one peer's part of behind. Guarded by behind.mu.
type nsQueue struct {
	ops []*nsOp // pending, in order; only the sender removes from the front
	// hidden are the paths removed here: while their operation is
	// pending (zero time), and after it until the time given, so that a
	// listing the peer gave before it was carried out does not bring the
	// name back.
	hidden map[string]time.Time
	// sending is set while a sender goroutine runs for the peer.
	sending bool
	// kick wakes the sender from its wait between attempts, or from its
	// linger (buffered 1).
	kick chan struct{}
	// waiters counts the callers of wait that wait for the queue: while
	// there are any the sender does not linger.
	waiters int
	// changed is closed (and replaced) at each end of an attempt.
	changed chan struct{}
	// attempts counts the sender's attempts that ended; lastErr is the
	// last one's failure to reach the peer, nil after a success.
	attempts uint64
	lastErr  error
	// refused holds refusals not yet reported by an fsync or SYNC turn.
	refused []error
	// syncUntil: until then the peer's unlinks and rmdirs are not
	// written behind (a refusal came recently).
	syncUntil time.Time
	// sweptAt is when hidden was last swept of names past their time.
	sweptAt time.Time
	// stale counts the operations among ops that make what the peer
	// says out of date until they are carried out (outdates): while
	// there are any, every request to the peer waits for the queue
	// (moving). A rename (the peer has the old file at the new name), a
	// mkdir (the peer has no such directory), a setattr (the peer shows
	// the old mode or times).
	stale int
	// named counts the pending ops naming each path (a rename names
	// two): names asks it at each answer tied to a guess of times
	// (attrs_times.go), without a scan of ops (chmod -R of a big tree
	// queues thousands).
	named map[string]int
	// namedIn counts them by the directory of the path they name.
	namedIn map[string]int
}

// sweepHidden is how many hidden names a queue keeps before it sweeps
// those past their time (at most once per AttrTTL).
const sweepHidden = 4096

// nsOp is an operation waiting in a queue.
type nsOp struct {
	cache.NamespaceOp
	// replayed is set for an operation found in the journal at start:
	// it was acknowledged by an earlier run, and a DELETE of it is
	// carried out only if the file is still the version removed then.
	replayed bool
}

func newBehind(j *cache.Journal, ttl time.Duration, now func() time.Time) *behind {
	return &behind{journal: j, now: now, ttl: ttl, queues: map[string]*nsQueue{}, closed: make(chan struct{})}
}

// queueLocked returns peer's queue, made if needed. Called with b.mu held.
func (b *behind) queueLocked(peer string) *nsQueue {
	q := b.queues[peer]
	if q == nil {
		q = &nsQueue{hidden: map[string]time.Time{}, named: map[string]int{}, namedIn: map[string]int{}, kick: make(chan struct{}, 1), changed: make(chan struct{})}
		b.queues[peer] = q
	}
	return q
}

// allowed reports whether peer's unlinks and rmdirs may be written
// behind now (no refusal recently).
func (b *behind) allowed(peer string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[peer]
	return q == nil || !b.now().Before(q.syncUntil)
}

// push journals op and queues it, hiding its path. It reports whether
// the caller must start the peer's sender.
func (b *behind) push(op cache.NamespaceOp, replayed bool) (start bool, err error) {
	b.pushMu.Lock()
	defer b.pushMu.Unlock()
	if !replayed {
		if op, err = b.journal.Append(op); err != nil {
			return false, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queueLocked(op.Peer)
	q.ops = append(q.ops, &nsOp{NamespaceOp: op, replayed: replayed})
	switch op.Op {
	case cache.OpDelete, cache.OpRmdir, cache.OpRename:
		q.hidden[op.Path] = time.Time{}
	case cache.OpMkdir:
		// A name made again: shown, whatever was removed there before.
		delete(q.hidden, op.Path)
	}
	if op.Op == cache.OpRename {
		// The new name holds the moved file: shown, whatever was
		// removed there before.
		delete(q.hidden, op.To)
	}
	if outdates(op.Op) {
		q.stale++
	}
	q.nameLocked(op.Path)
	if op.To != "" {
		q.nameLocked(op.To)
	}
	start = !q.sending
	q.sending = true
	return start, nil
}

// hides reports whether path on peer, or a directory above it, was
// removed here (pending, or carried out moments ago).
func (b *behind) hides(peer, path string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[peer]
	if q == nil || len(q.hidden) == 0 {
		return false
	}
	now := b.now()
	for p := path; ; p = parent(p) {
		if q.hiddenLocked(p, now) {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// hiddenLocked reports whether path itself (not a directory above it) is
// hidden at now, dropping a hiding past its time. Called with behind.mu
// held.
func (q *nsQueue) hiddenLocked(path string, now time.Time) bool {
	until, ok := q.hidden[path]
	if !ok {
		return false
	}
	if until.IsZero() || now.Before(until) {
		return true
	}
	delete(q.hidden, path)
	return false
}

// visible returns the entries of directory dir on peer that were not
// removed here; entries itself if none was. One look at dir and the
// directories above it, then one per entry, under one lock: it runs for
// every listing.
func (b *behind) visible(peer, dir string, entries []peerproto.Entry) []peerproto.Entry {
	if b.hides(peer, dir) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[peer]
	if q == nil || len(q.hidden) == 0 {
		return entries
	}
	now := b.now()
	out := entries[:0:0]
	for _, e := range entries {
		if !q.hiddenLocked(child(dir, e.Name), now) {
			out = append(out, e)
		}
	}
	return out
}

// names reports whether a pending operation for peer names path (or,
// with in, an entry of directory path): it is queued, or on its way.
func (b *behind) names(peer, path string, in bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[peer]
	return q != nil && (q.named[path] > 0 || in && q.namedIn[path] > 0)
}

// nameLocked counts one more pending operation naming path (named) and
// an entry of its directory (namedIn). Called with behind.mu held.
func (q *nsQueue) nameLocked(path string) {
	q.named[path]++
	q.namedIn[parent(path)]++
}

// unname drops one pending operation's count of path. Called with
// behind.mu held.
func (q *nsQueue) unname(path string) {
	if q.named[path]--; q.named[path] <= 0 {
		delete(q.named, path)
	}
	d := parent(path)
	if q.namedIn[d]--; q.namedIn[d] <= 0 {
		delete(q.namedIn, d)
	}
}

// outdates reports whether an operation of kind op, while it waits,
// makes what its peer says out of date (nsQueue.stale).
func outdates(op string) bool {
	return op == cache.OpRename || op == cache.OpMkdir || op == cache.OpSetattr
}

// moving reports whether a rename, mkdir or setattr waits for peer: what
// the peer says of its names is out of date until it is carried out.
func (b *behind) moving(peer string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[peer]
	return q != nil && q.stale > 0
}

// pending reports whether any operation waits for a peer this mount
// knows (a queue parked for a peer that left does not count: it waits
// for its return, not for a turn).
func (b *behind) pending() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range b.queues {
		if len(q.ops) > 0 && q.sending {
			return true
		}
	}
	return false
}

// errBehindClosed ends the waits of a Store that closed.
var errBehindClosed = errors.New("remote: closed with changes written behind pending (they stay in the journal)")

// close ends every wait; what is queued stays in the journal.
func (b *behind) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.closed:
	default:
		close(b.closed)
	}
}

// settleAll is settle for every peer (a SYNC round's invalidation: what
// the peers have now is what counts).
func (b *behind) settleAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range b.queues {
		for p, until := range q.hidden {
			if !until.IsZero() {
				delete(q.hidden, p)
			}
		}
	}
}

// pendingFor returns how many operations wait for peer.
func (b *behind) pendingFor(peer string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.queues[peer]; q != nil {
		return len(q.ops)
	}
	return 0
}

// pendingAll returns how many operations wait, for all peers.
func (b *behind) pendingAll() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, q := range b.queues {
		n += len(q.ops)
	}
	return n
}

// peersPending returns the peers with operations waiting.
func (b *behind) peersPending() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for name, q := range b.queues {
		if len(q.ops) > 0 {
			out = append(out, name)
		}
	}
	return out
}

// wait returns once every operation queued for peer before the call is
// carried out (or given up): nil, or the failure of the sender's next
// attempt to reach the peer, or ctx's error. It wakes a sender waiting
// between attempts.
func (b *behind) wait(ctx context.Context, peer string) error {
	b.mu.Lock()
	q := b.queues[peer]
	if q == nil || len(q.ops) == 0 {
		b.mu.Unlock()
		return nil
	}
	last := q.ops[len(q.ops)-1].Seq
	began := q.attempts
	q.waiters++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		q.waiters--
		b.mu.Unlock()
	}()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	for {
		b.mu.Lock()
		if len(q.ops) == 0 || q.ops[0].Seq > last {
			b.mu.Unlock()
			return nil
		}
		if q.attempts > began && q.lastErr != nil {
			err := q.lastErr
			b.mu.Unlock()
			return err
		}
		if !q.sending {
			// Parked (stopSending): its peer is not known now.
			b.mu.Unlock()
			return errNoPeer
		}
		ch := q.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.closed:
			return errBehindClosed
		}
	}
}

// settle drops the hiding of peer's carried-out removals: called when
// this mount is about to change the peer's export otherwise, which may
// bring a removed name back (a file created again). It returns their
// paths, whose cached listings are out of date for the same reason.
func (b *behind) settle(peer string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[peer]
	if q == nil {
		return nil
	}
	var out []string
	for p, until := range q.hidden {
		if !until.IsZero() {
			delete(q.hidden, p)
			out = append(out, p)
		}
	}
	return out
}

// lingers reports whether peer's sender should wait a moment for more
// operations before it sends: its queue holds fewer than n, and nobody
// waits for them (wait), and nothing in it holds the peer's other
// requests (moving).
func (b *behind) lingers(peer string, n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queueLocked(peer)
	return len(q.ops) > 0 && len(q.ops) < n && q.waiters == 0 && q.stale == 0
}

// head returns up to n operations from the front of peer's queue; none
// ends the sender (sending is cleared with the lock held, so a push after
// it starts a new one).
func (b *behind) head(peer string, n int) []*nsOp {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queueLocked(peer)
	if len(q.ops) == 0 {
		q.sending = false
		return nil
	}
	return append([]*nsOp(nil), q.ops[:min(n, len(q.ops))]...)
}

// errGivenUp is the outcome of an operation not carried out on purpose
// (giveUp): its name shows again, and nobody is told of an error.
var errGivenUp = errors.New("remote: removal given up")

// finished records the outcome of the sender's attempt: the first
// len(outs) operations of the front are done (nil: carried out,
// errGivenUp, or a refusal), and err is why the attempt stopped there, if
// it did.
func (b *behind) finished(peer string, ops []*nsOp, outs []error, err error) {
	seqs := make([]uint64, 0, len(outs))
	for _, op := range ops[:len(outs)] {
		seqs = append(seqs, op.Seq)
	}
	jerr := b.journal.Done(seqs...)
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queueLocked(peer)
	now := b.now()
	for i, out := range outs {
		op := ops[i]
		if outdates(op.Op) {
			q.stale--
		}
		q.unname(op.Path)
		if op.To != "" {
			q.unname(op.To)
		}
		switch {
		case op.Op == cache.OpMkdir || op.Op == cache.OpSetattr:
			if out != nil && !errors.Is(out, errGivenUp) {
				q.refused = append(q.refused, out)
				q.syncUntil = now.Add(syncAfterRefusal)
			}
			if op.Op == cache.OpMkdir && out != nil {
				// The directory was not made: a chmod or utimes
				// queued for it is checked before it goes (giveUp),
				// as if replayed: the name may hold another writer's
				// file, which it must not change.
				for _, later := range q.ops[len(outs):] {
					if later.Dir && later.Path == op.Path {
						later.replayed = true
					}
				}
			}
		case errors.Is(out, errGivenUp):
			delete(q.hidden, op.Path)
		case out != nil:
			delete(q.hidden, op.Path)
			q.refused = append(q.refused, out)
			q.syncUntil = now.Add(syncAfterRefusal)
		default:
			if _, ok := q.hidden[op.Path]; ok {
				q.hidden[op.Path] = now.Add(b.ttl)
			}
		}
	}
	q.ops = q.ops[len(outs):]
	if len(q.hidden) > sweepHidden && now.After(q.sweptAt.Add(b.ttl)) {
		// Past their time, hidden names are dropped when looked up;
		// those never looked up again (rm -r of a big tree) go here.
		for p, until := range q.hidden {
			if !until.IsZero() && !now.Before(until) {
				delete(q.hidden, p)
			}
		}
		q.sweptAt = now
	}
	if jerr != nil && !errors.Is(jerr, cache.ErrClosed) && err == nil {
		err = jerr
	}
	q.attempts++
	q.lastErr = err
	close(q.changed)
	q.changed = make(chan struct{})
}

// takeRefused returns the refusals not reported yet, and forgets them.
func (b *behind) takeRefused() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []error
	for _, q := range b.queues {
		out = append(out, q.refused...)
		q.refused = nil
	}
	return out
}

// idle returns the peers whose queue waits with no sender (stopSending).
func (b *behind) idle() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for name, q := range b.queues {
		if len(q.ops) > 0 && !q.sending {
			out = append(out, name)
		}
	}
	return out
}

// resume reports whether peer's queue waits with no sender, and marks it
// as having one: the caller starts it.
func (b *behind) resume(peer string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[peer]
	if q == nil || len(q.ops) == 0 || q.sending {
		return false
	}
	q.sending = true
	return true
}

// stopSending ends peer's sender while operations wait: its peer is not
// known now (it left, or was forgotten). resume starts another.
func (b *behind) stopSending(peer string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queueLocked(peer).sending = false
}

// unsure marks ops, sent in an attempt that failed before their answers
// came, as of unknown outcome: they are checked before they go again, as
// replayed ones are (a RENAME carried out twice moves the wrong file).
func (b *behind) unsure(ops []*nsOp) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, op := range ops {
		op.replayed = true
	}
}

// kicker returns the channel that wakes peer's sender.
func (b *behind) kicker(peer string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queueLocked(peer).kick
}
