package remote

// The upload of a local copy: a conditional PUT (and SETATTR) during
// this peer's turn, with what its failure leaves behind.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/cache"
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

// upload stores f on its peer if it has changes. inTurn is set when the
// caller holds the write token (or no round applies).
func (s *Store) upload(ctx context.Context, f *fileState, inTurn bool) error {
	s.mu.Lock()
	idle, parked := f.unlinked || !f.pending(), f.parked
	s.mu.Unlock()
	if parked != nil {
		return parked // set aside: only RetryUnsent sends it again
	}
	if idle {
		return nil // nothing to upload: never wait for a round
	}
	if !inTurn {
		s.waitTurn(ctx)
	}
	f.up.Lock()
	defer f.up.Unlock()
	// Everything is read after waiting and under f.up: what was true
	// before the wait may have changed (a write, a chmod, an unlink).
	ch := f.ch.Load()
	var meta cache.Meta
	if ch != nil {
		meta = ch.Meta()
	}
	s.mu.Lock()
	key, unlinked := f.key, f.unlinked
	setMode, mode := f.setMode, f.mode
	setMtime := f.setMtime
	base, owner := f.base, f.owner
	parked = f.parked
	s.mu.Unlock()
	if parked != nil {
		return parked
	}
	if unlinked || (!meta.Dirty && !setMode && setMtime == nil) {
		return nil
	}
	p, err := s.peer(key.Peer)
	if err != nil {
		s.mu.Lock()
		departed := s.departed[key.Peer]
		s.mu.Unlock()
		if departed {
			// Gone for good (it left the cluster, or was forgotten): a
			// peer that is merely down is still known (presence.go).
			return s.park(f, ch, errPeerLeft)
		}
		// Not known yet (the tracker has not said): later.
		return fmt.Errorf("remote: upload %s:%s: peer %s is not known yet: %w", key.Peer, key.Path, key.Peer, syscall.EIO)
	}
	var e peerproto.Entry
	var conflict *peerproto.FailError
	put := false
	verb := "SETATTR"
	if meta.Dirty {
		verb = "PUT"
	}
	s.mu.Lock()
	f.uploading = true
	s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		err = s.poolDo(ctx, p, verb, func(c *peer.Conn) error {
			// Only to the peer it was written for (identity.go); the
			// connection has just told who answers.
			if now := s.owner(p); owner != now {
				if owner == "" {
					return errNoOwner
				}
				return errForeign
			}
			if meta.Dirty {
				// A second descriptor at offset 0 lets the kernel sendfile it.
				src, err := ch.Reopen()
				if err != nil {
					return fmt.Errorf("%w: %w", errLocal, err)
				}
				defer src.Close()
				// Async: visible at once, durable at the next FSYNC (the
				// user's fsync, a SYNC turn, or shutdown).
				// Inline (one round trip) where a refusal cannot waste
				// much: the payload goes out before the peer's checks.
				size := ch.Size()
				m := peerproto.Put{Name: key.Path, Size: size, Async: true, Inline: size <= inlineMax}
				m.SetCond(base)
				pd, err := c.PutWith(ctx, m, src, nil)
				var fe *peerproto.FailError
				if errors.As(err, &fe) && fe.Code == peerproto.CodeConflict {
					e, holds := s.peerHolds(ctx, c, key.Path, ch, size, f.sent)
					switch holds {
					case holdsCurrent:
						// The peer's newer version is this very content: most
						// likely our own earlier attempt, stored after we gave
						// up on it (the peer was stalled). Nothing to keep.
						pd = peerproto.PutDone{Size: e.Size, Mtime: e.Mtime, Ver: e.Ver}
						err = nil
					case holdsSent:
						// The peer's newer version is what an earlier, failed
						// attempt sent (stored after we gave up on it), and
						// this copy was written since: replace our own version.
						if src2, rerr := ch.Reopen(); rerr != nil {
							err = fmt.Errorf("%w: %w", errLocal, rerr)
						} else {
							m := peerproto.Put{Name: key.Path, Size: size, Async: true, Inline: size <= inlineMax}
							m.SetCond(e.Version())
							pd, err = c.PutWith(ctx, m, src2, nil)
							src2.Close()
						}
					}
				}
				if errors.As(err, &fe) && fe.Code == peerproto.CodeConflict {
					// Someone else replaced the version this copy started
					// from: keep ours beside theirs under a clear name.
					if pd, err = s.putConflictCopy(ctx, c, f, key, ch); err != nil {
						return err
					}
					key = f.keyNow(s)
					conflict = fe
				} else if err != nil {
					return err
				}
				put = true
				// What follows (a SETATTR) may fail: the copy's next
				// upload starts from what this one stored.
				s.mu.Lock()
				f.base = pd.Version()
				s.mu.Unlock()
				p.unsynced.mark(key.Path)
				e = peerproto.Entry{Type: peerproto.TypeFile, Mode: 0o644, Size: pd.Size, Mtime: pd.Mtime, Ver: pd.Ver}
				// The peer keeps an existing file's mode and creates a new
				// one 0644: apply ours where it differs.
				setMode = setMode || (mode != 0o644 && mode != fs.FileMode(f.remote.Mode).Perm())
			}
			if setMode || setMtime != nil {
				sa := peerproto.Setattr{Name: key.Path, HasMode: setMode, Mode: uint32(mode.Perm())}
				if setMtime != nil {
					sa.HasMtime, sa.Mtime = true, setMtime.UnixNano()
				}
				var err error
				if e, err = c.Setattr(ctx, sa); err != nil {
					return err
				}
				p.unsynced.mark(key.Path)
			}
			return nil
		})
		if attempt < maxResends && errors.Is(err, peer.ErrSource) && ch.SettledGeneration() != meta.Gen {
			// The copy changed while it was being sent (a truncation
			// made it end early): what was sent is void, and the peer
			// dropped it. Send the copy as it is now.
			meta = ch.Meta()
			continue
		}
		break
	}
	s.mu.Lock()
	f.uploading = false
	s.mu.Unlock()
	if err != nil {
		final := permanent(err)
		if !final {
			s.log.Warn().Err(err).Str("remote_peer", key.Peer).Str("path", key.Path).Msg("upload failed; the local copy is kept and retried")
		}
		if meta.Dirty {
			// The peer may yet store what was sent (see fileState.sent),
			// unless nothing reached it: then an earlier attempt's
			// version is still the one it may hold.
			if mayHaveReached(err) {
				if v, ok := digestOf(ch, ch.Size()); ok {
					f.sent = &v
					// Kept with the copy: a restart must not forget it.
					if serr := ch.SetSent(v.String()); serr != nil {
						s.log.Warn().Err(serr).Str("path", key.Path).Msg("cannot record the failed attempt")
					}
				}
			}
			if put {
				// Stored, but its SETATTR failed: the next upload, also
				// after a restart, is conditional on what was stored.
				if berr := ch.SetBase(s.cacheVersion(p, e.Version())); berr != nil {
					s.log.Warn().Err(berr).Str("path", key.Path).Msg("cannot record the uploaded version")
				}
			}
			// The local copy is now the only one: make it survive even
			// a power loss before close() reports the failure.
			if perr := ch.Persist(); perr != nil {
				s.log.Error().Err(perr).Str("path", key.Path).Msg("cannot make the unuploaded copy durable")
			}
		}
		p.attrs.forget(key.Path)
		if final {
			return s.park(f, ch, err)
		}
		return netErr(p, err)
	}
	if put {
		f.sent = nil
		s.countBytes(p, 0, e.Size)
		clean, err := ch.MarkClean(meta.Gen, e.Size, s.cacheVersion(p, e.Version()))
		if err != nil {
			s.log.Warn().Err(err).Str("path", key.Path).Msg("cannot mark cache entry clean")
		}
		if !clean {
			// Written meanwhile (or the record could not be written):
			// the copy's writes continue from what was stored, also for
			// an upload after a restart.
			if err := errors.Join(ch.SetBase(s.cacheVersion(p, e.Version())), ch.SetSent("")); err != nil {
				s.log.Warn().Err(err).Str("path", key.Path).Msg("cannot record the uploaded version")
			}
		}
	}
	s.mu.Lock()
	f.remote = e
	f.base = e.Version()
	f.failures, f.retryAt = 0, time.Time{}
	f.setMode = false
	if f.setMtime == setMtime {
		f.setMtime = nil
	}
	drop := f.refs <= 0 && !f.pending()
	if drop && s.files[f.key] == f {
		delete(s.files, f.key)
	}
	s.mu.Unlock()
	p.attrs.remember(key.Path, e, true)
	if drop {
		f.releaseCopy()
	}
	s.markStored(key)
	s.log.Debug().Str("peer", key.Peer).Str("path", key.Path).Int64("size", e.Size).Msg("uploaded")
	if conflict != nil {
		s.notify(key.Peer, parent(key.Path))
		err := fmt.Errorf("remote: %s: %s; this writer's data is kept as %q: %w", key.Peer, conflict.Text, key.Path, syscall.ESTALE)
		s.mu.Lock()
		for _, h := range s.handles {
			if h.state == f {
				h.diverted = err
			}
		}
		s.mu.Unlock()
		return err
	}
	return nil
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
