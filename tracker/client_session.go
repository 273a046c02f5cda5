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

// session runs one connection (register) and records the outcome of the
// registration attempt for WaitFirstAttempt.
func (t *Client) session(ctx context.Context) error {
	registered := false
	err := t.register(ctx, func() { registered = true; t.attempted(nil) })
	if !registered {
		t.attempted(err)
	}
	return err
}

// register runs one connection: dial, register (then calling ok), then
// follow the tracker until the connection fails or ctx is done.
func (t *Client) register(ctx context.Context, ok func()) error {
	dctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	raw, err := t.dial(dctx)
	cancel()
	if err != nil {
		t.setErr(err)
		return fmt.Errorf("connect to tracker %s: %w", t.opts.Addr, err)
	}
	// The socket, not the TLS layer, is closed: no close_notify that could
	// block on a tracker that does not read.
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	nc, r, err := t.handshake(raw)
	if err != nil {
		return err
	}
	t.log.Info().Str("name", t.opts.Name).Int("port", t.opts.Port).Msg("registered with tracker")
	return t.follow(ctx, nc, r, ok)
}

// handshake runs TLS and the membership proofs (with Options.Secure) on
// raw, then REGISTER, and returns the connection to speak on and its
// reader once the tracker said REGISTER OK. A failure is recorded
// (setErr) as the tracker or the network put it, and returned with
// context.
func (t *Client) handshake(raw net.Conn) (net.Conn, *bufio.Reader, error) {
	nc := raw
	if t.opts.Secure != nil {
		var err error
		if nc, err = t.opts.Secure.Client(raw, t.opts.DialTimeout); err != nil {
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
			return nil, nil, fmt.Errorf("connect to tracker %s: %w", t.opts.Addr, err)
		}
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		t.setErr(err)
		return nil, nil, fmt.Errorf("register: %w", err)
	}
	r := bufio.NewReader(nc)
	_ = nc.SetDeadline(time.Now().Add(t.opts.DialTimeout))
	if err := peerproto.WriteMessage(nc, peerproto.Register{Name: t.opts.Name, Port: t.opts.Port}); err != nil {
		return fail(err)
	}
	line, err := peerproto.ReadLine(r)
	if err != nil {
		return fail(err)
	}
	ev, err := peerproto.ParseTrackerEvent(line)
	if err != nil {
		return fail(err)
	}
	switch ev := ev.(type) {
	case peerproto.RegisterOK:
	case peerproto.Refusal:
		return fail(ev.Err)
	default:
		err := fmt.Errorf("register: unexpected reply %q", line)
		t.setErr(err)
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, r, nil
}

// follow runs a registered connection: it starts its sender (which also
// sends the keepalive PINGs), calls ok, and reads the tracker's events
// until the connection fails or ctx is done.
func (t *Client) follow(ctx context.Context, nc net.Conn, r *bufio.Reader, ok func()) error {
	out := newSender(nc, t.opts.DialTimeout, t.opts.PingInterval, t.log)
	t.mu.Lock()
	if t.leaving {
		t.mu.Unlock()
		return errors.New("leaving")
	}
	t.out = out
	t.lastErr = nil
	t.mu.Unlock()
	ok()
	if t.state != nil {
		t.state.RegistrationChanged(true)
	}
	defer t.lost(out)
	if t.left != nil {
		// Ask how peers leave; the answer comes with the events.
		out.send(peerproto.Features{Words: []string{peerproto.FeatureLeft}})
	}
	// Keepalive: the tracker drops a silent peer, and we notice a dead
	// tracker by its silence (it answers every PING).
	go out.run()
	defer out.stop()

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
		t.handle(ctx, out, ev)
	}
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
// connection.
func (t *Client) handle(ctx context.Context, out *sender, ev peerproto.Message) {
	switch ev := ev.(type) {
	case peerproto.Update:
		t.mu.Lock()
		t.peers = ev.Peers
		t.mu.Unlock()
		t.log.Debug().Int("peers", len(ev.Peers)).Msg("UPDATE")
		t.h.SetPeers(slices.Clone(ev.Peers))
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
		t.inRound = false
		t.bumpLocked()
		t.round = ev.Round
		t.mu.Unlock()
		t.log.Debug().Uint64("round", ev.Round).Msg("SYNC END")
		t.h.SyncEnd(ev)
	case peerproto.Left:
		t.log.Debug().Str("peer", ev.Name).Str("how", ev.How).Msg("LEFT")
		if t.left != nil {
			t.left.PeerLeft(ev.Name, ev.Quit())
		}
	case peerproto.FeaturesOK:
		if !ev.Has(peerproto.FeatureLeft) {
			t.log.Info().Msg("the tracker does not say how peers leave (no LEFT): a peer that quits stays listed here as down")
		}
	case peerproto.Refusal:
		t.refused(ev.Err)
	case peerproto.Pong:
	}
}

// granted starts our turn on SYNC OK over out's connection.
func (t *Client) granted(ctx context.Context, out *sender) {
	t.mu.Lock()
	if t.holding {
		t.mu.Unlock()
		return // a repeated grant of the turn we are in
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
	if fe.Verb == peerproto.VerbFeatures {
		t.log.Info().Err(fe).Msg("the tracker predates protocol extensions (no LEFT): a peer that quits stays listed here as down")
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
		}
	case peerproto.CodeState:
		t.requested = false
		t.requestForWaitersLocked()
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
