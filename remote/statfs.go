package remote

import (
	"context"
	"sync"
	"time"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// statfsCache is a peer's last STATFS answer, trusted for AttrTTL as
// attributes are: programs call statfs(2) often (rm -r and find through
// fts, once per directory; df; a desktop's file manager), and its
// numbers drift anyway. Its zero value is empty.
type statfsCache struct {
	mu sync.Mutex // protects the fields below
	at time.Time
	st peerproto.StatfsOK
}

// Statfs implements fusefs.Store.
func (s *Store) Statfs(ctx context.Context, peerName string) (total, free, avail uint64, err error) {
	p, err := s.peer(peerName)
	if err != nil {
		return 0, 0, 0, err
	}
	now := s.now()
	p.statfs.mu.Lock()
	st, fresh := p.statfs.st, !p.statfs.at.IsZero() && now.Sub(p.statfs.at) < s.opts.AttrTTL
	p.statfs.mu.Unlock()
	if !fresh {
		err = s.poolDo(ctx, p, "STATFS", func(c *peer.Conn) error {
			var err error
			st, err = c.Statfs(ctx)
			return err
		})
		if err != nil {
			return 0, 0, 0, netErr(p, err)
		}
		p.statfs.mu.Lock()
		p.statfs.at, p.statfs.st = now, st
		p.statfs.mu.Unlock()
	}
	return uint64(st.Total), uint64(st.Free), uint64(st.Avail), nil
}
