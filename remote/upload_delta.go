package remote

// Uploads of what changed: a copy whose changes since its base are
// tracked (cache.Meta.Changed) goes up as a delta PUT (peerproto.Put.Delta)
// to a peer that serves them, conditional on that base, so that appending
// to a large file, or changing a few pages of one, moves those bytes and
// not the file.

import (
	"context"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// deltaRanges returns the ranges a delta PUT of u's copy would send and
// the size it would give the file, and whether one may go over c: the copy's changes are tracked from u's
// base, which is a version token (a delta applies to one exact content),
// the peer serves delta PUTs, and the delta is worth it (a partial copy
// always: the rest is not here to send; a whole one when it saves at
// least half the file).
func (s *Store) deltaRanges(ctx context.Context, c *peer.Conn, u *upload, base peerproto.Version) ([]peerproto.Range, int64, bool) {
	m := u.ch.Meta()
	if !m.Dirty || !m.Tracked || base != u.base || unknownBase(base) {
		return nil, 0, false
	}
	var rs []peerproto.Range
	var sum int64
	for _, r := range m.ChangedNow() {
		rs = append(rs, peerproto.Range{Off: r.Off, Len: r.Len()})
		sum += r.Len()
	}
	if !m.Partial && 2*sum > m.Size {
		return nil, 0, false
	}
	f, err := c.Features(ctx)
	if err != nil || !f.Has(peerproto.FeatureDelta) {
		return nil, 0, false
	}
	return rs, m.Size, true
}

// putDelta sends the ranges rs of u's copy, of size bytes, as a delta PUT
// over base.
// Bytes of them the copy does not hold (a write cut short by a crash of
// the mount, recorded but never done) are fetched from the base first:
// they are what the peer has there.
func (s *Store) putDelta(ctx context.Context, c *peer.Conn, u *upload, base peerproto.Version, rs []peerproto.Range, size int64) (peerproto.PutDone, error) {
	for _, r := range rs {
		if len(u.ch.Meta().Unknown(r.Off, r.End())) > 0 {
			if err := s.fillFrom(ctx, c, u.p, u.ch, u.origin, r.Off, r.End()); err != nil {
				return peerproto.PutDone{}, err
			}
		}
	}
	var payload int64
	for _, r := range rs {
		payload += r.Len
	}
	setid, setidDone := setidBegin(c, u.f, base)
	defer setidDone()
	m := peerproto.Put{Name: u.key.Path, Async: true, Inline: payload <= inlineMax, Ver: base.Token(),
		Delta: true, NewSize: size, Ranges: rs, Setid: setid}
	// A read past the copy's end (truncated while it is sent) fails the
	// source (peer.ErrSource), and send tries again.
	pd, err := c.PutDelta(ctx, m, u.ch, nil)
	if err == nil {
		u.sentBytes = payload
	}
	return pd, err
}
