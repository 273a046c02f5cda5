package tracker

import (
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/peerproto"
)

// sender writes a Client's messages to one tracker connection, in the
// order they were queued, from its own goroutine (run), which also sends
// the keepalive PINGs. Queueing is all a caller does, so no lock is ever
// held across a network write. A write that fails, or takes longer than
// the timeout, closes the connection, which its reader notices.
type sender struct {
	nc      net.Conn
	timeout time.Duration // deadline of each write
	ping    time.Duration // keepalive period
	log     zerolog.Logger
	wake    chan struct{} // capacity 1: something was queued since run last looked
	done    chan struct{} // closed by stop
	stopped chan struct{} // closed when run has returned

	mu    sync.Mutex // protects the field below
	queue []peerproto.Message
}

func newSender(nc net.Conn, timeout, ping time.Duration, log zerolog.Logger) *sender {
	return &sender{
		nc: nc, timeout: timeout, ping: ping, log: log,
		wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}),
	}
}

// send queues m. It never blocks.
func (s *sender) send(m peerproto.Message) {
	s.mu.Lock()
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes what is queued, and a PING every ping period, until stop.
func (s *sender) run() {
	defer close(s.stopped)
	tick := time.NewTicker(s.ping)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
			s.write(peerproto.Ping{})
		case <-s.wake:
			s.mu.Lock()
			queue := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, m := range queue {
				s.write(m)
			}
		}
	}
}

// write writes m under the write deadline; a failure closes the
// connection.
func (s *sender) write(m peerproto.Message) {
	_ = s.nc.SetWriteDeadline(time.Now().Add(s.timeout))
	if err := peerproto.WriteMessage(s.nc, m); err != nil {
		s.log.Debug().Err(err).Msg("write to tracker failed")
		s.nc.Close()
	}
}

// close closes the connection, ending any write in progress.
func (s *sender) close() { s.nc.Close() }

// stop ends run, after the write in progress if any, and waits for it.
// Call it once, after run was started.
func (s *sender) stop() {
	close(s.done)
	<-s.stopped
}
