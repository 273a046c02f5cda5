package remote

// What a peer folder has beyond files and directories, where the peer
// serves whole-filesystem mode (peer.Conn.Posix): symbolic links, hard
// links, special files and owners.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// served returns what peer p serves, asking it (PING) if no connection
// has told yet: requests it does not serve are refused here, without
// asking it.
func (s *Store) served(ctx context.Context, p *peerConn) (features, error) {
	if f, ok := p.link.features(); ok {
		return f, nil
	}
	if err := netErr(p, s.poolDo(ctx, p, "PING", func(c *peer.Conn) error { return c.Ping(ctx) })); err != nil {
		return features{}, err
	}
	f, _ := p.link.features()
	return f, nil
}

// needPosix refuses a request only whole-filesystem mode has, to a peer
// that does not serve it (it predates it): EPERM, as a filesystem
// without links says.
func (s *Store) needPosix(ctx context.Context, op, peerName, path string) (features, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return features{}, err
	}
	f, err := s.served(ctx, p)
	if err != nil || f.posix {
		return f, err
	}
	return f, fmt.Errorf("remote: %s %s:%s: peer %s keeps only files and directories (it predates whole-filesystem mode): %w",
		op, peerName, path, peerName, fusefs.ErrNotPermitted)
}

// makeNew runs m, which makes the entry at path, with the entry and its
// parent STATed behind it (their attributes change with it), gives the
// entry its creator's owner (ownNew), and records what it learned.
func (s *Store) makeNew(ctx context.Context, verb, peerName, path string, m peerproto.Message) (fs.FileInfo, error) {
	var res []peer.StatResult
	p, err := s.do(ctx, verb, peerName, func(p *peerConn, c *peer.Conn) error {
		p.attrs.ownChange(path)
		var err error
		if _, res, err = s.withStats(ctx, c, m, path, parent(path)); err != nil {
			return err
		}
		if res[0].Err != nil {
			return res[0].Err
		}
		res[0].Entry, err = s.ownNew(ctx, c, path, res[0].Entry, res[1])
		return err
	})
	if p == nil {
		return nil, err
	}
	p.attrs.learned(parent(path), res, 1)
	if err != nil {
		p.attrs.forget(path)
		return nil, err
	}
	p.attrs.remember(path, res[0].Entry, true)
	p.unsynced.mark(path)
	s.notify(peerName, parent(path))
	return p.info(path, res[0].Entry), nil
}

// ownNew gives e, the entry just made at path, the owner a local disk
// gives it, on a peer that keeps owners: the creating process's user, and
// its group unless the directory is setgid (then the directory's group,
// which the peer gave it already). The peer made it as its own user.
func (s *Store) ownNew(ctx context.Context, c *peer.Conn, path string, e peerproto.Entry, dir peer.StatResult) (peerproto.Entry, error) {
	caller, ok := fusefs.CallerOf(ctx)
	if !ok || !c.Owners() || e.Has&(peerproto.AttrUid|peerproto.AttrGid) != peerproto.AttrUid|peerproto.AttrGid {
		return e, nil
	}
	uid, gid := ownerFor(caller, dir)
	sa := peerproto.Setattr{Name: path, HasUid: e.Uid != uid, Uid: uid, HasGid: e.Gid != gid, Gid: gid}
	if !sa.HasUid && !sa.HasGid {
		return e, nil
	}
	return c.Setattr(ctx, sa)
}

// ownerFor returns the owner and group an entry made by caller in
// directory dir gets (dir's group if it is setgid).
func ownerFor(caller fusefs.Caller, dir peer.StatResult) (uid, gid uint32) {
	uid, gid = caller.Uid, caller.Gid
	if d := dir.Entry; dir.Err == nil && d.Mode&0o2000 != 0 && d.Has&peerproto.AttrGid != 0 {
		gid = d.Gid
	}
	return uid, gid
}

// Symlink implements fusefs.Store.
func (s *Store) Symlink(ctx context.Context, peerName, path, target string) (fs.FileInfo, error) {
	if s.localInfo(cache.Key{Peer: peerName, Path: path}) != nil {
		return nil, fmt.Errorf("remote: symlink %s:%s: a file of that name was created here: %w", peerName, path, fs.ErrExist)
	}
	if _, err := s.needPosix(ctx, "symlink", peerName, path); err != nil {
		return nil, err
	}
	return s.makeNew(ctx, "SYMLINK", peerName, path, peerproto.Symlink{Name: path, Target: target})
}

// Mknod implements fusefs.Store. A device node needs a peer that makes
// them (--allow-devices); any other refuses it with EPERM, as mknod(2)
// without the privilege.
func (s *Store) Mknod(ctx context.Context, peerName, path string, mode fs.FileMode, major, minor uint32) (fs.FileInfo, error) {
	m := peerproto.Mknod{Name: path, Mode: peerproto.UnixBits(mode), Major: major, Minor: minor}
	switch mode.Type() {
	case fs.ModeNamedPipe:
		m.Type = peerproto.TypeFIFO
	case fs.ModeSocket:
		m.Type = peerproto.TypeSocket
	case fs.ModeDevice | fs.ModeCharDevice:
		m.Type = peerproto.TypeCharDevice
	case fs.ModeDevice:
		m.Type = peerproto.TypeBlockDevice
	default:
		return nil, fmt.Errorf("remote: mknod %s:%s of mode %v: %w", peerName, path, mode, fs.ErrInvalid)
	}
	if s.localInfo(cache.Key{Peer: peerName, Path: path}) != nil {
		return nil, fmt.Errorf("remote: mknod %s:%s: a file of that name was created here: %w", peerName, path, fs.ErrExist)
	}
	f, err := s.needPosix(ctx, "mknod", peerName, path)
	if err != nil {
		return nil, err
	}
	if m.IsDevice() && !f.devices {
		return nil, fmt.Errorf("remote: mknod %s:%s: peer %s makes no device nodes (it runs without --allow-devices): %w",
			peerName, path, peerName, fusefs.ErrNotPermitted)
	}
	return s.makeNew(ctx, "MKNOD", peerName, path, m)
}

// Readlink implements fusefs.Store: from the attributes cached (a LIST
// or STAT in whole-filesystem mode carries the target), or READLINK.
func (s *Store) Readlink(ctx context.Context, peerName, path string) (string, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return "", err
	}
	if e, exists, ok := p.attrs.cached(path); ok && exists && e.Type == peerproto.TypeSymlink && e.Has&peerproto.AttrLink != 0 {
		return e.Target, nil
	}
	var target string
	_, err = s.do(ctx, "READLINK", peerName, func(p *peerConn, c *peer.Conn) error {
		var err error
		target, err = c.Readlink(ctx, path)
		return err
	})
	return target, err
}

// Link implements fusefs.Store. A file created or written here goes up
// first: the link is to what its writer wrote (as Rename). Every name of
// the file then has a link more.
func (s *Store) Link(ctx context.Context, peerName, oldPath, newPath string) (fs.FileInfo, error) {
	if s.localInfo(cache.Key{Peer: peerName, Path: newPath}) != nil {
		return nil, fmt.Errorf("remote: link %s:%s: a file of that name was created here: %w", peerName, newPath, fs.ErrExist)
	}
	if f, ok := s.local(cache.Key{Peer: peerName, Path: oldPath}); ok {
		if err := s.upload(ctx, f, true); err != nil {
			return nil, err
		}
	}
	if _, err := s.needPosix(ctx, "link", peerName, newPath); err != nil {
		return nil, err
	}
	var res []peer.StatResult
	p, err := s.do(ctx, "LINK", peerName, func(p *peerConn, c *peer.Conn) error {
		p.attrs.ownChange(oldPath, newPath)
		var err error
		if _, res, err = s.withStats(ctx, c, peerproto.Link{Old: oldPath, New: newPath}, newPath, parent(newPath)); err != nil {
			return err
		}
		return res[0].Err
	})
	if p == nil {
		return nil, err
	}
	p.attrs.learned(parent(newPath), res, 1)
	if err != nil {
		p.attrs.forget(newPath)
		return nil, err
	}
	e := res[0].Entry
	p.attrs.changedIno(e.Ino) // every other name: a link more, a new ctime
	p.attrs.remember(newPath, e, true)
	p.attrs.remember(oldPath, e, true)
	if f, ok := s.local(cache.Key{Peer: peerName, Path: oldPath}); ok {
		f.mu.Lock()
		f.remote.Has |= e.Has & (peerproto.AttrIno | peerproto.AttrNlink)
		f.remote.Ino, f.remote.Nlink = e.Ino, e.Nlink
		f.mu.Unlock()
	}
	p.unsynced.mark(newPath)
	s.notify(peerName, parent(newPath))
	return p.info(newPath, e), nil
}

// Chown implements fusefs.Store: on a peer that keeps owners only
// (--owners), else EPERM. A file created or written here and not yet
// uploaded gets its owner with its upload.
func (s *Store) Chown(ctx context.Context, peerName, path string, uid, gid int) (fs.FileInfo, error) {
	if fi, ok := s.chownLocal(cache.Key{Peer: peerName, Path: path}, uid, gid); ok {
		return fi, nil
	}
	f, err := s.needPosix(ctx, "chown", peerName, path)
	if err != nil {
		return nil, err
	}
	if !f.owners {
		return nil, fmt.Errorf("remote: chown %s:%s: peer %s keeps no owners (it runs without --owners): %w",
			peerName, path, peerName, fusefs.ErrNotPermitted)
	}
	return s.setattr(ctx, peerName, peerproto.Setattr{Name: path, HasUid: uid >= 0, Uid: uint32(uid), HasGid: gid >= 0, Gid: uint32(gid)})
}

// dropCopy forgets the cached copy of key after its file was removed.
// A local copy still open here (f's handles pin it) stays readable and
// writable through its descriptors, as an unlinked file on a local disk:
// the cache detaches it (nothing of it is persisted or found by its name
// any more) and its data file goes with the last handle.
func (s *Store) dropCopy(key cache.Key) {
	if err := s.cache.Remove(key); err != nil && !errors.Is(err, cache.ErrClosed) {
		s.log.Debug().Err(err).Str("peer", key.Peer).Str("path", key.Path).Msg("drop the copy of a removed file")
	}
}

// fetchRest makes f's copy whole before its file goes from the peer: a
// copy opened for writing holds only what was written and read through
// it (fill.go), and the rest is about to be out of reach.
func (s *Store) fetchRest(ctx context.Context, f *fileState) error {
	ch, err := s.writable(ctx, f)
	if err != nil {
		return err
	}
	return s.fill(ctx, f, ch, 0, ch.Meta().Size)
}
