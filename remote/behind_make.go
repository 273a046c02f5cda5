package remote

// Write-behind of directories made and of directories' attributes
// (behind.go has the queue, its order and its refusals): a mkdir, and a
// chmod or utimes of a directory, acknowledged once journalled, with the
// attributes this mount would expect the peer to give shown until it
// has. While one waits, every request to its peer waits for the queue
// (behind.moving): the peer has no such directory yet, or shows the old
// mode and times.
//
// Only what the mount can predict exactly goes behind: a mode without
// setuid or setgid bits (whether the peer keeps them is its setting); a
// mkdir on a peer that does not keep owners, or on one that makes the
// directory with the owner MKDIR names (FeatureMkdirOwner: the caller's,
// and its group unless the parent is setgid, as on a local disk; an older
// peer that keeps owners makes it its own user's, and this mount then
// gives it the caller's in a second request, synchronously). A regular
// file's chmod or utimes stays synchronous:
// its peer may give the file a new version token with it (one derived
// from a file's attributes follows its change time), which a copy
// written here later must be based on, or its upload would look like a
// conflict. A peer that kept every token across such a change, durably
// and against its other writers, would let files go behind too (tried
// and reviewed in the tenth session: not yet).

import (
	"context"
	"errors"
	"io/fs"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// privBits are the setuid and setgid bits: whether a peer keeps them is
// its own setting, so a change that asks for them is not predicted here.
const privBits = 0o6000

// mkdirBehind acknowledges the mkdir of path on p with mode by queueing
// it, if it may be written behind (see the file's comment): the parent is
// a directory known here, path is known absent, and the mode is one the
// peer gives exactly. It returns the new directory's attributes as this
// mount shows them until the peer's are asked; ok is false if the caller
// must make it synchronously.
func (s *Store) mkdirBehind(ctx context.Context, p *peerConn, path string, mode fs.FileMode) (fi fs.FileInfo, ok bool) {
	bits := peerproto.UnixBits(mode)
	feats, _ := p.link.features()
	caller, hasCaller := fusefs.CallerOf(ctx)
	owned := feats.owners // the directory gets the caller as its owner
	if bits == 0 || bits&privBits != 0 || owned && !(feats.mkdirOwner && feats.posix && hasCaller) ||
		!s.writeBehind(p, cache.Key{Peer: p.name, Path: path}, nil, true) {
		return nil, false
	}
	dir, ok := knownDir(p, parent(path))
	if !ok || owned && dir.Mode&0o2000 != 0 && dir.Has&peerproto.AttrGid == 0 {
		return nil, false // (the group a setgid parent gives is not known)
	}
	if _, exists, known := p.attrs.cached(path); !known || exists {
		return nil, false // the peer says whether it exists
	}
	op := cache.NamespaceOp{Op: cache.OpMkdir, Peer: p.name, Path: path, Mode: &bits}
	if owned {
		op.Uid, op.Gid = &caller.Uid, &caller.Gid
	}
	if id := p.link.peerID(); id != "" {
		op.Owner = s.owner(p)
	}
	// Shown before it is queued: a sender already running may carry
	// it out, or have it refused (and what it showed forgotten), at once.
	now := s.now().UnixNano()
	e := madeDir(dir, bits, now, feats.posix)
	if owned {
		uid, gid := ownerFor(caller, peer.StatResult{Entry: dir})
		e.Has |= peerproto.AttrUid | peerproto.AttrGid
		e.Uid, e.Gid = uid, gid
	}
	queued := p.attrs.queuing(parent(path), path)
	p.attrs.remember(path, e, true)
	p.attrs.predicted(path)
	p.attrs.emptyDir(path)
	p.attrs.entryChanged(parent(path), now, false, true)
	start, err := s.pushShown(op, queued)
	if err != nil {
		p.attrs.forgetTree(path)
		p.attrs.changed(parent(path))
		return nil, false
	}
	if start {
		s.startSender(p.name)
	}
	return p.info(path, e), true
}

// mkdirOf is the MKDIR that carries out op on p, whose connections say
// feats: with the owner op names where the peer makes directories so. A
// peer that no longer keeps owners (restarted without --owners since the
// mkdir was journalled) makes it without one, as any mkdir there; an
// older one that keeps owners but cannot take them in MKDIR makes it its
// own user's: the directory is not lost, its owner is (logged).
func (s *Store) mkdirOf(p *peerConn, op cache.NamespaceOp, feats features) peerproto.Mkdir {
	m := peerproto.Mkdir{Name: op.Path, Mode: *op.Mode}
	if op.Uid == nil || op.Gid == nil {
		return m
	}
	switch {
	case feats.mkdirOwner:
		m.HasOwner, m.Uid, m.Gid = true, *op.Uid, *op.Gid
	case feats.owners:
		s.log.Warn().Str("peer", p.name).Str("path", op.Path).Uint32("uid", *op.Uid).Uint32("gid", *op.Gid).
			Msg("this peer keeps owners but cannot make a directory with one (an older peerfs): the directory written behind is made its own user's")
	}
	return m
}

// knownDir returns the attributes of directory path on p if this mount
// knows them: from an answer younger than the attribute TTL, the export
// root's too (whether it is setgid decides the new directory's mode and
// group; the kernel's lookup of a peer's folder asks them, and so does a
// synchronous mkdir).
func knownDir(p *peerConn, path string) (peerproto.Entry, bool) {
	e, exists, known := p.attrs.cached(path)
	return e, known && exists && e.IsDir()
}

// madeDir returns the attributes a directory made with permission bits
// mode at now (ns) in directory parent gets from its peer: its parent's
// setgid bit and owners (if known), two links, the size of one block, and
// on a posix connection (a peer that gives whole-filesystem attributes)
// its times. Its inode number is unknown until the peer says.
func madeDir(parent peerproto.Entry, mode uint32, now int64, posix bool) peerproto.Entry {
	e := peerproto.Entry{Type: peerproto.TypeDir, Mode: mode | parent.Mode&0o2000, Size: 4096, Mtime: now}
	if posix {
		e.Has = peerproto.AttrNlink | peerproto.AttrAtime | peerproto.AttrCtime | peerproto.AttrBlocks |
			parent.Has&(peerproto.AttrUid|peerproto.AttrGid)
		e.Nlink, e.Uid, e.Gid = 2, parent.Uid, parent.Gid
		e.Atime, e.Ctime, e.Blocks = now, now, 8
	}
	return e
}

// setattrBehind acknowledges sa on p by queueing it, if it may be written
// behind (see the file's comment): the permission bits without setuid or
// setgid, or the times, of a directory (not the export's root). It
// returns the attributes as changed here; ok is false if the caller must
// send it synchronously.
func (s *Store) setattrBehind(p *peerConn, sa peerproto.Setattr) (fi fs.FileInfo, ok bool) {
	if sa.Name == "" || sa.HasSize || sa.HasUid || sa.HasGid || sa.HasMode && sa.Mode&privBits != 0 ||
		!sa.HasMode && !sa.HasAtime && !sa.HasMtime {
		return nil, false
	}
	e, exists, known := p.attrs.cached(sa.Name)
	if !known || !exists || !e.IsDir() {
		return nil, false
	}
	if feats, _ := p.link.features(); feats.posix && e.Has&(peerproto.AttrAtime|peerproto.AttrCtime) != peerproto.AttrAtime|peerproto.AttrCtime {
		// Known in part: the peer's answer has what the change leaves
		// of them.
		return nil, false
	}
	if !s.writeBehind(p, cache.Key{Peer: p.name, Path: sa.Name}, nil, true) {
		return nil, false
	}
	op := cache.NamespaceOp{Op: cache.OpSetattr, Peer: p.name, Path: sa.Name, Dir: true}
	if sa.HasMode {
		op.Mode = &sa.Mode
	}
	at := func(has, now bool, ns int64) *int64 {
		switch {
		case !has:
			return nil
		case now:
			ns = cache.TimeNow
		}
		return &ns
	}
	op.Atime, op.Mtime = at(sa.HasAtime, sa.AtimeNow, sa.Atime), at(sa.HasMtime, sa.MtimeNow, sa.Mtime)
	if id := p.link.peerID(); id != "" {
		op.Owner = s.owner(p)
	}
	// "now" is this machine's clock here, the peer's there: they differ
	// by the clocks' skew until the next STAT after it is carried out.
	// Shown before it is queued, as mkdirBehind does.
	now := s.now().UnixNano()
	queued := p.attrs.queuing(sa.Name)
	p.attrs.changedHere(sa.Name, func(e *peerproto.Entry) { applySetattr(e, op, now) })
	start, err := s.pushShown(op, queued)
	if err != nil {
		p.attrs.forget(sa.Name)
		return nil, false
	}
	if start {
		s.startSender(p.name)
	}
	applySetattr(&e, op, now)
	return p.info(sa.Name, e), true
}

// applySetattr applies op, an OpSetattr, to e at now (ns): its mode and
// times, and its change time.
func applySetattr(e *peerproto.Entry, op cache.NamespaceOp, now int64) {
	at := func(t *int64) int64 {
		if *t == cache.TimeNow {
			return now
		}
		return *t
	}
	if op.Mode != nil {
		e.Mode = *op.Mode
	}
	if op.Mtime != nil {
		e.Mtime = at(op.Mtime)
	}
	if op.Atime != nil && e.Has&peerproto.AttrAtime != 0 {
		e.Atime = at(op.Atime)
	}
	if e.Has&peerproto.AttrCtime != 0 {
		e.Ctime = tickAfter(e.Ctime, now)
	}
}

// setattrOf is the SETATTR that carries out op, an OpSetattr.
func setattrOf(op cache.NamespaceOp) peerproto.Setattr {
	sa := peerproto.Setattr{Name: op.Path}
	if op.Mode != nil {
		sa.HasMode, sa.Mode = true, *op.Mode
	}
	if op.Atime != nil {
		sa.HasAtime, sa.AtimeNow = true, *op.Atime == cache.TimeNow
		if !sa.AtimeNow {
			sa.Atime = *op.Atime
		}
	}
	if op.Mtime != nil {
		sa.HasMtime, sa.MtimeNow = true, *op.Mtime == cache.TimeNow
		if !sa.MtimeNow {
			sa.Mtime = *op.Mtime
		}
	}
	return sa
}

// madeAlready reports whether the peer has a directory at path, as a
// MKDIR written behind that found the name taken needs to know: one made
// by another writer, or by this MKDIR sent before on a connection that
// died, is the directory asked for.
func (s *Store) madeAlready(ctx context.Context, p *peerConn, path string) (bool, error) {
	res, err := s.peerStats(ctx, p, path)
	if err != nil {
		return false, err
	}
	return len(res) == 1 && res[0].Err == nil && res[0].Entry.IsDir(), nil
}

// behindOutcome interprets a peer's answer e (nil: success) to op, sent
// from the queue: what the op's outcome is (nil: carried out; errGivenUp:
// not carried out, nobody told; else the refusal). An error (the second
// result) is a failure to ask the peer what a refusal meant.
func (s *Store) behindOutcome(ctx context.Context, p *peerConn, op *nsOp, e error) (error, error) {
	switch {
	case e == nil:
		return nil, nil
	case op.Op == cache.OpRename && errors.Is(e, fs.ErrNotExist):
		// Sent twice (a connection that died after the peer did it:
		// peer.Pool sends again), and the first did it?
		if done, err := s.renamedAlready(ctx, p, op); err != nil || done {
			return nil, err
		}
	case (op.Op == cache.OpDelete || op.Op == cache.OpRmdir) && errors.Is(e, fs.ErrNotExist):
		return nil, nil // a removal that finds its name gone: done all the same
	case op.Op == cache.OpMkdir && errors.Is(e, fs.ErrExist):
		made, err := s.madeAlready(ctx, p, op.Path)
		if err != nil || !made {
			return e, err
		}
		// Another writer's (or this MKDIR's, sent before): what is in
		// it is the peer's to say, not the empty listing made here.
		p.attrs.forgetTree(op.Path)
		s.notify(p.name, op.Path)
		return nil, nil
	case op.Op == cache.OpMkdir && op.replayed && errors.Is(e, fs.ErrNotExist):
		// Sent before (a connection that died with the answer, a run
		// that ended before the journal said done): maybe made then,
		// and its parent removed by what followed it. Nothing to
		// report to a program; the names show as the peer has them.
		s.log.Warn().Str("peer", p.name).Str("path", op.Path).Msg("mkdir not carried out again: its parent is gone on the peer (it may have been made and removed already)")
		return errGivenUp, nil
	case op.Op == cache.OpSetattr && errors.Is(e, fs.ErrNotExist):
		// Removed or renamed meanwhile by another writer: as if after
		// it (a directory renamed away keeps its old mode and times).
		s.log.Info().Str("peer", p.name).Str("path", op.Path).Msg("a directory's chmod or times written behind not carried out: no such directory on the peer any more (removed or renamed by another client, or its parent was)")
		return errGivenUp, nil
	}
	return e, nil
}
