package remote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

var _ fusefs.UnsentController = (*Store)(nil)

// A copy that can never be uploaded as it is (the peer refuses the file
// itself: its name, its directory gone, a read-only export, no
// permission; or the peer is not the one it was written for) is set
// aside: "unsent". Retrying it could only fail again, and it must not
// hold up anything else: other files' fsync, the SYNC round, the retry
// loop and unmount carry on without it. Its writer hears of it at the
// close or fsync that failed, and later fsyncs of the same descriptor. The
// copy is kept in the cache (durably) under the reserved cache peer
// unsentPeer, at "<peer>/<path>", out of the way of a new file of the
// same name; Unsent lists such copies (peerfs status, and the mount's
// .peerfs/unsent folder, where they can be read), RetryUnsent tries one
// again (after the user removed the cause) and DropUnsent deletes it.

// unsentPeer is the cache's peer name for copies set aside; no peer name
// can be it.
const unsentPeer = "\x00unsent"

// errSetAside is wrapped in every ParkedError.
var errSetAside = errors.New("set aside")

// ParkedError is the error of an upload that will not be retried by
// itself: the copy is set aside (see above).
type ParkedError struct {
	Peer, Path string // where the file was to be stored
	As         string // its name among the unsent copies: "<peer>/<path>[.unsent-N]"
	Err        error  // why: the peer's refusal, errForeign or errNoOwner
}

// Error implements error.
func (e *ParkedError) Error() string {
	return fmt.Sprintf("remote: %s:%s cannot be stored: %v; this writer's data is kept as unsent %q (.peerfs/unsent, peerfs unsent)", e.Peer, e.Path, e.Err, e.As)
}

// Unwrap returns the cause, whose errno the program gets.
func (e *ParkedError) Unwrap() []error { return []error{e.Err, errSetAside} }

// permanent reports whether an upload's failure will recur however often
// it is retried: the peer refused the file itself, or it is not the peer
// the copy was written for. A full disk, a busy or unreachable peer and
// an I/O error may pass.
func permanent(err error) bool {
	if errors.Is(err, errForeign) || errors.Is(err, errNoOwner) || errors.Is(err, errPeerLeft) {
		return true
	}
	var fe *peerproto.FailError
	if !errors.As(err, &fe) {
		return false
	}
	switch fe.Code {
	case peerproto.CodeNotFound, peerproto.CodeNotDir, peerproto.CodeIsDir, peerproto.CodeDenied,
		peerproto.CodeReadOnly, peerproto.CodeTooLarge, peerproto.CodeInvalid, peerproto.CodeUnsupported:
		return true
	}
	return false
}

// park sets f aside after its upload failed for good with cause, and
// returns the error its writer gets. Called with f.up held.
func (s *Store) park(f *fileState, ch *cache.Handle, cause error) error {
	if ch == nil || !ch.Meta().Dirty {
		// Only attributes were to be set (a chmod the peer refuses):
		// nothing to keep, and nothing set aside. Its writer hears of
		// the refusal; what it writes next is uploaded as any write.
		f.mu.Lock()
		f.setMode, f.setMtime = false, nil
		f.mu.Unlock()
		if s.dropIfDone(f) {
			f.releaseCopy()
		}
		return cause
	}
	// Out of the queue first: whoever sees it among the unsent copies
	// (and retries it) must not find it pending too.
	key := f.currentKey()
	s.mu.Lock()
	queued := s.files[key] == f
	if queued {
		delete(s.files, key)
	}
	s.mu.Unlock()
	pe := &ParkedError{Peer: key.Peer, Path: key.Path, Err: cause}
	reason := strings.TrimPrefix(cause.Error(), errLocal.Error()+": ")
	for n := 1; ; n++ {
		pe.As = key.Peer + "/" + key.Path
		if n > 1 {
			pe.As += ".unsent-" + strconv.Itoa(n)
		}
		err := ch.Park(cache.Key{Peer: unsentPeer, Path: pe.As}, reason)
		if err == nil {
			break
		}
		if !errors.Is(err, cache.ErrKeyInUse) || n >= 1000 {
			// Not even set aside: it stays pending (and is retried).
			s.log.Error().Err(err).Str("remote_peer", key.Peer).Str("path", key.Path).Msg("cannot set an unsendable copy aside")
			s.mu.Lock()
			if _, taken := s.files[key]; queued && !taken {
				s.files[key] = f
			}
			s.mu.Unlock()
			return cause
		}
	}
	f.mu.Lock()
	f.parked = pe
	f.dropStream()
	f.setMode, f.setMtime = false, nil
	f.key = cache.Key{Peer: unsentPeer, Path: pe.As}
	unused := f.refs <= 0
	f.mu.Unlock()
	if unused {
		f.releaseCopy() // the cache keeps it; nothing here uses it any more
	}
	s.log.Error().Err(cause).Str("remote_peer", key.Peer).Str("path", key.Path).Str("unsent", pe.As).
		Msg("a file cannot be stored on its peer; kept among the unsent copies (peerfs unsent)")
	return pe
}

// Unsent is one copy set aside.
type Unsent struct {
	As     string    `json:"as"`     // its name: "<peer>/<path>[.unsent-N]"
	Peer   string    `json:"peer"`   // where it was to be stored
	Path   string    `json:"path"`   //
	Reason string    `json:"reason"` // why it was not
	Size   int64     `json:"size"`
	Since  time.Time `json:"since"` // when it was last written
}

// Unsent lists the copies set aside, by name.
func (s *Store) Unsent() []Unsent {
	var out []Unsent
	for _, key := range s.cache.Dirty() {
		if key.Peer != unsentPeer {
			continue
		}
		m, ok := s.cache.Meta(key)
		if !ok || m.Parked == "" {
			continue
		}
		out = append(out, Unsent{As: key.Path, Peer: m.Origin.Peer, Path: m.Origin.Path, Reason: m.Parked,
			Size: m.Size, Since: m.DirtySince})
	}
	slices.SortFunc(out, func(a, b Unsent) int { return strings.Compare(a.As, b.As) })
	return out
}

// errNoUnsent is returned for a name that is not an unsent copy.
var errNoUnsent = fmt.Errorf("remote: no such unsent copy: %w", fs.ErrNotExist)

// OpenUnsent returns the unsent copy as, pinned for reading; the caller
// releases it.
func (s *Store) OpenUnsent(as string) (*cache.Handle, error) {
	key := cache.Key{Peer: unsentPeer, Path: as}
	if m, ok := s.cache.Meta(key); !ok || m.Parked == "" {
		return nil, errNoUnsent
	}
	ch, _, err := s.cache.Acquire(key, -1, "", false)
	if err != nil {
		return nil, err
	}
	if ch == nil {
		return nil, errNoUnsent
	}
	return ch, nil
}

// DropUnsent deletes the unsent copy as.
func (s *Store) DropUnsent(as string) error {
	key := cache.Key{Peer: unsentPeer, Path: as}
	if m, ok := s.cache.Meta(key); !ok || m.Parked == "" {
		return errNoUnsent
	}
	s.log.Info().Str("unsent", as).Msg("dropped an unsent copy")
	return s.cache.Remove(key)
}

// RetryUnsent tries to store the unsent copy as again, now, where it was
// to go; the user has removed the cause (made the directory again, ...).
// One written for another peer of that name goes to today's peer of that
// name only as a new file: if the name exists there, it is kept beside it
// as a conflict copy. If it fails for good again, it is set aside again.
func (s *Store) RetryUnsent(ctx context.Context, as string) error {
	ch, err := s.OpenUnsent(as)
	if err != nil {
		return err
	}
	if s.unsentOpen(as) {
		ch.Release()
		return fmt.Errorf("remote: retry %q: a program still has it open for writing (what it writes goes to this copy); retry once it has closed it: %w", as, fs.ErrExist)
	}
	m := ch.Meta()
	origin := m.Origin
	p, err := s.peer(origin.Peer)
	if err != nil {
		ch.Release()
		return fmt.Errorf("remote: retry %q: peer %s is not connected: %w", as, origin.Peer, fusefs.ErrUnavailable)
	}
	s.mu.Lock()
	_, busy := s.files[origin]
	s.mu.Unlock()
	if busy {
		ch.Release()
		return fmt.Errorf("remote: retry %q: %s:%s has changes of its own waiting; drop this copy or save it elsewhere: %w", as, origin.Peer, origin.Path, fs.ErrExist)
	}
	if om, ok := s.cache.Meta(origin); ok && !om.Dirty {
		_ = s.cache.Remove(origin) // a clean copy of what the peer has: no loss
	}
	if err := s.identify(ctx, p); err != nil {
		ch.Release()
		return fmt.Errorf("remote: retry %q: %w", as, err)
	}
	owner, base := ownedBase(m.Base)
	if owner != s.owner(p) {
		// Written for another peer of that name: only ever a new file.
		owner, base = s.owner(p), peerproto.VersionNone
	}
	if err := ch.Unpark(origin); err != nil {
		ch.Release()
		return fmt.Errorf("remote: retry %q: %w", as, err)
	}
	if err := ch.SetBase(owner + "/" + string(base)); err != nil {
		s.log.Warn().Err(err).Str("unsent", as).Msg("cannot record the base of a retried copy")
	}
	f := &fileState{key: origin, mtime: m.DirtySince, mode: 0o644, base: base, owner: owner}
	if md := peerproto.FileMode(m.Mode); md != 0 {
		f.mode, f.setMode = md, true
	}
	f.remote.Mode = peerproto.UnixBits(f.mode)
	f.ch.Store(ch)
	s.mu.Lock()
	s.files[origin] = f
	s.mu.Unlock()
	s.log.Info().Str("unsent", as).Str("remote_peer", origin.Peer).Str("path", origin.Path).Msg("retrying an unsent copy")
	return s.upload(ctx, f, true)
}

// unsentOpen reports whether the unsent copy as is still open through a
// handle of the writer whose upload set it aside. Such a handle opens
// nothing new (its state left Store.files), so the answer stays true until
// it is released.
func (s *Store) unsentOpen(as string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.handles {
		if f := h.state; f != nil {
			f.mu.Lock()
			open := f.parked != nil && f.parked.As == as
			f.mu.Unlock()
			if open {
				return true
			}
		}
	}
	return false
}

// UnsentFiles implements fusefs.UnsentController.
func (s *Store) UnsentFiles() []fusefs.UnsentFile {
	us := s.Unsent()
	out := make([]fusefs.UnsentFile, len(us))
	for i, u := range us {
		out[i] = fusefs.UnsentFile{Name: u.As, Size: u.Size, Mtime: u.Since}
	}
	return out
}

// ReadUnsent implements fusefs.UnsentController.
func (s *Store) ReadUnsent(as string, p []byte, off int64) (int, error) {
	ch, err := s.OpenUnsent(as)
	if err != nil {
		return 0, err
	}
	defer ch.Release()
	return readFull(ch, p, off)
}
