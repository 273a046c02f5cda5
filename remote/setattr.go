package remote

// Changes to an entry's attributes: size, mode, times (and, in posix.go,
// owners), on the peer or on a copy not uploaded yet.

import (
	"context"
	"io/fs"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// setattr applies s remotely and returns the new attributes: written
// behind where it may be (setattrBehind).
func (s *Store) setattr(ctx context.Context, peerName string, sa peerproto.Setattr) (fs.FileInfo, error) {
	if p, err := s.peer(peerName); err == nil {
		if fi, ok := s.setattrBehind(p, sa); ok {
			return fi, nil
		}
	}
	var e peerproto.Entry
	p, err := s.do(ctx, "SETATTR", peerName, func(p *peerConn, c *peer.Conn) error {
		p.attrs.ownAttrs(sa.Name)
		var err error
		e, err = c.Setattr(ctx, sa)
		return err
	})
	if err != nil {
		if p != nil {
			p.attrs.forget(sa.Name)
		}
		return nil, err
	}
	linked := p.attrs.linked(sa.Name)
	p.attrs.changedIno(max(linked, linkedIno(e))) // its other names show the change too
	p.attrs.remember(sa.Name, e, true)
	p.unsynced.mark(sa.Name)
	return p.info(sa.Name, e), nil
}

// Truncate implements fusefs.Store.
func (s *Store) Truncate(ctx context.Context, peerName, path string, size int64) (fs.FileInfo, error) {
	if fi, ok, err := s.truncateLocal(ctx, cache.Key{Peer: peerName, Path: path}, size); ok {
		return fi, err
	}
	return s.setattr(ctx, peerName, peerproto.Setattr{Name: path, HasSize: true, Size: size})
}

// Chmod implements fusefs.Store.
func (s *Store) Chmod(ctx context.Context, peerName, path string, mode fs.FileMode) (fs.FileInfo, error) {
	if fi, ok, err := s.chmodLocal(ctx, cache.Key{Peer: peerName, Path: path}, mode); ok {
		return fi, err
	}
	return s.setattr(ctx, peerName, peerproto.Setattr{Name: path, HasMode: true, Mode: peerproto.UnixBits(mode)})
}

// Chtimes implements fusefs.Store.
func (s *Store) Chtimes(ctx context.Context, peerName, path string, atime, mtime fusefs.TimeChange) (fs.FileInfo, error) {
	if fi, ok := s.chtimesLocal(cache.Key{Peer: peerName, Path: path}, atime, mtime); ok {
		return fi, nil
	}
	sa := peerproto.Setattr{Name: path}
	if atime.Set {
		sa.HasAtime, sa.AtimeNow = true, atime.Now
		if !atime.Now {
			sa.Atime = atime.T.UnixNano()
		}
	}
	if mtime.Set {
		sa.HasMtime, sa.MtimeNow = true, mtime.Now
		if !mtime.Now {
			sa.Mtime = mtime.T.UnixNano()
		}
	}
	return s.setattr(ctx, peerName, sa)
}
