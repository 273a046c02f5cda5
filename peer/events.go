package peer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// ErrNoWatch is returned by Conn.Events when the peer does not serve
// WATCH on this connection (no FeatureWatch, or not in whole-filesystem
// mode).
var ErrNoWatch = errors.New("peer does not watch directories")

// Events is an event connection (WATCH, docs/PROTOCOL.md "Watching
// directories"): Watch, Unwatch and Ping send their request at once, and
// their answers come through Next, in order, among the peer's events.
// One goroutine may call Next while others send.
type Events struct {
	c   *Conn
	wmu sync.Mutex // serializes requests
}

// Events turns c into an event connection: from then on c is used only
// through the returned Events, and closed by its Close. It sends
// nothing; the first Watch makes the switch on the peer's side. c must
// have been dialled in whole-filesystem mode (ClientOptions.Posix) to a
// peer that serves FeatureWatch, else ErrNoWatch.
func (c *Conn) Events(ctx context.Context) (*Events, error) {
	f, err := c.Features(ctx)
	if err != nil {
		return nil, err
	}
	if !f.Has(peerproto.FeatureWatch) || !c.Posix() {
		return nil, fmt.Errorf("peer %s: %w", c.addr, ErrNoWatch)
	}
	return &Events{c: c}, nil
}

// Watch asks the peer to report the changes of dir ("" for the root).
func (e *Events) Watch(dir string) error { return e.request(peerproto.Watch{Dir: dir}) }

// Unwatch asks the peer to stop reporting the changes of dir.
func (e *Events) Unwatch(dir string) error { return e.request(peerproto.Unwatch{Dir: dir}) }

// Ping asks the peer for a PONG, through Next.
func (e *Events) Ping() error { return e.request(peerproto.Ping{}) }

func (e *Events) request(m peerproto.Message) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	c := e.c
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.opts.IOTimeout)); err != nil {
		return err
	}
	if err := c.send(m); err != nil {
		return fmt.Errorf("peer %s: %s: %w", c.addr, m.Verb(), err)
	}
	return nil
}

// Next returns the next line the peer writes, waiting at most wait for
// it: an event (peerproto.Changed, Gone, Unwatched, Reset, Tick) or an
// answer (WatchOK, UnwatchOK, Pong, or a refusal as peerproto.Refusal).
// A malformed line, or none within wait, is an error: the connection is
// then out of step, and to be closed.
func (e *Events) Next(wait time.Duration) (peerproto.Message, error) {
	c := e.c
	if err := c.nc.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, err
	}
	line, err := peerproto.ReadLine(c.r)
	if err != nil {
		return nil, fmt.Errorf("peer %s: event connection: %w", c.addr, err)
	}
	m, err := peerproto.ParseEvent(line)
	var fe *peerproto.FailError
	if errors.As(err, &fe) {
		return peerproto.Refusal{Err: fe}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("peer %s: event connection: %w", c.addr, err)
	}
	return m, nil
}

// Close closes the connection.
func (e *Events) Close() error { return e.c.nc.Close() }

// Dial dials a new connection to the pool's peer, with the pool's
// options, that the pool does not keep: the caller closes it.
func (p *Pool) Dial(ctx context.Context) (*Conn, error) { return p.dial(ctx) }
