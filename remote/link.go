package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// link is the one way to one peer at one address: its connection pool,
// the fail-fast window after a network failure, the identity the peer
// reports, and its health (up or down, since when, round-trip time, bytes
// moved), which the status report shows. Every request goes through do.
// It is safe for concurrent use.
type link struct {
	name, addr string // read-only
	pool       *peer.Pool
	obs        Observer         // may be nil
	now        func() time.Time // the clock of reports (Options.Now)

	mu sync.Mutex // protects the fields below
	// downUntil: after a network failure, requests fail at once until
	// then instead of each waiting out its own timeout.
	downUntil time.Time
	// id is the identity of the peer's export, as its connections last
	// reported it (identity.go); "" until then, or from an older peer.
	id string
	// feats is what the peer's connections last said it serves (posix,
	// owners, devices; peer.Conn's methods of those names).
	feats features
	// Health: whether a request was tried, and the last one reached the
	// peer; its last round-trip time (PING), when it last answered,
	// since when it is down, and why.
	tried, up         bool
	rtt               time.Duration
	lastSeen          time.Time
	downSince         time.Time // the first failure since the last answer; zero while up
	lastErr           string
	bytesIn, bytesOut int64

	// stopped is closed by close: what runs for the link (its event
	// connection, watch.go) ends. closeOnce guards it.
	stopped   chan struct{}
	closeOnce sync.Once
}

// failFast is how long requests to a peer fail at once after one failed
// on the network: a stalled peer then costs one timeout, not one per
// request the kernel sends.
const failFast = time.Second

// errPeerDown is returned (as EIO, see netErr) while failing fast.
var errPeerDown = errors.New("peer down")

// errLocal marks a request that failed on this machine (the cache's
// disk), not on the network or the peer.
var errLocal = errors.New("local failure")

// isLocal reports whether err is a failure on this side, which says
// nothing about the peer: a PUT whose source could not be read, or an
// errLocal.
func isLocal(err error) bool {
	return errors.Is(err, errLocal) || errors.Is(err, peer.ErrSource)
}

// isRefusal reports whether err is a well-formed refusal: the peer is up.
func isRefusal(err error) bool {
	var fe *peerproto.FailError
	return errors.As(err, &fe)
}

func newLink(name, addr string, opts peer.ClientOptions, obs Observer, now func() time.Time) *link {
	return &link{name: name, addr: addr, pool: peer.NewPool(addr, opts, 16), obs: obs, now: now, stopped: make(chan struct{})}
}

// close closes the link's connections, and stops what runs for it.
func (l *link) close() {
	l.closeOnce.Do(func() { close(l.stopped) })
	l.pool.Close()
}

// do runs fn on a connection to the peer (pool.Do), failing at once
// while the fail-fast window lasts, and records the outcome: the window,
// the health, and the Observer's measurement (verb names the request).
func (l *link) do(ctx context.Context, verb string, fn func(*peer.Conn) error) error {
	start := time.Now()
	l.mu.Lock()
	down := l.downUntil
	l.mu.Unlock()
	if start.Before(down) {
		return fmt.Errorf("peer %s (%s) did not answer moments ago; failing fast: %w", l.name, l.addr, errPeerDown)
	}
	err := l.pool.Do(ctx, fn)
	l.result(ctx, err)
	if l.obs != nil {
		l.obs.PeerRequest(l.name, verb, time.Since(start), err)
	}
	return err
}

// result records how a request ended: an answer (even a refusal, or a
// transfer cut short after it began) means the peer is up; failing to
// reach it means down. A cancelled request, or one whose data could not
// be read here, says nothing about the peer.
func (l *link) result(ctx context.Context, err error) {
	if errors.Is(err, context.Canceled) || isLocal(err) || errors.Is(err, fusefs.ErrNotPermitted) {
		return // nothing was asked of the peer (or nothing answered)
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil || isRefusal(err) || errors.Is(err, peer.ErrCutShort) {
		l.downUntil = time.Time{}
		l.tried, l.up, l.lastSeen, l.lastErr, l.downSince = true, true, now, "", time.Time{}
		return
	}
	if ctx.Err() == nil {
		l.downUntil = time.Now().Add(failFast)
	}
	if l.up || !l.tried {
		l.downSince = now
	}
	l.tried, l.up, l.lastErr = true, false, err.Error()
}

// answering reports whether the peer answered the last request tried
// (and is not in the fail-fast window): a change written behind is then
// likely to reach it at once.
func (l *link) answering() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tried && l.up && !time.Now().Before(l.downUntil)
}

// setID records the identity the peer reported on a connection and
// returns the one it had before.
func (l *link) setID(id string) (old string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old = l.id
	if id != "" {
		l.id = id
	}
	return old
}

// features is what a peer serves beyond the seed's protocol.
type features struct {
	known  bool // a connection said
	posix  bool // whole-filesystem mode: links, special files, all attributes
	owners bool // it keeps real owners: uid= and gid= are its files', chown works
	// mkdirOwner: it makes a directory with the owner MKDIR names.
	mkdirOwner bool
	devices    bool // it makes device nodes
	// readOnly: its export refuses every change; nothing is written
	// behind for it.
	readOnly bool
	// stream: it takes streamed PUTs (upload_stream.go); a peer without
	// them gets its files whole at close, until a connection to it says
	// otherwise (it was upgraded and restarted).
	stream bool
}

// setFeatures records what the peer said it serves on a connection.
func (l *link) setFeatures(c *peer.Conn) {
	f := features{known: true, posix: c.Posix(), owners: c.Owners(), mkdirOwner: c.Owners() && c.MkdirOwner(),
		devices: c.Devices(), readOnly: c.ReadOnly(), stream: c.Streams()}
	l.mu.Lock()
	l.feats = f
	l.mu.Unlock()
}

// features returns what the peer serves, as its connections last said;
// ok is false until one did.
func (l *link) features() (f features, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.feats, l.feats.known
}

// owners reports whether the peer keeps real owners, as far as its
// connections said.
func (l *link) owners() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.feats.owners
}

// peerID returns the identity the peer last reported ("" if none yet).
func (l *link) peerID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

// count records file content moved from (in) or to (out) the peer.
func (l *link) count(in, out int64) {
	if in == 0 && out == 0 {
		return
	}
	l.mu.Lock()
	l.bytesIn += in
	l.bytesOut += out
	l.mu.Unlock()
	if l.obs != nil {
		l.obs.PeerBytes(l.name, in, out)
	}
}

// ping sends a PING and records its round-trip time if it is answered.
func (l *link) ping(ctx context.Context) {
	start := time.Now()
	if err := l.do(ctx, "PING", func(c *peer.Conn) error { return c.Ping(ctx) }); err == nil {
		l.mu.Lock()
		l.rtt = time.Since(start)
		l.mu.Unlock()
	}
}

// lastAnswer returns when the peer last answered a request, or the zero
// time.
func (l *link) lastAnswer() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeen
}

// report returns the peer's health as its part of a status report.
func (l *link) report() PeerReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	pr := PeerReport{Name: l.name, Addr: l.addr, State: "unknown", Listed: true}
	if l.tried {
		pr.State = "down"
		if l.up {
			pr.State = "up"
		} else {
			pr.Error, pr.DownSince = l.lastErr, l.downSince
		}
	}
	pr.RTT = float64(l.rtt.Microseconds()) / 1000
	pr.LastSeen = l.lastSeen
	pr.BytesIn, pr.BytesOut = l.bytesIn, l.bytesOut
	return pr
}
