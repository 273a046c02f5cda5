package tracker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
)

// session runs one connection to the tracker at addr (register) and
// records the outcome of the registration attempt for WaitFirstAttempt.
func (t *Client) session(ctx context.Context, addr string) error {
	registered := false
	err := t.register(ctx, addr, func() { registered = true; t.attempted(nil) })
	if !registered {
		t.attempted(err)
	}
	return err
}

// register runs one connection: dial, register (then calling ok), then
// follow the tracker until the connection fails or ctx is done.
func (t *Client) register(ctx context.Context, addr string, ok func()) error {
	t.mu.Lock()
	t.addr = addr
	t.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	raw, err := t.dial(dctx, addr)
	cancel()
	if err != nil {
		t.setErr(err)
		return fmt.Errorf("connect to tracker %s: %w", addr, err)
	}
	// The socket, not the TLS layer, is closed: no close_notify that could
	// block on a tracker that does not read.
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	hs, err := t.handshake(raw, addr)
	if err != nil {
		return err
	}
	t.log.Info().Str("tracker", addr).Str("name", t.opts.Name).Int("port", t.opts.Port).Strs("features", hs.features).Msg("registered with tracker")
	return t.follow(ctx, hs, ok)
}

// handshaken is a connection on which the tracker said REGISTER OK.
type handshaken struct {
	nc       net.Conn
	r        *bufio.Reader
	features []string // the extensions the tracker serves on it
	extended bool     // the tracker answered FEATURES (so it ends rounds with SYNC END)
	told     bool     // with turns: it was told WRITES held
}

// handshake runs TLS and the membership proofs (with Options.Secure) on
// raw, then asks for the extensions this Client uses (FEATURES; with
// turns, WRITES), then REGISTER, and returns the connection to speak on
// once the tracker said REGISTER OK. A failure is recorded (setErr) as
// the tracker or the network put it, and returned with context.
func (t *Client) handshake(raw net.Conn, addr string) (handshaken, error) {
	hs := handshaken{nc: raw}
	if t.opts.Secure != nil {
		var err error
		if hs.nc, err = t.opts.Secure.Client(raw, t.opts.DialTimeout); err != nil {
			var re *secure.RefusedError
			if errors.As(err, &re) {
				// "REGISTER FAIL denied not a member of this cluster"
				if ev, perr := peerproto.ParseTrackerEvent([]byte(re.Line)); perr == nil {
					if r, ok := ev.(peerproto.Refusal); ok {
						err = r.Err
					}
				}
			}
			t.setErr(err)
			return hs, fmt.Errorf("connect to tracker %s: %w", addr, err)
		}
	}
	fail := func(err error) (handshaken, error) {
		t.setErr(err)
		return hs, fmt.Errorf("register: %w", err)
	}
	nc := hs.nc
	hs.r = bufio.NewReader(nc)
	_ = nc.SetDeadline(time.Now().Add(t.opts.DialTimeout))
	// ask sends m and returns the tracker's answer.
	ask := func(m peerproto.Message) (peerproto.Message, error) {
		if err := peerproto.WriteMessage(nc, m); err != nil {
			return nil, err
		}
		line, err := peerproto.ReadLine(hs.r)
		if err != nil {
			return nil, err
		}
		return peerproto.ParseTrackerEvent(line)
	}
	// Before REGISTER, so that the registration's list comes as asked.
	ev, err := ask(peerproto.Features{Words: t.wantedFeatures()})
	if err != nil {
		return fail(err)
	}
	if ok, isOK := ev.(peerproto.FeaturesOK); isOK {
		hs.features, hs.extended = ok.Words, true
	} else if r, isRefusal := ev.(peerproto.Refusal); isRefusal && r.Err.Code == peerproto.CodeDenied {
		// Not FEATURES refused but this client: a tracker that speaks
		// TLS only, or another cluster's, answers the first line with
		// the registration's refusal and closes the connection.
		return fail(r.Err)
	} else {
		// A tracker that predates FEATURES refuses it: none.
		t.log.Info().Str("tracker", addr).Msg("the tracker predates protocol extensions: full peer lists, a turn in every round, no LEFT (a peer that quits stays listed here as down)")
	}
	if hs.has(peerproto.FeatureTurns) {
		t.mu.Lock()
		hs.told = t.holdsLocked()
		t.mu.Unlock()
		if ev, err = ask(peerproto.Writes{Held: hs.told}); err != nil {
			return fail(err)
		}
		if _, ok := ev.(peerproto.WritesOK); !ok {
			return fail(fmt.Errorf("unexpected answer to WRITES: %s", peerproto.Format(ev)))
		}
	}
	if ev, err = ask(peerproto.Register{Name: t.opts.Name, Port: t.opts.Port}); err != nil {
		return fail(err)
	}
	switch ev := ev.(type) {
	case peerproto.RegisterOK:
	case peerproto.Refusal:
		return fail(ev.Err)
	default:
		return fail(fmt.Errorf("unexpected reply %q", peerproto.Format(ev)))
	}
	_ = nc.SetDeadline(time.Time{})
	return hs, nil
}

// wantedFeatures names the extensions this Client asks for: the peer
// list as deltas always, the others if its Handler uses them.
func (t *Client) wantedFeatures() []string {
	words := []string{peerproto.FeatureDeltas}
	if t.left != nil {
		words = append(words, peerproto.FeatureLeft)
	}
	if t.holds != nil {
		words = append(words, peerproto.FeatureTurns)
	}
	return words
}

func (hs handshaken) has(word string) bool {
	return peerproto.FeaturesOK{Words: hs.features}.Has(word)
}

// follow runs a registered connection: it starts its sender (which also
// sends the keepalive PINGs), calls ok, and reads the tracker's events
// until the connection fails or ctx is done.
func (t *Client) follow(ctx context.Context, hs handshaken, ok func()) error {
	nc, r := hs.nc, hs.r
	out := newSender(nc, t.opts.DialTimeout, t.opts.PingInterval, t.log)
	t.mu.Lock()
	if t.leaving {
		t.mu.Unlock()
		return errors.New("leaving")
	}
	t.out = out
	t.lastErr = nil
	t.writes.reset(hs.has(peerproto.FeatureTurns), hs.told)
	t.endsRounds, t.finished = hs.extended, false
	// A write that began while not registered told nobody: tell now.
	if t.writes.on && !t.writes.told && t.holdsLocked() {
		t.tellLocked(true)
	}
	t.bumpLocked()
	t.mu.Unlock()
	ok()
	if t.state != nil {
		t.state.RegistrationChanged(true)
	}
	defer t.lost(out)
	// Keepalive: the tracker drops a silent peer, and we notice a dead
	// tracker by its silence (it answers every PING).
	go out.run()
	defer out.stop()

	var list peerList
	for {
		_ = nc.SetReadDeadline(time.Now().Add(3 * t.opts.PingInterval))
		line, err := peerproto.ReadLine(r)
		if err != nil {
			t.setErr(err)
			return err
		}
		ev, err := peerproto.ParseTrackerEvent(line)
		if err != nil {
			t.log.Warn().Err(err).Msg("ignoring malformed line from tracker")
			continue
		}
		switch ev.(type) {
		case peerproto.Peers, peerproto.Joined, peerproto.Left, peerproto.Update:
		default:
			// Every other event comes after the list changes before it.
			t.publish(&list)
		}
		t.handle(ctx, out, &list, ev)
		if r.Buffered() == 0 {
			// A burst of changes (a join storm) is told at its end.
			t.publish(&list)
		}
	}
}

// publish tells the Handler the list, if it changed.
func (t *Client) publish(l *peerList) {
	peers, ok := l.take()
	if !ok {
		return
	}
	t.mu.Lock()
	t.peers = peers
	t.mu.Unlock()
	t.log.Debug().Int("peers", len(peers)).Msg("peer list")
	t.h.SetPeers(peers)
}

// setErr records why the client is not registered.
func (t *Client) setErr(err error) {
	t.mu.Lock()
	t.lastErr = err
	t.mu.Unlock()
}

// lost tears down the state of the registration over out, which ended.
func (t *Client) lost(out *sender) {
	t.mu.Lock()
	t.out = nil
	t.lostAt = time.Now()
	t.writes.reset(false, false)
	t.inRound, t.holding, t.requested = false, false, false
	t.bumpLocked()
	if t.cancelTurn != nil {
		t.cancelTurn()
		t.cancelTurn = nil
	}
	waiters := t.waiters
	t.waiters = nil
	t.mu.Unlock()
	for _, w := range waiters {
		w.done <- ErrDisconnected
	}
	if t.state != nil {
		t.state.RegistrationChanged(false)
	}
}

// handle acts on one event from the tracker, received over out's
// connection; l is the connection's peer list.
func (t *Client) handle(ctx context.Context, out *sender, l *peerList, ev peerproto.Message) {
	switch ev := ev.(type) {
	case peerproto.Update:
		l.update(ev.Peers)
	case peerproto.Peers:
		l.begin(ev.Count)
	case peerproto.Joined:
		l.joined(ev.Peer)
	case peerproto.Left:
		t.log.Debug().Str("peer", ev.Name).Str("how", ev.How).Msg("LEFT")
		if t.left != nil {
			t.left.PeerLeft(ev.Name, ev.Quit())
		}
		l.left(ev.Name) // a no-op unless the list comes as deltas
	case peerproto.SyncRead:
		t.mu.Lock()
		t.inRound = true
		t.bumpLocked()
		t.mu.Unlock()
		t.log.Debug().Msg("SYNC READ")
		t.h.SyncRead()
	case peerproto.SyncOK:
		t.granted(ctx, out)
	case peerproto.SyncEnd:
		t.mu.Lock()
		t.inRound, t.finished = false, false
		t.bumpLocked()
		t.round = ev.Round
		t.mu.Unlock()
		t.log.Debug().Uint64("round", ev.Round).Msg("SYNC END")
		t.h.SyncEnd(ev)
	case peerproto.WritesOK:
		t.writesAnswered()
	case peerproto.FeaturesOK:
	case peerproto.Refusal:
		t.refused(ev.Err)
	case peerproto.Pong:
	}
}

// granted starts our turn on SYNC OK over out's connection.
func (t *Client) granted(ctx context.Context, out *sender) {
	t.mu.Lock()
	if t.holding || t.finished {
		t.mu.Unlock()
		return // a repeated grant of the turn we are in, or that just ended
	}
	t.inRound, t.holding, t.requested = true, true, false
	t.bumpLocked()
	t.turnsBegun++
	turn := t.turnsBegun
	tctx, cancel := context.WithCancel(ctx)
	t.cancelTurn = cancel
	t.mu.Unlock()
	t.log.Debug().Uint64("turn", turn).Msg("SYNC OK: holding the write token")
	go t.runTurn(tctx, cancel, out, turn)
}

// refused acts on a refusal from the tracker.
func (t *Client) refused(fe *peerproto.FailError) {
	if fe.Verb == peerproto.VerbWrites {
		t.log.Warn().Err(fe).Msg("tracker refused WRITES")
		t.writesAnswered()
		return
	}
	t.log.Warn().Err(fe).Msg("tracker refused")
	if fe.Verb != peerproto.VerbSync {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch fe.Code {
	case peerproto.CodeExpired:
		if t.holding {
			t.holding = false
			t.bumpLocked()
			t.cancelTurn()
			t.cancelTurn = nil
			t.finishWaitersLocked(t.turnsBegun, ErrLeaseExpired)
			t.requestForWaitersLocked()
			return
		}
		// A grant this client never took (taken for a repeat of the
		// last one) ran out: the tracker forgot the request it
		// answered, so the callers still waiting ask again.
		t.requested = false
		t.requestForWaitersLocked()
	case peerproto.CodeState:
		t.requested = false
		t.requestForWaitersLocked()
	default:
		// The tracker could not take the request (a replica whose
		// store failed: SYNC FAIL io). No turn comes for it: the
		// waiters hear why, rather than wait for good.
		t.requested = false
		if t.holding {
			return // the turn in progress serves them, or asks again
		}
		err := fmt.Errorf("tracker: SYNC refused: %w", fe)
		for _, w := range t.waiters {
			w.done <- err
		}
		t.waiters = nil
	}
}

// runTurn runs the Handler's SyncTurn for our SYNC OK, then returns the
// token over out, the connection that granted it.
func (t *Client) runTurn(ctx context.Context, cancel context.CancelFunc, out *sender, turn uint64) {
	defer cancel()
	err := t.h.SyncTurn(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.holding || t.turnsBegun != turn || t.out != out {
		return // revoked or lost meanwhile; waiters were told
	}
	t.holding = false
	t.bumpLocked()
	t.cancelTurn = nil
	fin := peerproto.SyncFin{}
	if t.wrote != nil {
		fin.Known, fin.Wrote = true, t.wrote.TakeWrote()
	}
	out.send(fin)
	t.finished = t.endsRounds
	t.turnEndedLocked()
	t.log.Debug().Uint64("turn", turn).Err(err).Msg("SYNC FIN")
	t.finishWaitersLocked(turn, err)
	t.requestForWaitersLocked()
}

// requestForWaitersLocked asks for another turn when Sync callers are
// still waiting (they arrived during a turn that could not serve them).
// Called with t.mu held.
func (t *Client) requestForWaitersLocked() {
	if len(t.waiters) > 0 && !t.requested && !t.holding && t.out != nil {
		t.requested = true
		t.out.send(peerproto.Sync{})
	}
}

// finishWaitersLocked completes the waiters satisfied by turn. Called
// with t.mu held.
func (t *Client) finishWaitersLocked(turn uint64, err error) {
	t.waiters = slices.DeleteFunc(t.waiters, func(w *syncWaiter) bool {
		if w.after < turn {
			w.done <- err
			return true
		}
		return false
	})
}
