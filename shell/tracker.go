package shell

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// firstUpdateWait bounds how long register waits for the UPDATE that
// follows REGISTER OK, to print the peer list with its outcome.
const firstUpdateWait = time.Second

// trackerRun is one registration: a tracker client and the goroutine
// running it, which the shell owns and stops. It is the client's Handler:
// it prints what the tracker says.
type trackerRun struct {
	s           *shell
	addr        string
	tc          *tracker.Client
	cancel      context.CancelFunc
	done        chan struct{} // closed when Run has returned
	firstUpdate chan struct{} // closed at the first UPDATE

	mu        sync.Mutex // protects the fields below
	announced bool       // register printed its outcome: events now print as notices
	stopping  bool       // being stopped: events are no longer of interest
	gotUpdate bool
	syncing   bool // a sync command waits for its turn
}

// quiet reports whether tracker events should go unprinted.
func (r *trackerRun) quiet() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.announced || r.stopping
}

// stop ends the registration and waits for the client to stop.
func (r *trackerRun) stop() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	r.cancel()
	<-r.done
}

// stopTracker stops the current registration, if any.
func (s *shell) stopTracker() {
	if s.trk != nil {
		s.trk.stop()
		s.trk = nil
	}
}

func (s *shell) cmdRegister(args []string) bool {
	addr, err := hostPort(args[0], args[1])
	if err != nil {
		s.printf("REGISTER FAIL %v; usage: %s", err, s.commands["register"].usage)
		return false
	}
	s.register(addr)
	return false
}

// register (re)registers with the tracker at addr and prints the outcome:
// REGISTER OK and the peer list, or REGISTER FAIL.
func (s *shell) register(addr string) {
	// The old registration goes first: the tracker may refuse our name
	// while it is still held.
	s.stopTracker()
	r := &trackerRun{s: s, addr: addr, done: make(chan struct{}), firstUpdate: make(chan struct{})}
	r.tc = tracker.NewClient(tracker.ClientOptions{
		Addr:        addr,
		Name:        s.opts.Name,
		Port:        s.opts.Port,
		DialTimeout: s.opts.Client.DialTimeout,
		Secure:      s.opts.Client.Secure,
		Logger:      s.opts.Logger,
		Handler:     r,
	})
	ctx, cancel := context.WithCancel(s.ctx)
	r.cancel = cancel
	go func() {
		defer close(r.done)
		_ = r.tc.Run(ctx)
	}()

	wait := s.opts.Client.DialTimeout
	wctx, wcancel := context.WithTimeout(s.ctx, wait)
	err := r.tc.WaitRegistered(wctx)
	wcancel()
	if err != nil {
		r.stop()
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) && s.ctx.Err() == nil {
			// WaitRegistered appends the last error as "(last error: ...)".
			msg = fmt.Sprintf("no REGISTER OK from %s within %v%s", addr, wait,
				strings.TrimPrefix(msg, context.DeadlineExceeded.Error()))
		}
		s.println("REGISTER FAIL " + msg)
		return
	}
	s.trk = r

	// The tracker follows REGISTER OK with an UPDATE: show it as part of
	// the outcome rather than as a notice.
	t := time.NewTimer(firstUpdateWait)
	select {
	case <-r.firstUpdate:
	case <-t.C:
	case <-s.ctx.Done():
	}
	t.Stop()
	r.mu.Lock()
	r.announced = true
	r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER OK %s\n", addr)
	s.writePeers(&b, r.tc.Peers())
	s.write(b.String())
}

var (
	_ tracker.Handler      = (*trackerRun)(nil)
	_ tracker.StateHandler = (*trackerRun)(nil)
)

// SetPeers prints an UPDATE, or keeps the first for register to print.
func (r *trackerRun) SetPeers(peers []peerproto.PeerAddr) { r.s.onUpdate(r, peers) }

// SyncRead prints SYNC READ.
func (r *trackerRun) SyncRead() {
	if !r.quiet() {
		r.s.notice("SYNC READ")
	}
}

// SyncTurn runs our turn (onTurn).
func (r *trackerRun) SyncTurn(ctx context.Context) error { return r.s.onTurn(ctx, r) }

// SyncEnd prints SYNC END.
func (r *trackerRun) SyncEnd(end peerproto.SyncEnd) {
	if !r.quiet() {
		r.s.notice("SYNC END %d", end.Round)
	}
}

// RegistrationChanged prints a registration won again or lost.
func (r *trackerRun) RegistrationChanged(registered bool) {
	switch {
	case r.quiet():
	case registered:
		r.s.notice("REGISTER OK (registered again with %s)", r.addr)
	default:
		r.s.notice("REGISTER LOST (tracker %s gone; retrying)", r.addr)
	}
}

func (s *shell) onUpdate(r *trackerRun, peers []peerproto.PeerAddr) {
	r.mu.Lock()
	if !r.gotUpdate {
		r.gotUpdate = true
		close(r.firstUpdate)
	}
	r.mu.Unlock()
	if r.quiet() {
		return
	}
	words := make([]string, len(peers))
	for i, p := range peers {
		words[i] = p.Name + "@" + p.Addr
	}
	s.notice("UPDATE %s", strings.Join(words, " "))
}

// onTurn runs during each of our SYNC turns. The turn a sync command waits
// for prints its SYNC OK as that command's outcome (the command prints
// SYNC FIN when Sync returns); a turn in another peer's round is a notice.
func (s *shell) onTurn(ctx context.Context, r *trackerRun) error {
	r.mu.Lock()
	own := r.syncing
	r.syncing = false
	quiet := r.stopping
	r.mu.Unlock()
	switch {
	case quiet:
	case own:
		s.println("SYNC OK")
	default:
		s.notice("SYNC OK (our turn in another peer's round)")
	}
	var err error
	if s.opts.OnTurn != nil {
		err = s.opts.OnTurn(ctx)
	}
	if !own && !quiet {
		if err != nil {
			s.notice("SYNC FIN (flush failed: %v)", err)
		} else {
			s.notice("SYNC FIN")
		}
	}
	return err
}

func (s *shell) cmdSync([]string) bool {
	r := s.trk
	if r == nil {
		s.println("SYNC FAIL not registered; use register <srv ip> <port>")
		return false
	}
	r.mu.Lock()
	r.syncing = true
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.SyncTimeout)
	err := r.tc.Sync(ctx)
	cancel()
	r.mu.Lock()
	r.syncing = false
	r.mu.Unlock()
	switch {
	case err == nil:
		s.println("SYNC FIN")
	case errors.Is(err, tracker.ErrNotRegistered):
		s.printf("SYNC FAIL not registered (tracker %s unreachable)", r.addr)
	case errors.Is(err, context.DeadlineExceeded) && s.ctx.Err() == nil:
		s.printf("SYNC FAIL no turn within %v", s.opts.SyncTimeout)
	default:
		s.println("SYNC FAIL " + reason(err))
	}
	return false
}

func (s *shell) cmdPeers([]string) bool {
	if s.trk == nil {
		s.println("PEERS FAIL not registered; use register <srv ip> <port>")
		return false
	}
	var b strings.Builder
	s.writePeers(&b, s.trk.tc.Peers())
	s.write(b.String())
	return false
}

// writePeers lists peers, one "name address" a line, after a PEERS line.
func (s *shell) writePeers(b *strings.Builder, peers []peerproto.PeerAddr) {
	if len(peers) == 0 {
		b.WriteString("PEERS OK 0 (no UPDATE yet)\n")
		return
	}
	fmt.Fprintf(b, "PEERS OK %d\n", len(peers))
	for _, p := range peers {
		me := ""
		if s.opts.Name != "" && p.Name == s.opts.Name {
			me = " (this peer)"
		}
		fmt.Fprintf(b, "  %-16s %s%s\n", p.Name, p.Addr, me)
	}
}
