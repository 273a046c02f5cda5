package remote

// Operability: the status report (peerfs status, .peerfs/status), the
// peers' health pinger, each file's durability (user.peerfs.state) and
// the measurements handed to an Observer.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
)

// ReservedName is the name of the mount's control folder (see
// fusefs.ControlDir); a peer of that name is left out of the peer set.
const ReservedName = ".peerfs"

// Observer receives measurements of the Store's traffic with its peers;
// package metrics implements it. Its methods must be quick and safe for
// concurrent use.
type Observer interface {
	// PeerRequest reports one request (a protocol verb: LIST, GET, PUT...)
	// to peer, how long it took and how it ended.
	PeerRequest(peer, verb string, d time.Duration, err error)
	// PeerBytes reports file content received from (in) or sent to (out)
	// peer.
	PeerBytes(peer string, in, out int64)
}

// health is what the Store knows for its reports beyond its peers' links:
// what the daemon told it, and which files it stored before which round
// (FileState). Its zero value is ready.
type health struct {
	mu     sync.Mutex // protects the fields below
	info   ReportInfo
	stored map[cache.Key]uint64 // uploaded files -> the first round ended since (0: none yet)
	pinger bool                 // StartHealth has run
}

// poolDo runs fn on a connection to p (its link's do), learning the
// peer's identity from the connection, and counting a request that
// changes the peer's export for this peer's next SYNC FIN. verb names the
// request for the measurements.
func (s *Store) poolDo(ctx context.Context, p *peerConn, verb string, fn func(*peer.Conn) error) error {
	// After the changes this mount acknowledged before it (behind.go):
	// the peer sees this mount's changes in order.
	if err := s.waitBehind(ctx, p, mutating(verb)); err != nil {
		return err
	}
	if mutating(verb) {
		// Before the request: one in flight when SYNC FIN goes out
		// must count for that turn (TakeWrote); and after it, for the
		// next turn too, since it may end after that round does. The
		// tracker hears of it first (round.go), and has answered
		// before the request's success is returned.
		s.wrote.Store(true)
		told := s.noteWrites()
		defer func() {
			s.wrote.Store(true)
			told(ctx)
		}()
	}
	return p.link.do(ctx, verb, func(c *peer.Conn) error {
		s.learnID(p, c.PeerID())
		p.link.setFeatures(c)
		return fn(c)
	})
}

// mutating reports whether requests with verb change a peer's export.
func mutating(verb string) bool {
	switch verb {
	case "PUT", "DELETE", "RENAME", "MKDIR", "RMDIR", "SETATTR", "SYMLINK", "LINK", "MKNOD":
		return true
	}
	return false
}

// countBytes records file content moved to or from p.
func (s *Store) countBytes(p *peerConn, in, out int64) { p.link.count(in, out) }

// StartHealth starts the pinger: every interval, each known peer is sent
// a PING, which records its round-trip time and whether it is up. Close
// stops it. Calling it again does nothing.
func (s *Store) StartHealth(interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	s.health.mu.Lock()
	started := s.health.pinger
	s.health.pinger = true
	s.health.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if started || s.closed {
		return
	}
	s.wg.Add(1)
	go s.pingLoop(interval)
}

func (s *Store) pingLoop(interval time.Duration) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the owner: Close
		<-s.stop
		cancel()
	}()
	timeout := s.opts.Client.IOTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	for {
		s.mu.Lock()
		peers := make([]*peerConn, 0, len(s.peers))
		for _, p := range s.peers {
			peers = append(peers, p)
		}
		s.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range peers {
			wg.Go(func() {
				pctx, pcancel := context.WithTimeout(ctx, timeout)
				defer pcancel()
				p.link.ping(pctx)
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// maxStoredMarks bounds the table of recently uploaded files.
const maxStoredMarks = 4096

// markStored records that key's content is now on its peer.
func (s *Store) markStored(key cache.Key) {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if s.health.stored == nil {
		s.health.stored = map[cache.Key]uint64{}
	}
	if len(s.health.stored) >= maxStoredMarks {
		for k := range s.health.stored { // forget some, any
			delete(s.health.stored, k)
			if len(s.health.stored) < maxStoredMarks*3/4 {
				break
			}
		}
	}
	s.health.stored[key] = 0
}

// MarkRound records that SYNC round number round is over (SYNC END):
// every file stored before now is covered by it.
func (s *Store) MarkRound(round uint64) {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	for k, r := range s.health.stored {
		if r == 0 {
			s.health.stored[k] = round
		}
	}
}

// FileState implements fusefs.FileStater: "pending" while the file has
// local changes not yet uploaded, "uploading" while they are being sent,
// and "stored" otherwise. A file uploaded from here before a SYNC round
// ended is "stored round=N", N the first such round: from its end on,
// every client reads this content.
func (s *Store) FileState(peerName, path string) (string, error) {
	key := cache.Key{Peer: peerName, Path: path}
	pending, uploading := false, false
	if f, ok := s.local(key); ok {
		f.mu.Lock()
		uploading = f.uploading
		f.mu.Unlock()
		pending = f.pending()
	}
	switch {
	case uploading:
		return "uploading", nil
	case pending:
		return "pending", nil
	}
	s.health.mu.Lock()
	round := s.health.stored[key]
	s.health.mu.Unlock()
	if round > 0 {
		return fmt.Sprintf("stored round=%d", round), nil
	}
	return "stored", nil
}
