package tracker

// The peer list as each connection hears it: the seed's UPDATE with the
// whole list, bounded by MaxLine, or (FEATURES deltas) the list once as
// PEERS and JOINED lines and then one JOINED or LEFT line per change.

import (
	"bytes"

	"github.com/peerfs/peerfs/peerproto"
)

// eachAdvertisedLocked calls fn with each advertised peer of the
// cluster in registration order, until fn returns false: this tracker's
// registrations, or, for a replica, the shared store's members.
func (t *Tracker) eachAdvertisedLocked(fn func(peerproto.PeerAddr) bool) {
	if t.rep != nil {
		for _, m := range t.rep.members {
			if m.Addr != "" && !fn(peerproto.PeerAddr{Name: m.Name, Addr: m.Addr}) {
				return
			}
		}
		return
	}
	for _, p := range t.peers {
		if p.addr != "" && !fn(peerproto.PeerAddr{Name: p.name, Addr: p.addr}) {
			return
		}
	}
}

// peerListLocked returns the advertised peers in registration order.
func (t *Tracker) peerListLocked() []peerproto.PeerAddr {
	list := make([]peerproto.PeerAddr, 0, len(t.peers))
	t.eachAdvertisedLocked(func(p peerproto.PeerAddr) bool {
		list = append(list, p)
		return true
	})
	return list
}

// seedUpdateLocked formats the UPDATE a connection without deltas
// gets: the advertised peers in registration order, as many as fit in
// one line of MaxLine bytes. truncated reports that some were left out.
func (t *Tracker) seedUpdateLocked() (line []byte, truncated bool) {
	b := append(make([]byte, 0, 256), peerproto.VerbUpdate...)
	var one [1]peerproto.PeerAddr
	t.eachAdvertisedLocked(func(p peerproto.PeerAddr) bool {
		n := len(b)
		one[0] = p
		// The entry alone: the verb AppendTo writes first is cut off.
		b = peerproto.Update{Peers: one[:]}.AppendTo(b)
		b = append(b[:n], b[n+len(peerproto.VerbUpdate):]...)
		if len(b)+1 > peerproto.MaxLine {
			b, truncated = b[:n], true
			return false
		}
		return true
	})
	if truncated {
		t.warnTruncatedLocked()
	}
	return append(b, '\n'), truncated
}

// peersList formats the full list for a connection with deltas: PEERS
// and one JOINED line per peer, as one chunk for its writer.
func peersList(list []peerproto.PeerAddr) []byte {
	b := peerproto.Peers{Count: len(list)}.AppendTo(nil)
	b = append(b, '\n')
	for _, p := range list {
		b = peerproto.Joined{Peer: p}.AppendTo(b)
		b = append(b, '\n')
	}
	return b
}

// sendListLocked sends c the whole list, as c wants it.
func (t *Tracker) sendListLocked(c *conn) {
	if c.deltas {
		t.sendLocked(c, peersList(t.peerListLocked()))
		return
	}
	line, _ := t.seedUpdateLocked()
	t.sendLocked(c, line)
}

// warnTruncatedLocked logs, once per tracker, that connections without
// deltas do not see every peer.
func (t *Tracker) warnTruncatedLocked() {
	if t.warnedTruncated {
		return
	}
	t.warnedTruncated = true
	t.log.Warn().Int("peers", len(t.peers)).Int("max_line", peerproto.MaxLine).
		Msg("the peer list no longer fits in one UPDATE line: peers that do not ask for deltas (FEATURES deltas) see the oldest registrations only")
}

// announceJoinLocked tells every registered connection but skip that
// the advertised peer p joined.
func (t *Tracker) announceJoinLocked(p peerproto.PeerAddr, skip *conn) {
	joined := format(peerproto.Joined{Peer: p})
	for _, c := range t.peers {
		if c != skip && c.deltas {
			t.sendLocked(c, joined)
		}
	}
	t.updateSeedsLocked(skip)
}

// announceLeaveLocked tells every registered connection that the
// advertised peer name left, and how: those with deltas or that asked
// for LEFT get a LEFT line, and then those without deltas the new
// UPDATE.
func (t *Tracker) announceLeaveLocked(name, how string) {
	left := format(peerproto.Left{Name: name, How: how})
	for _, p := range t.peers {
		if p.deltas || p.wantsLeft {
			t.sendLocked(p, left)
		}
	}
	t.updateSeedsLocked(nil)
}

// updateSeedsLocked sends the connections without deltas, except skip,
// the UPDATE of the current list if it differs from the last one they
// got: a join past what fits in the line changes nothing for them.
func (t *Tracker) updateSeedsLocked(skip *conn) {
	seeds := 0
	for _, p := range t.peers {
		if !p.deltas {
			seeds++
		}
	}
	if seeds == 0 {
		t.seedLine = nil // computed afresh when a seed client comes
		return
	}
	line, _ := t.seedUpdateLocked()
	if t.seedLine != nil && bytes.Equal(line, t.seedLine) {
		return
	}
	t.seedLine = line
	for _, p := range t.peers {
		if p != skip && !p.deltas {
			t.sendLocked(p, line)
		}
	}
}
