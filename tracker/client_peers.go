package tracker

import (
	"slices"

	"github.com/peerfs/peerfs/peerproto"
)

// peerList is the Client's copy of the tracker's list, kept from UPDATEs
// (the seed's) or from deltas (FEATURES deltas: PEERS, JOINED, LEFT). It
// is owned by the goroutine that reads the tracker; the Client publishes
// a copy under its lock when it tells its Handler.
type peerList struct {
	list  []peerproto.PeerAddr
	index map[string]int // name -> position in list

	// A PEERS line opens a new list of its count: until that many
	// JOINED lines have come, they fill next, and the old list stays.
	filling bool
	missing int
	next    []peerproto.PeerAddr

	// dirty: changed since the Handler was last told.
	dirty bool
}

// update replaces the list with an UPDATE's.
func (l *peerList) update(peers []peerproto.PeerAddr) {
	l.filling = false
	l.set(peers)
}

// set replaces the list.
func (l *peerList) set(peers []peerproto.PeerAddr) {
	l.list = peers
	l.index = make(map[string]int, len(peers))
	for i, p := range peers {
		l.index[p.Name] = i
	}
	l.dirty = true
}

// begin starts a new list of n peers (PEERS n).
func (l *peerList) begin(n int) {
	l.filling, l.missing = true, n
	l.next = make([]peerproto.PeerAddr, 0, n)
	if n == 0 {
		l.finish()
	}
}

func (l *peerList) finish() {
	l.filling = false
	l.set(l.next)
	l.next = nil
}

// joined adds p at the end, or, if its name is listed, moves it to its
// new address in place.
func (l *peerList) joined(p peerproto.PeerAddr) {
	if l.filling {
		l.next = append(l.next, p)
		if l.missing--; l.missing == 0 {
			l.finish()
		}
		return
	}
	if i, ok := l.index[p.Name]; ok {
		l.list[i] = p
	} else {
		l.index[p.Name] = len(l.list)
		l.list = append(l.list, p)
	}
	l.dirty = true
}

// left removes name, if listed.
func (l *peerList) left(name string) {
	i, ok := l.index[name]
	if !ok {
		return
	}
	l.list = slices.Delete(l.list, i, i+1)
	delete(l.index, name)
	for j := i; j < len(l.list); j++ {
		l.index[l.list[j].Name] = j
	}
	l.dirty = true
}

// take returns a copy of the list to tell the Handler, if it changed
// since the last take and is complete.
func (l *peerList) take() ([]peerproto.PeerAddr, bool) {
	if !l.dirty || l.filling {
		return nil, false
	}
	l.dirty = false
	return slices.Clone(l.list), true
}
