package remote

// The upload of a local copy: a conditional PUT (and SETATTR) during
// this peer's turn, with what its failure leaves behind.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// mayHaveReached reports whether a request that failed with err may have
// reached the peer whole: not when the connection could not be made, the
// peer was skipped as down, or a PUT's source ended early (the peer
// discards a payload cut short).
func mayHaveReached(err error) bool {
	var ne *net.OpError
	return !errors.Is(err, errPeerDown) && !isLocal(err) &&
		!(errors.As(err, &ne) && ne.Op == "dial")
}

// waitTurn holds an upload back while another peer holds the write token,
// up to HoldTimeout.
func (s *Store) waitTurn(ctx context.Context) {
	s.mu.Lock()
	sy := s.syncer
	s.mu.Unlock()
	if sy == nil {
		return
	}
	timeout := time.NewTimer(s.opts.HoldTimeout)
	defer timeout.Stop()
	for {
		changed := sy.Changed() // taken before State: no change is missed
		st := sy.State()
		if !st.InRound || st.Holding {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-timeout.C:
			return
		case <-changed:
		}
	}
}

// maxResends bounds how many times upload sends a copy that keeps changing
// under it before it reports the failure (and the retry loop takes over).
const maxResends = 4

// An upload is one attempt to store a fileState on its peer, in steps:
// snapshot (what is to be sent, read under f.up after any wait), send
// (the conditional PUT, with the resolution of a conflict, then the
// SETATTR of a mode or mtime set here), and record the outcome: stored
// (the copy is clean, f's base is what was stored) or failed (what may
// have reached the peer is noted, the copy made durable, and a refusal
// for good sets it aside). It runs with f.up held throughout.
type upload struct {
	f      *fileState
	p      *peerConn
	ch     *cache.Handle // nil: nothing but attributes to send
	meta   cache.Meta    // ch's metadata as sent (its generation)
	key    cache.Key     // where it goes; a conflict copy moves it
	origin string        // the path it was to be stored at
	owner  string        // the peer identity the copy was written for
	base   peerproto.Version
	mode   fs.FileMode
	// setMode, setMtime, setAtime and setOwner (uid, gid) are the
	// attributes to apply after the PUT (or alone, without one); remote
	// is the peer's attributes at open.
	setMode  bool
	setMtime *time.Time
	setAtime *time.Time
	setOwner bool
	uid, gid uint32
	remote   peerproto.Entry

	// durable: the PUT takes an FSYNC behind it (putSynced), for a
	// writer's fsync.
	durable bool

	// The outcome, as send found it.
	put       bool            // the content was stored
	sentBytes int64           // the payload of the PUT that stored it
	stored    peerproto.Entry // the peer's attributes of what is stored
	conflict  *peerproto.FailError
}

// upload stores f on its peer if it has changes. inTurn is set when the
// caller holds the write token (or no round applies).
func (s *Store) upload(ctx context.Context, f *fileState, inTurn bool) error {
	return s.uploadWith(ctx, f, inTurn, false)
}

// uploadDurable is upload for a writer's fsync, waiting for a turn held
// elsewhere: the file, if sent, is durable on its peer when it returns,
// and so is what the peer stored from here before (putSynced).
func (s *Store) uploadDurable(ctx context.Context, f *fileState) error {
	return s.uploadWith(ctx, f, false, true)
}

// uploadWith is upload, durable (uploadDurable) or not.
func (s *Store) uploadWith(ctx context.Context, f *fileState, inTurn, durable bool) error {
	f.mu.Lock()
	parked := f.parked
	f.mu.Unlock()
	if parked != nil {
		// Set aside: only RetryUnsent sends it again. Its writer may
		// have written more since (the first write turned the record
		// back into one a reboot discards, whole): durable again, as
		// the close that set it aside left it.
		f.up.Lock()
		defer f.up.Unlock()
		if ch := f.ch.Load(); ch != nil {
			if err := ch.Persist(); err != nil {
				s.log.Error().Err(err).Str("unsent", parked.As).Msg("cannot make an unsent copy durable")
			}
		}
		return parked
	}
	if !f.live() {
		return nil // nothing to upload: never wait for a round
	}
	if !inTurn {
		s.waitTurn(ctx)
	}
	f.up.Lock()
	defer f.up.Unlock()
	u, err := s.snapshot(f)
	if u == nil || err != nil {
		return err
	}
	u.durable = durable
	f.setUploading(true)
	err = s.send(ctx, u)
	f.setUploading(false)
	u.p.unsynced.uncover(u.origin)
	if err != nil {
		return s.failed(u, err)
	}
	return s.stored(u)
}

// setUploading records whether an upload of f is under way (FileState).
func (f *fileState) setUploading(on bool) {
	f.mu.Lock()
	f.uploading = on
	f.mu.Unlock()
}

// snapshot reads what f's upload is to send, after any wait and under
// f.up: what was true before (a write, a chmod, an unlink) may have
// changed. It returns nil if there is nothing to send, and the error of
// a copy that cannot go (set aside, or for a peer not known yet).
func (s *Store) snapshot(f *fileState) (*upload, error) {
	u := &upload{f: f, ch: f.ch.Load()}
	if u.ch != nil {
		u.meta = u.ch.Meta()
	}
	f.mu.Lock()
	u.key, u.owner, u.base = f.key, f.owner, f.base
	u.origin = f.key.Path
	u.setMode, u.mode, u.setMtime, u.remote = f.setMode, f.mode, f.setMtime, f.remote
	u.setAtime, u.setOwner, u.uid, u.gid = f.setAtime, f.setOwner, f.uid, f.gid
	unlinked, parked := f.unlinked, f.parked
	f.mu.Unlock()
	if parked != nil {
		return nil, parked
	}
	if unlinked || (!u.meta.Dirty && !u.setMode && u.setMtime == nil && u.setAtime == nil && !u.setOwner) {
		return nil, nil
	}
	if !u.meta.Dirty {
		u.ch = nil
	}
	p, err := s.peer(u.key.Peer)
	if err != nil {
		s.mu.Lock()
		departed := s.departed[u.key.Peer]
		s.mu.Unlock()
		if departed {
			// Gone for good (it left the cluster, or was forgotten): a
			// peer that is merely down is still known (presence.go).
			return nil, s.park(f, u.ch, errPeerLeft)
		}
		// Not known yet (the tracker has not said): later.
		return nil, fmt.Errorf("remote: upload %s:%s: peer %s is not known yet: %w", u.key.Peer, u.key.Path, u.key.Peer, fusefs.ErrUnavailable)
	}
	u.p = p
	return u, nil
}

// send runs u's requests on one connection, and again if the copy changed
// while it was being sent (a truncation made it end early: what was sent
// is void, and the peer dropped it).
func (s *Store) send(ctx context.Context, u *upload) error {
	verb := "SETATTR"
	if u.ch != nil {
		verb = "PUT"
	}
	for attempt := 1; ; attempt++ {
		err := s.poolDo(ctx, u.p, verb, func(c *peer.Conn) error {
			// Its report may come before its answer, however long
			// the content takes to send.
			defer u.p.attrs.ownSending(u.key.Path)()
			// Only to the peer it was written for (identity.go); the
			// connection has just told who answers.
			if now := s.owner(u.p); u.owner != now {
				if u.owner == "" {
					return errNoOwner
				}
				return errForeign
			}
			// Not again if the content is stored: a retry on a new
			// connection (peer.Pool.Do) is for the SETATTR.
			if u.ch != nil && !u.put {
				if err := s.putContent(ctx, c, u); err != nil {
					return err
				}
			}
			return s.putAttrs(ctx, c, u)
		})
		if attempt < maxResends && errors.Is(err, peer.ErrSource) && u.ch.SettledGeneration() != u.meta.Gen {
			u.meta = u.ch.Meta()
			continue
		}
		return err
	}
}

// putContent sends u's copy with a PUT conditional on its base; a
// conflict is resolved (resolveConflict). Async: visible at once, durable
// at the next FSYNC (the user's fsync, a SYNC turn, or shutdown). Inline
// (one round trip) where a refusal cannot waste much: the payload goes
// out before the peer's checks.
func (s *Store) putContent(ctx context.Context, c *peer.Conn, u *upload) error {
	if u.base != peerproto.VersionNone {
		// New content: its directory's times are not to move (kept).
		dir := parent(u.key.Path)
		u.p.attrs.keepStart(dir)
		defer u.p.attrs.keepEnd(dir)
	}
	pd, err := s.put(ctx, c, u, u.base)
	var fe *peerproto.FailError
	if errors.As(err, &fe) && fe.Code == peerproto.CodeConflict {
		pd, err = s.resolveConflict(ctx, c, u, fe)
	}
	if err != nil {
		return err
	}
	u.put = true
	// What follows (a SETATTR) may fail: the copy's next upload starts
	// from what this one stored.
	u.f.mu.Lock()
	u.f.base = pd.Version()
	u.f.mu.Unlock()
	u.p.unsynced.mark(u.key.Path)
	u.p.attrs.ownChange(u.key.Path)
	u.keepPriv(ctx, c, pd)
	u.stored = peerproto.Entry{Type: peerproto.TypeFile, Mode: peerproto.UnixBits(u.mode), Size: pd.Size, Mtime: pd.Mtime, Ver: pd.Ver}
	if u.remote.Nlink > 1 {
		// Stored in place (the peer keeps a file with other names):
		// the same inode, with as many names.
		u.stored.Has = u.remote.Has & (peerproto.AttrIno | peerproto.AttrNlink)
		u.stored.Ino, u.stored.Nlink = u.remote.Ino, u.remote.Nlink
	}
	if a := pd.Attrs; a.Has != 0 {
		// What the peer says of the file now (a posix connection): its
		// ctime, which a later STAT would otherwise bring as a change.
		u.stored.Has |= a.Has
		u.stored.Ino, u.stored.Nlink, u.stored.Uid, u.stored.Gid = a.Ino, a.Nlink, a.Uid, a.Gid
		u.stored.Atime, u.stored.Ctime, u.stored.Blocks = a.Atime, a.Ctime, a.Blocks
	}
	// The peer keeps an existing file's mode (its setuid and setgid bits
	// as keepPriv says) and creates a new one 0644: apply ours where it
	// differs. (A new file's remote attributes are none: mode 0, which
	// compared as the peer's made a file created 0000 stay 0644 there.)
	peerMode := peerproto.FileMode(u.remote.Mode)
	if u.base == peerproto.VersionNone || u.conflict != nil {
		peerMode = 0o644
	}
	u.setMode = u.setMode || (u.mode != 0o644 && u.mode&^privModes != peerMode&^privModes)
	// A peer that keeps owners stores new content (a new inode, unless
	// the file has other links) as its own user, unless it gives it the
	// owner of the file it replaces itself (KeepsOwner): the file keeps
	// its owner, as a write to it on a local disk does. (A conflict copy
	// is a new file, the peer's own.)
	owned := u.remote.Has&(peerproto.AttrUid|peerproto.AttrGid) == peerproto.AttrUid|peerproto.AttrGid &&
		u.remote.Nlink < 2 && u.base != peerproto.VersionNone
	switch {
	case owned && c.Owners() && !u.setOwner && c.KeepsOwner() && u.conflict == nil:
		// The owner the peer kept is the file's right before the
		// rename: these remote attributes', unless another client
		// chowned it since (its report, or the attribute timeout,
		// brings that).
		u.stored.Has |= peerproto.AttrUid | peerproto.AttrGid
		u.stored.Uid, u.stored.Gid = u.remote.Uid, u.remote.Gid
	case owned && c.Owners() && !u.setOwner:
		u.setOwner, u.uid, u.gid = true, u.remote.Uid, u.remote.Gid
	}
	dir := parent(u.key.Path)
	switch {
	case pd.DirTimes && u.p.attrs.newer(dir, pd.DirCtime):
		// An answer read after a later one in the same directory
		// (uploads side by side): what it did shows already.
	case u.base == peerproto.VersionNone || u.conflict != nil:
		// A new entry in its directory (a conflict copy too), whose
		// times changed with it: as the peer says, where it does.
		at := pd.Mtime
		if pd.DirTimes {
			at = pd.DirMtime
		}
		u.p.attrs.entryChanged(dir, at, false, false)
		u.p.attrs.tie(dir, pd.DirMtime, pd.DirCtime, pd.DirTimes)
	case pd.DirTimes:
		// New content for the file: renamed over it on the peer, or
		// written in place through a temporary file beside it, which
		// moved its directory's times there; not on a local disk.
		u.p.attrs.kept(dir, pd.PreDirMtime, pd.PreDirCtime, pd.PreDirTimes)
		u.p.attrs.tie(dir, pd.DirMtime, pd.DirCtime, true)
	}
	return nil
}

// privModes are the mode bits that make a program run with its owner's
// or its group's rights.
const privModes = fs.ModeSetuid | fs.ModeSetgid

// setidFor reports whether a PUT of f's copy over version base on c says
// "setid" (peerproto.Put.Setid): the file has setuid or setgid bits here
// now, which a writer that may keep them left (root: the mount clears
// them at anybody else's write), and the peer has a file to keep them of.
func setidFor(c *peer.Conn, f *fileState, base peerproto.Version) bool {
	if !c.Setid() || base == peerproto.VersionNone {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return keepsAllPriv(f)
}

// keepsAllPriv reports whether f's copy has setuid or setgid bits, and
// every one its peer's file was last known to have: the peer keeps the
// bits its file has (all of them), so a copy that lost one here (another
// user's write, which clears setuid and may leave setgid) says no setid,
// and the SETATTR after its PUT gives the bits it kept. Called with f.mu
// held.
func keepsAllPriv(f *fileState) bool {
	return f.mode&privModes != 0 && peerproto.FileMode(f.remote.Mode)&privModes&^f.mode == 0
}

// setidBegin is setidFor for a PUT that reads f's copy as it sends it:
// where it says setid, a chmod that drops the bits here (another user's
// write) waits until done is called, once the PUT ended (chmodLocal), so
// that her bytes never go in it. (A stream checks the bits before its
// END instead: it may last as long as its writer writes.)
func setidBegin(c *peer.Conn, f *fileState, base peerproto.Version) (setid bool, done func()) {
	if !c.Setid() || base == peerproto.VersionNone {
		return false, func() {}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !keepsAllPriv(f) || f.setidUp != nil {
		return keepsAllPriv(f), func() {}
	}
	up := make(chan struct{})
	f.setidUp = up
	return true, func() {
		f.mu.Lock()
		f.setidUp = nil
		f.mu.Unlock()
		close(up)
	}
}

// keepPriv settles, once u's content is stored on c, the setuid and
// setgid bits of u.mode: the mode the mount shows and, where set, sends
// after it. They went if they went here since u's snapshot (another
// user's write, whose bytes the PUT may have carried: the copy is read as
// it is sent, and the PUT may have said setid), or the content became a
// conflict copy (a new file, which gets no mode of the file it is a copy
// of): the SETATTR after it then gives the mode without them. A peer that
// does not take setid (one without --allow-setuid) stored the content
// without them, as the mount then shows, unless they were set here
// (chmod) or the file is new, where the SETATTR asks for them.
//
// A peer that takes setid keeps the bits only where the content has the
// owner (setuid) or group (setgid) they give the rights of: what it kept
// is asked (a STAT, for a setuid file written by root only), so that the
// mount shows it.
func (u *upload) keepPriv(ctx context.Context, c *peer.Conn, pd peerproto.PutDone) {
	if u.mode&privModes == 0 {
		return
	}
	u.f.mu.Lock()
	now := u.f.mode
	u.f.mu.Unlock()
	switch {
	case now&privModes == 0 || u.conflict != nil:
		u.mode &^= privModes
		u.setMode = true
	case u.setMode || u.base == peerproto.VersionNone:
		// Set here (chmod), or a new file's (created with them): the
		// SETATTR after the PUT asks for them.
	case !c.Setid():
		u.mode &^= privModes
	default:
		e, err := c.Stat(ctx, u.key.Path)
		if err != nil || e.Ver != pd.Ver {
			u.mode &^= privModes // not known: the safe way to be wrong
			return
		}
		u.mode = u.mode&^privModes | peerproto.FileMode(e.Mode)&privModes
	}
}

// smallPut is the largest upload put reads from the copy's shared
// descriptor (see there).
const smallPut = 64 << 10

// put sends u's copy as it is now, conditional on base: what changed
// since base (upload_delta.go), or the whole file (fetching first what a
// partial copy lacks).
func (s *Store) put(ctx context.Context, c *peer.Conn, u *upload, base peerproto.Version) (peerproto.PutDone, error) {
	// Most of a large new file may be on the peer already: the rest,
	// and END (upload_stream.go).
	if pd, ok, err := s.finishStream(ctx, u, base); ok || err != nil {
		if err == nil {
			u.sentBytes = pd.Size
		}
		return pd, err
	}
	if rs, size, ok := s.deltaRanges(ctx, c, u, base); ok {
		return s.putDelta(ctx, c, u, base, rs, size)
	}
	if err := s.complete(ctx, c, u); err != nil {
		return peerproto.PutDone{}, err
	}
	size := u.ch.Size()
	setid, setidDone := setidBegin(c, u.f, base)
	defer setidDone()
	m := peerproto.Put{Name: u.key.Path, Size: size, Async: true, Inline: size <= inlineMax, Setid: setid}
	// A small file is read at offsets from the shared descriptor (it
	// joins the request line in one buffer); a larger one gets a second
	// descriptor at offset 0, which the kernel can sendfile. Opening one
	// costs four system calls, a tenth of a small file's upload.
	var src io.Reader = io.NewSectionReader(u.ch, 0, size)
	if size > smallPut {
		f, err := u.ch.Reopen()
		if err != nil {
			return peerproto.PutDone{}, fmt.Errorf("%w: %w", errLocal, err)
		}
		defer f.Close()
		src = f
	}
	m.SetCond(base)
	var pd peerproto.PutDone
	var err error
	if u.durable && m.Inline {
		pd, err = s.putSynced(ctx, c, u.p, m, src)
	} else {
		pd, err = c.PutWith(ctx, m, src, nil)
	}
	if err == nil {
		u.sentBytes = size
	}
	return pd, err
}

// resolveConflict handles a PUT refused because the peer's file is not
// the version u started from. If the peer's newer version is this very
// content (most likely this writer's own earlier attempt, stored after it
// gave up on it: the peer was stalled), it is stored already. If it is
// what an earlier, failed attempt sent, and the copy was written since,
// the copy replaces this writer's own version. Otherwise another writer
// replaced it: this copy is kept beside theirs as a conflict copy.
func (s *Store) resolveConflict(ctx context.Context, c *peer.Conn, u *upload, fe *peerproto.FailError) (peerproto.PutDone, error) {
	// A partial copy is completed from the version the peer has now:
	// its base is gone, and what is compared, or kept as a conflict
	// copy, is this writer's bytes over the peer's.
	if err := s.complete(ctx, c, u); err != nil {
		return peerproto.PutDone{}, err
	}
	e, holds := s.peerHolds(ctx, c, u.key.Path, u.ch, u.ch.Size(), u.f.sent)
	switch holds {
	case holdsCurrent:
		return peerproto.PutDone{Size: e.Size, Mtime: e.Mtime, Ver: e.Ver}, nil
	case holdsSent:
		pd, err := s.put(ctx, c, u, e.Version())
		if !errors.As(err, &fe) || fe.Code != peerproto.CodeConflict {
			return pd, err
		}
	}
	pd, err := s.putConflictCopy(ctx, c, u.f, u.key, u.ch)
	if err != nil {
		return pd, err
	}
	u.sentBytes = pd.Size
	u.key = u.f.currentKey()
	u.conflict = fe
	return pd, nil
}

// putAttrs applies the mode and mtime set here (or the mode a new file
// must get), after the content if any.
func (s *Store) putAttrs(ctx context.Context, c *peer.Conn, u *upload) error {
	if !u.setMode && u.setMtime == nil && u.setAtime == nil && !u.setOwner {
		return nil
	}
	sa := peerproto.Setattr{Name: u.key.Path, HasMode: u.setMode, Mode: peerproto.UnixBits(u.mode)}
	if u.setMtime != nil {
		sa.HasMtime, sa.Mtime = true, u.setMtime.UnixNano()
	}
	if u.setAtime != nil {
		sa.HasAtime, sa.Atime = true, u.setAtime.UnixNano()
	}
	if u.setOwner && c.Owners() {
		// Before the mode, at the peer too: a chown clears setuid bits.
		sa.HasUid, sa.Uid, sa.HasGid, sa.Gid = true, u.uid, true, u.gid
	}
	if !sa.HasMode && !sa.HasMtime && !sa.HasAtime && !sa.HasUid {
		return nil
	}
	e, err := c.Setattr(ctx, sa)
	if err != nil {
		return err
	}
	u.stored = e
	u.p.unsynced.mark(u.key.Path)
	return nil
}

// failed records what a failed upload leaves behind and returns the
// writer's error: the copy is kept (durably) and retried, unless the
// peer refused it for good, which sets it aside.
func (s *Store) failed(u *upload, err error) error {
	final := permanent(err)
	if !final {
		s.log.Warn().Err(err).Str("remote_peer", u.key.Peer).Str("path", u.key.Path).Msg("upload failed; the local copy is kept and retried")
	}
	if ch := u.ch; ch != nil {
		// The peer may yet store what was sent (see fileState.sent),
		// unless nothing reached it: then an earlier attempt's version
		// is still the one it may hold.
		// (Hashed up to sumMax only: this runs at every failed attempt.
		// A larger copy unchanged since is still recognised by its
		// current content, peerHolds.)
		if mayHaveReached(err) && !ch.Meta().Partial && ch.Size() <= sumMax {
			if v, ok := digestOf(ch, ch.Size()); ok {
				u.f.sent = &v
				// Kept with the copy: a restart must not forget it.
				if serr := ch.SetSent(v.String()); serr != nil {
					s.log.Warn().Err(serr).Str("path", u.key.Path).Msg("cannot record the failed attempt")
				}
			}
		}
		if u.put {
			// Stored, but its SETATTR failed: the next upload, also
			// after a restart, is conditional on what was stored.
			if berr := ch.SetBase(s.cacheVersion(u.p, u.stored.Version())); berr != nil {
				s.log.Warn().Err(berr).Str("path", u.key.Path).Msg("cannot record the uploaded version")
			}
		}
		// The local copy is now the only one: make it survive even a
		// power loss before close() reports the failure.
		if perr := ch.Persist(); perr != nil {
			s.log.Error().Err(perr).Str("path", u.key.Path).Msg("cannot make the unuploaded copy durable")
		}
	}
	u.p.attrs.forget(u.key.Path)
	if final {
		return s.park(u.f, u.ch, err)
	}
	return netErr(u.p, err)
}

// stored records a successful upload: the copy is clean (unless written
// meanwhile), f starts from what was stored, and a conflict copy is
// reported to every writer of f.
func (s *Store) stored(u *upload) error {
	f, e := u.f, u.stored
	clean := false
	if u.put {
		f.sent = nil
		s.countBytes(u.p, 0, u.sentBytes)
		var err error
		clean, err = u.ch.MarkClean(u.meta.Gen, e.Size, s.cacheVersion(u.p, e.Version()))
		if err != nil {
			s.log.Warn().Err(err).Str("path", u.key.Path).Msg("cannot mark cache entry clean")
		}
		if !clean {
			// Written meanwhile (or the record could not be written):
			// the copy's writes continue from what was stored, also for
			// an upload after a restart.
			if err := errors.Join(u.ch.SetBase(s.cacheVersion(u.p, e.Version())), u.ch.SetSent("")); err != nil {
				s.log.Warn().Err(err).Str("path", u.key.Path).Msg("cannot record the uploaded version")
			}
		}
	}
	f.mu.Lock()
	f.remote = e
	f.base = e.Version()
	peerTimes := false // the times shown are the peer's now
	if clean && f.setMtime == u.setMtime && f.mode == u.mode && f.uid == u.uid && f.gid == u.gid && e.Has&peerproto.AttrCtime != 0 {
		// Nothing changed here since the snapshot: the times shown from
		// now on are the peer's, as once the copy is let go of.
		f.mtime, f.ctime = time.Unix(0, e.Mtime), time.Unix(0, e.Ctime)
		f.stamped = f.ctime
		peerTimes = true
	}
	f.failures, f.retryAt = 0, time.Time{}
	f.streamTried, f.streamHole, f.streamAt, f.seqEnd = false, false, 0, 0
	if f.mode == u.mode {
		// (A chmod made while the upload was on its way is still to
		// go: the upload set out without it.)
		f.setMode = false
	}
	if f.setMtime == u.setMtime {
		f.setMtime = nil
	}
	if f.setAtime == u.setAtime {
		f.setAtime = nil
	}
	if f.uid == u.uid && f.gid == u.gid {
		f.setOwner = false
	}
	f.mu.Unlock()
	u.p.attrs.changedIno(linkedIno(u.remote)) // its other names: new content
	u.p.attrs.remember(u.key.Path, e, true)
	if s.dropIfDone(f) {
		f.releaseCopy()
	}
	s.markStored(u.key)
	if peerTimes {
		s.notifyStored(u.key.Peer, u.key.Path)
	}
	s.log.Debug().Str("remote_peer", u.key.Peer).Str("path", u.key.Path).Int64("size", e.Size).Msg("uploaded")
	if u.conflict == nil {
		return nil
	}
	s.notify(u.key.Peer, parent(u.key.Path))
	var err error = &ConflictError{Peer: u.key.Peer, Path: u.origin, KeptAs: u.key.Path, Reason: u.conflict.Text}
	s.mu.Lock()
	for _, h := range s.handles {
		if h.state == f {
			h.diverted.Store(&err)
		}
	}
	s.mu.Unlock()
	return err
}

// flushTree uploads local changes at or under path before a rename. It
// does not wait for a round held by another peer: the rename itself is not
// held either, and must move what the writer wrote.
func (s *Store) flushTree(ctx context.Context, peerName, path string) error {
	for _, f := range s.statesUnder(peerName, path) {
		if err := s.upload(ctx, f, true); err != nil {
			return err
		}
	}
	return nil
}
