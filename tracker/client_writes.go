package tracker

import (
	"context"
	"sync"

	"github.com/peerfs/peerfs/peerproto"
)

// writesState is what the tracker was told of this peer's writes on the
// current connection (FEATURES turns), part of Client and guarded by its
// mu. Each WRITES line is answered by WRITES OK in order, so counting
// lines sent and answers received tells which the tracker acts on.
type writesState struct {
	on    bool   // the tracker serves turns on this connection
	told  bool   // the tracker takes this peer to hold writes
	sent  uint64 // WRITES lines sent on this connection
	acked uint64 // their answers received
	held  uint64 // the number (sent) of the WRITES held that set told
	// acks is closed (and replaced) at each answer.
	acks chan struct{}
}

// reset starts the count for a new connection; on says whether its
// tracker serves turns and told what it was told before REGISTER.
func (w *writesState) reset(on, told bool) {
	if w.acks != nil {
		close(w.acks) // waiters on the old connection look again
	}
	*w = writesState{on: on, told: told, acks: make(chan struct{})}
}

// NoteWrites tells the tracker that this peer holds writes the others
// must see, before it stores the first of them: a round that starts
// later gives it a turn. It sends "WRITES held" unless the tracker was
// told already (since this peer's last turn). The function it returns
// waits until the tracker has answered, the connection is lost, or ctx
// ends; a caller runs its write meanwhile and waits before it returns
// success, so that every round the tracker starts after that success
// covers the write. Until that function returns, the write counts as
// held: a turn that ends meanwhile (its SYNC FIN ends the holding at the
// tracker) is followed by "WRITES held" again, and the function waits
// for that one's answer too. It must be called, once. Without a
// registration, or with a tracker that does not serve turns (every
// round gives this peer a turn), there is nothing to tell and nothing
// to wait for.
func (t *Client) NoteWrites() (wait func(context.Context)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writing++
	var once sync.Once
	done := func() {
		once.Do(func() {
			t.mu.Lock()
			t.writing--
			t.mu.Unlock()
		})
	}
	if t.out == nil || !t.writes.on {
		return func(context.Context) { done() }
	}
	if !t.writes.told {
		t.tellLocked(true)
	}
	out := t.out
	return func(ctx context.Context) {
		defer done()
		t.waitAck(ctx, out)
	}
}

// WritesAnswered reports whether the tracker has answered every WRITES
// line this peer sent it on the current connection: what it was told of
// this peer's writes is what rounds it starts from now on act on. (A
// WRITES held sent after a turn, for a peer still holding writes, may be
// read by the tracker after a round another peer starts at once.)
func (t *Client) WritesAnswered() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.writes.acked == t.writes.sent
}

// holdsLocked reports whether this peer holds writes: a write noted
// is in progress, or its Handler says so.
func (t *Client) holdsLocked() bool {
	return t.writing > 0 || t.holds.HoldsWrites()
}

// tellLocked sends WRITES held or none and records it.
func (t *Client) tellLocked(held bool) {
	t.writes.sent++
	t.writes.told = held
	if held {
		t.writes.held = t.writes.sent
	}
	t.out.send(peerproto.Writes{Held: held})
}

// waitAck waits until the last WRITES held sent over out is answered,
// out is lost, or ctx ends. It looks at the last one each time, not the
// one sent when the write was noted: a turn that ended meanwhile made
// the tracker forget that one, and the WRITES held sent after it is the
// one a round must see.
func (t *Client) waitAck(ctx context.Context, out *sender) {
	for {
		t.mu.Lock()
		if t.out != out || t.writes.acked >= t.writes.held {
			t.mu.Unlock()
			return
		}
		acks := t.writes.acks
		t.mu.Unlock()
		select {
		case <-acks:
		case <-ctx.Done():
			return
		}
	}
}

// writesAnswered counts an answer to a WRITES line: WRITES OK, or a
// refusal (which changes nothing, but must not keep anyone waiting).
func (t *Client) writesAnswered() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writes.acked++
	close(t.writes.acks)
	t.writes.acks = make(chan struct{})
}

// turnEndedLocked updates what the tracker knows after this peer's SYNC
// FIN, which ended its holding there: if a noted write is still in
// progress, or the Handler still holds writes (one started during the
// turn, or an upload failed), the tracker is told again. Called with t.mu held, after the SYNC FIN was queued.
func (t *Client) turnEndedLocked() {
	if !t.writes.on {
		return
	}
	t.writes.told = false
	if t.holdsLocked() {
		t.tellLocked(true)
	}
}
