package remote

// The namespace: attributes and listings (from the attribute cache, or
// STAT and LIST), and the operations on names: mkdir, unlink, rmdir,
// rename and setattr. Each sees this mount's local copies too: files
// created or written here that the peer does not have yet.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// listing returns dir's entries from a listing younger than AttrTTL,
// fetching one with LIST if needed. Concurrent callers for one directory
// share a single LIST, and its failure too: retrying at once would make
// each waiter wait out its own timeout.
func (s *Store) listing(ctx context.Context, p *peerConn, dir string) ([]peerproto.Entry, error) {
	list, err := s.peerListing(ctx, p, dir)
	if err != nil {
		return nil, err
	}
	// Without what this mount removed and its peer may not have yet.
	return s.ns.visible(p.name, dir, list), nil
}

// maxListAgain bounds how many times peerListing asks again after its
// LIST was superseded (attrCache.forget during it); the last answer is
// used, though not kept, after that.
const maxListAgain = 3

// peerListing is listing as the peer gave it.
func (s *Store) peerListing(ctx context.Context, p *peerConn, dir string) ([]peerproto.Entry, error) {
	for again := 0; ; again++ {
		if list, ok := p.attrs.listed(dir); ok {
			return list, nil
		}
		call, leader := p.attrs.beginList(dir)
		if !leader {
			select {
			case <-call.done:
				if call.err != nil {
					return nil, call.err
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		var list []peerproto.Entry
		err := s.poolDo(ctx, p, "LIST", func(c *peer.Conn) error {
			var err error
			list, err = c.List(ctx, dir)
			return err
		})
		kept := p.attrs.endList(dir, call, list, netErr(p, err))
		if err != nil {
			return nil, call.err
		}
		if !kept && again < maxListAgain {
			continue // the answer may predate a change this mount made
		}
		return list, nil
	}
}

// stat returns the remote attributes of path, from cache when fresh. A
// name this mount removed is not there, whatever its peer says yet.
func (s *Store) stat(ctx context.Context, p *peerConn, path string) (peerproto.Entry, error) {
	if s.ns.hides(p.name, path) {
		return peerproto.Entry{}, fmt.Errorf("remote: %s:%s: removed here: %w", p.name, path, fs.ErrNotExist)
	}
	if e, exists, ok := p.attrs.cached(path); ok {
		if !exists {
			return e, fmt.Errorf("remote: %s:%s: %w", p.name, path, fs.ErrNotExist)
		}
		return e, nil
	}
	if p.attrs.wantList(path) {
		if _, err := s.listing(ctx, p, parent(path)); err == nil {
			if e, exists, ok := p.attrs.cached(path); ok {
				if !exists {
					return e, fmt.Errorf("remote: %s:%s: %w", p.name, path, fs.ErrNotExist)
				}
				return e, nil
			}
		}
	}
	var e peerproto.Entry
	gen, epoch := p.attrs.statBegin(path)
	err := s.poolDo(ctx, p, "STAT", func(c *peer.Conn) error {
		var err error
		e, err = c.Stat(ctx, path)
		return err
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			p.attrs.missing(path)
		}
		return e, netErr(p, err)
	}
	p.attrs.rememberStat(path, e, gen, epoch)
	return e, nil
}

// Stat implements fusefs.Store.
func (s *Store) Stat(ctx context.Context, peerName, path string) (fs.FileInfo, error) {
	if fi := s.localInfo(cache.Key{Peer: peerName, Path: path}); fi != nil {
		return fi, nil
	}
	p, err := s.peer(peerName)
	if err != nil {
		return nil, err
	}
	e, err := s.stat(ctx, p, path)
	if path == "" {
		switch {
		case err == nil:
			p.attrs.rootSeen(e)
		case errors.Is(err, fusefs.ErrUnavailable):
			// Unreachable: the folder itself is still there (the
			// tracker lists the peer); what is in it will say EIO
			// unless it is local.
			e, err = p.attrs.lastRoot(), nil
		}
	}
	if err != nil {
		return nil, err
	}
	return p.info(path, e), nil
}

// List implements fusefs.Store: one LIST round trip, with local files not
// yet uploaded shown as well.
func (s *Store) List(ctx context.Context, peerName, dir string) ([]fs.FileInfo, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return nil, err
	}
	entries, err := s.listing(ctx, p, dir)
	if err != nil {
		return nil, err
	}
	p.attrs.shownIn(dir, entries) // a copy: see listing
	out := make([]fs.FileInfo, 0, len(entries))
	for _, e := range entries {
		out = append(out, p.shownInfo(child(dir, e.Name), e))
	}
	// Overlay local files: new ones not yet uploaded, and sizes of open ones.
	for _, f := range s.statesIn(peerName, dir) {
		name := base(f.currentKey().Path)
		fi := f.info(name, p.link.owners())
		if i := slices.IndexFunc(out, func(x fs.FileInfo) bool { return x.Name() == name }); i >= 0 {
			out[i] = fi
		} else {
			out = append(out, fi)
		}
	}
	slices.SortFunc(out, func(a, b fs.FileInfo) int {
		switch {
		case a.Name() < b.Name():
			return -1
		case a.Name() > b.Name():
			return 1
		}
		return 0
	})
	return out, nil
}

// do runs fn on a connection to peerName and maps the error.
// verb names the request in measurements.
func (s *Store) do(ctx context.Context, verb, peerName string, fn func(p *peerConn, c *peer.Conn) error) (*peerConn, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return nil, err
	}
	err = s.poolDo(ctx, p, verb, func(c *peer.Conn) error { return fn(p, c) })
	return p, netErr(p, err)
}

// Mkdir implements fusefs.Store. A file created here and not yet
// uploaded holds the name (EEXIST), though the peer may not know it yet.
// It is written behind where it may be (mkdirBehind). The new directory and its parent are STATed behind the MKDIR, in the
// same round trip (peer.Conn.WithStats): the parent's times and link
// count change with it.
func (s *Store) Mkdir(ctx context.Context, peerName, path string, mode fs.FileMode) (fs.FileInfo, error) {
	if s.localInfo(cache.Key{Peer: peerName, Path: path}) != nil {
		return nil, fmt.Errorf("remote: mkdir %s:%s: a file of that name was created here: %w", peerName, path, fs.ErrExist)
	}
	if p, err := s.peer(peerName); err == nil {
		if fi, ok := s.mkdirBehind(ctx, p, path, mode); ok {
			return fi, nil
		}
	}
	var res []peer.StatResult
	p, err := s.do(ctx, "MKDIR", peerName, func(p *peerConn, c *peer.Conn) error {
		p.attrs.ownChange(path)
		var err error
		m := peerproto.Mkdir{Name: path, Mode: peerproto.UnixBits(mode)}
		if caller, ok := fusefs.CallerOf(ctx); ok && c.Owners() && c.MkdirOwner() {
			// Made the caller's by the peer, in this one request.
			m.HasOwner, m.Uid, m.Gid = true, caller.Uid, caller.Gid
		}
		_, res, err = s.withStats(ctx, c, m, path, parent(path))
		if err != nil {
			return err
		}
		if res[0].Err != nil {
			return res[0].Err
		}
		if m.Mode == 0 {
			// MKDIR's mode 0 is the peer's default: 0000 takes a SETATTR.
			if res[0].Entry, err = c.Setattr(ctx, peerproto.Setattr{Name: path, HasMode: true}); err != nil {
				return err
			}
		}
		if !m.HasOwner {
			res[0].Entry, err = s.ownNew(ctx, c, path, res[0].Entry, res[1])
		}
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
	p.unsynced.mark(path) // the new entry is durable at the next FSYNC
	// Just created, so empty: lookups of new names in it (a program
	// filling it) are answered without a STAT each.
	p.attrs.emptyDir(path)
	s.notify(peerName, parent(path))
	return p.info(path, res[0].Entry), nil
}

// withStats runs m on c with a STAT of each of paths behind it, in one
// round trip (peer.Conn.WithStats); a path given twice is asked once,
// and gets the same result.
func (s *Store) withStats(ctx context.Context, c *peer.Conn, m peerproto.Message, paths ...string) (peerproto.Message, []peer.StatResult, error) {
	uniq := slices.Compact(slices.Sorted(slices.Values(paths)))
	reply, got, err := c.WithStats(ctx, m, uniq...)
	if got == nil {
		return reply, nil, err
	}
	res := make([]peer.StatResult, len(paths))
	for i, path := range paths {
		res[i] = got[slices.Index(uniq, path)]
	}
	return reply, res, err
}

// Remove implements fusefs.Store. The local copy (if any) is locked
// across the DELETE so that no upload can recreate the file after it, and
// forgotten only once the peer has deleted it. The parent is STATed
// behind the DELETE (its times changed).
func (s *Store) Remove(ctx context.Context, peerName, path string) error {
	key := cache.Key{Peer: peerName, Path: path}
	s.mu.Lock()
	f := s.files[key]
	s.mu.Unlock()
	if f == nil && s.ns.hides(peerName, path) {
		return fmt.Errorf("remote: unlink %s:%s: removed here already: %w", peerName, path, fs.ErrNotExist)
	}
	if p, err := s.peer(peerName); err == nil && s.writeBehind(p, key, f, false) {
		if err := s.removeBehind(p, path, false); err == nil {
			s.dropCopy(key)
			return nil
		}
		// The journal could not take it: done synchronously.
	}
	s.keepOpen(ctx, key, f)
	if f != nil {
		f.up.Lock()
		defer f.up.Unlock()
	}
	var res []peer.StatResult
	var linked uint64
	p, err := s.do(ctx, "DELETE", peerName, func(p *peerConn, c *peer.Conn) error {
		p.attrs.ownChange(path)
		linked = p.attrs.linked(path)
		var err error
		_, res, err = s.withStats(ctx, c, peerproto.Delete{Name: path}, parent(path))
		return err
	})
	if p != nil {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			p.attrs.gone(path)
		} else {
			p.attrs.forget(path)
		}
		p.attrs.changedIno(linked) // the other names lost a link
		p.attrs.learned(parent(path), res, 0)
		if err == nil {
			p.unsynced.mark(parent(path))
		}
	}
	if f != nil && errors.Is(err, fs.ErrNotExist) {
		err = nil // created here and never uploaded: removing the local copy is all
	}
	if err != nil {
		return err
	}
	if f != nil {
		s.unlinkLocked(f)
	}
	s.dropCopy(key)
	return nil
}

// filesIn counts the files inside directory dir (at any depth) that this
// mount has and its peer may not: created or written here and not yet
// uploaded, or open here. The peer cannot see them, so every namespace
// operation on dir must ask here too: a directory holding one is not
// empty.
func (s *Store) filesIn(peerName, dir string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for key, f := range s.files {
		if key.Peer == peerName && key.Path != dir && under(key.Path, dir) && !f.isUnlinked() {
			n++
		}
	}
	return n
}

// statesIn returns the local copies directly in directory dir, not
// unlinked.
func (s *Store) statesIn(peerName, dir string) []*fileState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*fileState
	for key, f := range s.files {
		if key.Peer == peerName && parent(key.Path) == dir && !f.isUnlinked() {
			out = append(out, f)
		}
	}
	return out
}

// notEmpty is the error of removing or replacing directory path, which
// holds n files of this mount the peer does not know yet.
func notEmpty(op, peerName, path string, n int) error {
	return fmt.Errorf("remote: %s %s:%s: %d files created or written here are in it: %w", op, peerName, path, n, fusefs.ErrNotEmpty)
}

// Rmdir implements fusefs.Store. A directory holding files this mount
// created or wrote and has not uploaded is not empty (ENOTEMPTY), though
// the peer may not know them yet.
func (s *Store) Rmdir(ctx context.Context, peerName, path string) error {
	if n := s.filesIn(peerName, path); n > 0 {
		return notEmpty("rmdir", peerName, path, n)
	}
	if s.ns.hides(peerName, path) {
		return fmt.Errorf("remote: rmdir %s:%s: removed here already: %w", peerName, path, fs.ErrNotExist)
	}
	if p, err := s.peer(peerName); err == nil && s.writeBehind(p, cache.Key{Peer: peerName, Path: path}, nil, true) {
		// Empty if every entry the peer has there was removed here.
		list, err := s.listing(ctx, p, path)
		if err != nil {
			return err
		}
		if len(list) > 0 {
			return notEmptyOnPeer(peerName, path)
		}
		if err := s.removeBehind(p, path, true); err == nil {
			return nil
		}
	}
	var res []peer.StatResult
	p, err := s.do(ctx, "RMDIR", peerName, func(p *peerConn, c *peer.Conn) error {
		p.attrs.ownChange(path)
		var err error
		_, res, err = s.withStats(ctx, c, peerproto.Rmdir{Name: path}, parent(path))
		return err
	})
	if p != nil {
		if err == nil {
			p.attrs.gone(path)
			p.unsynced.mark(parent(path))
		} else {
			p.attrs.forgetTree(path)
		}
		p.attrs.learned(parent(path), res, 0)
	}
	return err
}

// Rename implements fusefs.Store. Local changes to the source are uploaded
// first, so the rename moves what the writer wrote; the local copies at
// both names are locked across the RENAME so no upload lands in between
// under a stale name.
func (s *Store) Rename(ctx context.Context, peerName, from, to string) error {
	if from != to && !under(to, from) {
		if n := s.filesIn(peerName, to); n > 0 {
			// to is a directory holding files the peer may not know
			// yet: replacing it would drop them. Refused as a local
			// filesystem refuses it.
			fi, err := s.Stat(ctx, peerName, from)
			switch {
			case err != nil:
				return err
			case fi.IsDir():
				return notEmpty("rename over", peerName, to, n)
			default:
				return fmt.Errorf("remote: rename %s:%s over the directory %s: %w", peerName, from, to, fusefs.ErrIsDir)
			}
		}
	}
	if s.ns.hides(peerName, from) && s.localInfo(cache.Key{Peer: peerName, Path: from}) == nil {
		return fmt.Errorf("remote: rename %s:%s: removed here: %w", peerName, from, fs.ErrNotExist)
	}
	if p, err := s.peer(peerName); err == nil && s.renameBehindOK(p, from, to) {
		if err := s.renameBehind(p, from, to); err == nil {
			return nil
		}
		// The journal could not take it: done synchronously.
	}
	if err := s.flushTree(ctx, peerName, from); err != nil {
		return err
	}
	moved := s.statesUnder(peerName, from)
	replaced := s.statesUnder(peerName, to)
	if from == to {
		replaced = nil // rename(x, x) changes nothing
	}
	// Their up locks in one order, by path (moved and replaced overlap
	// only for rename(x, x), where replaced is empty).
	locked := append(append([]*fileState(nil), moved...), replaced...)
	keys := make([]string, len(locked))
	for i, f := range locked {
		keys[i] = f.currentKey().Path
	}
	sort.Sort(byPath{locked, keys})
	lockAll(locked)
	defer unlockAll(locked)

	var res []peer.StatResult
	var linked, replacedIno uint64
	p, err := s.do(ctx, "RENAME", peerName, func(p *peerConn, c *peer.Conn) error {
		p.attrs.ownChange(from, to)
		linked, replacedIno = p.attrs.linked(from), p.attrs.linked(to)
		var err error
		// The moved entry's ctime, and both directories' times, changed;
		// and from is gone, unless it and to were names of one file,
		// which rename(2) leaves as they are.
		_, res, err = s.withStats(ctx, c, peerproto.Rename{From: from, To: to}, to, parent(from), parent(to), from)
		return err
	})
	if err == nil && from != to && sameFile(res, 0, 3) {
		// Two names of one inode: nothing moved (and the kernel, which
		// sees two inodes here, drops the old name's entry only).
		p.attrs.learned(from, res, 3)
		p.attrs.learned(to, res, 0)
		return nil
	}
	if p != nil {
		if err == nil {
			p.attrs.moved(from, to)
			p.attrs.changedIno(linked)      // the moved file's other names: its ctime
			p.attrs.changedIno(replacedIno) // the replaced file's other names lost a link
			p.attrs.learned(to, res, 0)
			p.attrs.learned(parent(from), res, 1)
			p.attrs.learned(parent(to), res, 2)
			// Durable at the next FSYNC: the file (or directory) under
			// its new name, and the directory it left.
			p.unsynced.moved(from, to)
		} else {
			p.attrs.forgetTree(from)
			p.attrs.forgetTree(to)
		}
	}
	if err != nil {
		return err
	}
	// Whatever was at the target is gone: a writer still holding it open
	// must not upload over the renamed file.
	for _, f := range replaced {
		s.unlinkLocked(f)
	}
	s.mu.Lock()
	for _, f := range moved {
		f.mu.Lock()
		if s.files[f.key] == f {
			delete(s.files, f.key)
		}
		f.key = cache.Key{Peer: peerName, Path: to + f.key.Path[len(from):]}
		f.dropStream()
		f.mu.Unlock()
	}
	for _, f := range moved {
		f.mu.Lock()
		if !f.unlinked {
			s.files[f.key] = f
		}
		f.mu.Unlock()
	}
	s.mu.Unlock()
	_ = s.cache.Rename(cache.Key{Peer: peerName, Path: from}, cache.Key{Peer: peerName, Path: to})
	return nil
}

// sameFile reports whether the i-th and j-th results of STATs behind a
// request found one file (one inode) under two names.
func sameFile(res []peer.StatResult, i, j int) bool {
	if i >= len(res) || j >= len(res) || res[i].Err != nil || res[j].Err != nil {
		return false
	}
	a, b := res[i].Entry, res[j].Entry
	return a.Has&b.Has&peerproto.AttrIno != 0 && a.Ino == b.Ino && !a.IsDir()
}
