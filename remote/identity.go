package remote

import (
	"context"
	"fmt"
	"strings"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// What a mount writes for a peer is bound to that peer's identity, not
// its name: the cluster (Options.Cluster, derived from the cluster's
// secret) and the identity of the peer's export (the id= of its FEATURES
// answer, kept with the export). Another machine that takes the name, or
// a cluster that reuses it (a mount restarted into another cluster, a test
// cluster torn down and made again), is a stranger: data pending for the
// old one is set aside (unsent.go), never delivered to it.
//
// The binding lives in the cache's version strings: a clean copy's
// version and a dirty copy's base are "<owner>/<version>", owner being
// "<cluster>.<peer id>". A cached copy of another owner is never valid;
// a dirty one is uploaded only while its owner is the peer's.

// errForeign is why a copy written for a peer of another identity is set
// aside instead of uploaded. It is found on this side (errLocal): the
// peer is not to blame.
var errForeign = fmt.Errorf("%w: written for another peer of that name (another machine, or another cluster): %w", errLocal, fusefs.ErrUnavailable)

// errPeerLeft is why a copy for a peer that left the cluster (QUIT), or
// that the user forgot, is set aside.
var errPeerLeft = fmt.Errorf("%w: its peer left the cluster, or was forgotten: %w", errLocal, fusefs.ErrUnavailable)

// errNoOwner is why a copy from before owners were recorded is set aside.
var errNoOwner = fmt.Errorf("%w: written before peerfs recorded which peer a file is for: %w", errLocal, fusefs.ErrUnavailable)

// learnID records the identity peer p reported on a connection. A change
// means another export now answers at p's name: everything cached about
// the old one is dropped.
func (s *Store) learnID(p *peerConn, id string) {
	if id == "" {
		return
	}
	old := p.link.setID(id)
	if old != "" && old != id {
		p.attrs.clearAll()
		s.log.Warn().Str("remote_peer", p.name).Str("was", old).Str("now", id).
			Msg("another export answers at this peer's name; what is pending for the old one is set aside")
		s.notify(p.name, "")
	}
}

// identify makes sure p's identity is known, asking the peer (PING) if
// no connection has told it yet.
func (s *Store) identify(ctx context.Context, p *peerConn) error {
	if p.link.peerID() != "" {
		return nil
	}
	return netErr(p, s.poolDo(ctx, p, "PING", func(c *peer.Conn) error { return c.Ping(ctx) }))
}

// owner returns the identity under which this mount keeps what it writes
// for p: "<cluster>.<peer id>".
func (s *Store) owner(p *peerConn) string {
	return s.opts.Cluster + "." + p.link.peerID()
}

// cacheVersion is v as the cache records it for p (see above); "" stays
// "" (unknown).
func (s *Store) cacheVersion(p *peerConn, v peerproto.Version) string {
	if v == peerproto.NoVersion {
		return ""
	}
	return s.owner(p) + "/" + string(v)
}

// ownedBase returns a dirty copy's recorded base as its owner and the
// version it started from; owner is "" for a record from before owners.
func ownedBase(recorded string) (owner string, base peerproto.Version) {
	o, v, ok := strings.Cut(recorded, "/")
	if !ok {
		return "", peerproto.Version(recorded)
	}
	return o, peerproto.Version(v)
}

// setAsideStrangers sets aside, as New finds them, the pending copies
// that no peer of this cluster can ever be the owner of: written in
// another cluster, or before owners were recorded. A peer of that name
// answering would find them foreign, but there may be none here: they
// would then wait for it forever, failing every fsync and SYNC turn.
func (s *Store) setAsideStrangers() {
	var strangers []*fileState
	for _, f := range s.files {
		if f.owner == "" || !strings.HasPrefix(f.owner, s.opts.Cluster+".") {
			strangers = append(strangers, f)
		}
	}
	for _, f := range strangers {
		cause := errForeign
		if f.owner == "" {
			cause = errNoOwner
		}
		f.up.Lock()
		_ = s.park(f, f.ch.Load(), cause)
		f.up.Unlock()
	}
}
