package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// fileState is a local copy of a file that is open for writing or holds
// writes not yet stored on its peer. Handles of the same file share it.
//
// Lock order: up before Store.mu; fetch before Store.mu. up serialises
// everything that sends the file's name to its peer (PUT, DELETE, RENAME
// of it) and every release of ch, so an upload never streams a copy that
// is being released.
type fileState struct {
	up    sync.Mutex // serialises uploads, deletes and renames of this file
	fetch sync.Mutex // serialises fetching the content

	// ch is the pinned local copy; nil until the content is first needed
	// (opening an existing file for writing does not download it: the
	// kernel's open-then-truncate of an overwrite would waste the transfer).
	ch atomic.Pointer[cache.Handle]

	// Protected by Store.mu:
	key       cache.Key
	refs      int             // open handles
	remote    peerproto.Entry // the peer's attributes at open, for an unfetched copy
	mode      fs.FileMode
	mtime     time.Time  // last local change
	setMode   bool       // mode must be applied on the peer after upload
	setMtime  *time.Time // explicit mtime (utimens) to apply after upload
	unlinked  bool       // deleted or replaced: never upload, forget on last release
	uploading bool       // an upload of it is under way (FileState)
	// parked is set when the copy was set aside (unsent.go): it is not
	// uploaded again, and its writer's flushes and fsyncs report this.
	parked *ParkedError
	// failures counts the retry loop's failed uploads in a row, and
	// retryAt is when it tries again (backing off); both reset on success.
	failures int
	retryAt  time.Time
	// base is the version of the peer's file this copy started from, the
	// condition of the next PUT (peerproto.NoVersion for none, VersionNone
	// for a file created here): a writer never silently replaces a
	// version it has not seen.
	base peerproto.Version
	// owner is the peer identity this copy was written for (identity.go):
	// it is uploaded only while the peer has it. "" for a copy from
	// before owners were recorded.
	owner string

	// sent is the content of the last PUT whose outcome is unknown (it
	// failed, perhaps after the peer got it all): a stalled peer may
	// store it later, and that version is this writer's own, not a
	// conflict. Protected by up; nil once an upload succeeds. Kept in the
	// cache record too (cache.Meta.Sent), for the next run of the mount.
	sent *digest
}

// mayHaveReached reports whether a request that failed with err may have
// reached the peer whole: not when the connection could not be made, the
// peer was skipped as down, or a PUT's source ended early (the peer
// discards a payload cut short).
func mayHaveReached(err error) bool {
	var ne *net.OpError
	return !errors.Is(err, errPeerDown) && !isLocal(err) &&
		!(errors.As(err, &ne) && ne.Op == "dial")
}

// digest identifies a file's content: its size and SHA-256.
type digest struct {
	size int64
	sum  [sha256.Size]byte
}

// String encodes v for the cache record (Meta.Sent): "<size>:<sha256 hex>".
func (v digest) String() string { return fmt.Sprintf("%d:%x", v.size, v.sum) }

// parseDigest decodes a digest.String; nil if s is empty or not one.
func parseDigest(s string) *digest {
	size, sum, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(size, 10, 64)
	b, herr := hex.DecodeString(sum)
	if !ok || err != nil || herr != nil || n < 0 || len(b) != sha256.Size {
		return nil
	}
	v := digest{size: n}
	copy(v.sum[:], b)
	return &v
}

// sumMax bounds the copies whose contents are compared (hashed, and the
// peer's fetched) when a conditional PUT is refused: a larger conflict is
// always kept as a conflict copy.
const sumMax = 16 << 20

// versionOf returns the version of r's first size bytes, if size is at
// most sumMax.
func digestOf(r io.ReaderAt, size int64) (digest, bool) {
	if size > sumMax {
		return digest{}, false
	}
	h := sha256.New()
	if n, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil || n != size {
		return digest{}, false
	}
	v := digest{size: size}
	h.Sum(v.sum[:0])
	return v, true
}

// size returns the file's size as this client sees it.
func (f *fileState) size() int64 {
	if ch := f.ch.Load(); ch != nil {
		return ch.Size()
	}
	return f.remote.Size
}

// info returns the file's attributes as this client sees them. Called with
// Store.mu held.
func (f *fileState) info(name string) fs.FileInfo {
	mt := f.mtime
	if f.setMtime != nil {
		mt = *f.setMtime
	}
	return &fileInfo{name: name, mode: f.mode, size: f.size(), mtime: mt}
}

// dirty reports whether the local copy has bytes the peer lacks.
func (f *fileState) dirty() bool {
	ch := f.ch.Load()
	return ch != nil && ch.Meta().Dirty
}

// releaseCopy unpins the local copy. Called with f.up held (or when no
// upload can run any more).
func (f *fileState) releaseCopy() {
	if ch := f.ch.Swap(nil); ch != nil {
		ch.Release()
	}
}

// handle is one open file.
type handle struct {
	key     cache.Key
	flags   int
	state   *fileState // non-nil: reads and writes use the local copy
	created bool       // this open created the file: its close uploads it, even read-only
	// diverted is set (under Store.mu) when an upload of state, not
	// necessarily this handle's, found the file replaced by another
	// writer and kept this copy as a conflict copy: the writer must hear
	// of it at its own fsync and close (ESTALE), whoever sent it.
	diverted error

	mu     sync.Mutex        // protects the fields below
	p      *peerConn         // the peer's connection; follows it to a new address (Store.follow)
	size   int64             // remote size at open
	ver    peerproto.Version // remote version at open
	clean  *cache.Handle     // whole-file copy: a small file, or a large one the cache already held
	looked bool              // the cache was asked for a large file's copy (only once per handle)
	ra     []byte            // read-ahead buffer
	raOff  int64             // file offset of ra[0]
	next   int64             // offset a sequential reader asks for next
	window int64             // current read-ahead size
	seq    int               // reads in a row near the one before
	far    int               // reads in a row far from the one before
	st     *stream           // chunks fetched ahead of a sequential reader (prefetch.go)
}

func (h *handle) writable() bool { return h.flags&(os.O_WRONLY|os.O_RDWR) != 0 }

const (
	minWindow = 128 << 10
	maxWindow = 8 << 20
	// inlineMax is the largest upload sent inline (PUT ... inline): the
	// round trip it saves matters for small files, and a refused upload
	// has been sent for nothing.
	inlineMax = 1 << 20
)

func (s *Store) localInfo(key cache.Key) fs.FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[key]; ok {
		return f.info(base(key.Path))
	}
	return nil
}

func (s *Store) newHandle(h *handle) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextFH++
	s.handles[s.nextFH] = h
	return s.nextFH
}

func (s *Store) handle(fh uint64) (*handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.handles[fh]
	if !ok {
		return nil, syscall.EBADF
	}
	return h, nil
}

// Open implements fusefs.Store.
func (s *Store) Open(ctx context.Context, peerName, path string, flags int, mode fs.FileMode) (uint64, fs.FileInfo, error) {
	p, err := s.peer(peerName)
	if err != nil {
		return 0, nil, err
	}
	key := cache.Key{Peer: peerName, Path: path}
	write := flags&(os.O_WRONLY|os.O_RDWR) != 0
	excl := flags&os.O_CREATE != 0 && flags&os.O_EXCL != 0

	// A local copy already open or pending: share it.
	s.mu.Lock()
	if f, ok := s.files[key]; ok {
		if excl {
			s.mu.Unlock()
			return 0, nil, syscall.EEXIST
		}
		f.refs++
		s.mu.Unlock()
		if write && flags&os.O_TRUNC != 0 {
			if err := s.truncateState(ctx, f, 0); err != nil {
				s.release(f)
				return 0, nil, err
			}
		}
		fh := s.newHandle(&handle{p: p, key: key, flags: flags, state: f})
		return fh, s.localInfo(key), nil
	}
	s.mu.Unlock()

	e, err := s.stat(ctx, p, path)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return 0, nil, err
	case !exists && flags&os.O_CREATE == 0:
		return 0, nil, err
	case exists && e.IsDir() && write:
		return 0, nil, syscall.EISDIR
	case exists && excl:
		return 0, nil, syscall.EEXIST
	}
	if !write && exists {
		fh := s.newHandle(&handle{p: p, key: key, flags: flags, size: e.Size, ver: e.Version()})
		return fh, infoOf(base(path), e), nil
	}

	// Writing (or creating): work on a local copy, fetched lazily.
	f := &fileState{key: key, refs: 1, remote: e, mode: fs.FileMode(e.Mode).Perm(), mtime: time.Unix(0, e.Mtime),
		base: peerproto.VersionNone, owner: s.owner(p)}
	if exists {
		f.base = e.Version()
	}
	if !exists || flags&os.O_TRUNC != 0 {
		var m uint32 // 0: a truncated existing file keeps its recorded mode
		if !exists {
			m = uint32(mode.Perm())
		}
		// Empty and dirty (even an empty file is uploaded), its record
		// written once.
		ch, err := s.cache.Create(key, m, f.owner+"/"+string(f.base))
		if err != nil {
			return 0, nil, err
		}
		f.ch.Store(ch)
		f.mtime = time.Now()
		if !exists {
			f.mode = mode.Perm()
		}
	}
	s.mu.Lock()
	other, raced := s.files[key]
	if raced {
		other.refs++
		s.mu.Unlock()
		f.releaseCopy()
		f = other
	} else {
		s.files[key] = f
		s.mu.Unlock()
	}
	fh := s.newHandle(&handle{p: p, key: key, flags: flags, state: f, created: !exists && !raced})
	return fh, s.localInfo(key), nil
}

// content returns f's local copy, downloading it first if this is the
// first use.
func (s *Store) content(ctx context.Context, f *fileState) (*cache.Handle, error) {
	if ch := f.ch.Load(); ch != nil {
		return ch, nil
	}
	f.fetch.Lock()
	defer f.fetch.Unlock()
	if ch := f.ch.Load(); ch != nil {
		return ch, nil
	}
	s.mu.Lock()
	key, e := f.key, f.remote
	s.mu.Unlock()
	p, err := s.peer(key.Peer)
	if err != nil {
		return nil, err
	}
	// The content about to be edited is the version the next PUT must
	// replace: learn its attributes now, not from the (possibly stale)
	// ones seen at open.
	err = s.poolDo(ctx, p, "STAT", func(c *peer.Conn) error {
		var err error
		e, err = c.Stat(ctx, key.Path)
		return err
	})
	if err != nil {
		return nil, netErr(p, err)
	}
	p.attrs.remember(key.Path, e, true)
	s.mu.Lock()
	f.remote = e
	f.base = e.Version()
	s.mu.Unlock()
	ch, err := s.fetchWhole(ctx, p, key, e.Size, e.Version())
	if err != nil {
		return nil, err
	}
	// The first write records the version this copy is (a copy whose
	// size did not match the STAT has no version of its own).
	ch.SetWriteBase(s.cacheVersion(p, e.Version()))
	f.ch.Store(ch)
	return ch, nil
}

// fetchWhole returns a pinned cache copy of the whole file, streaming it
// from the peer into the cache unless the cache holds a copy of this size
// and version.
func (s *Store) fetchWhole(ctx context.Context, p *peerConn, key cache.Key, size int64, ver peerproto.Version) (*cache.Handle, error) {
	if ch, ok, err := s.cache.Acquire(key, size, s.cacheVersion(p, ver), false); err == nil && ok {
		return ch, nil
	} else if ch != nil {
		ch.Release()
	}
	var ch *cache.Handle
	get := func(c *peer.Conn) error {
		return c.GetStream(ctx, key.Path, func(got int64, r io.Reader) error {
			// The peer's size is the truth; the attributes we had may be
			// stale. A copy whose size differs from them cannot be tied
			// to their version, so it is recorded with none (never reused).
			v := ver
			if got != size {
				v = peerproto.NoVersion
			}
			body := &readerErr{r: r}
			var err error
			ch, err = s.cache.Fill(key, body, got, s.cacheVersion(p, v))
			switch {
			case err == nil:
				s.countBytes(p, got, 0)
			case body.err == nil:
				// The transfer was fine; storing it here failed (a full
				// cache disk): keep the errno, do not blame the peer.
				err = fmt.Errorf("%w: %w", errLocal, err)
			}
			return err
		})
	}
	err := s.poolDo(ctx, p, "GET", get)
	if errors.Is(err, peer.ErrCutShort) {
		// The file shrank while it was sent: once more, at its new size.
		err = s.poolDo(ctx, p, "GET", get)
	}
	if err != nil {
		p.attrs.forget(key.Path)
		return nil, netErr(p, err)
	}
	return ch, nil
}

func (s *Store) touch(f *fileState) {
	s.mu.Lock()
	f.mtime = time.Now()
	f.setMtime = nil
	s.mu.Unlock()
}

// ReadAt implements fusefs.Store.
func (s *Store) ReadAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	h, err := s.handle(fh)
	if err != nil {
		return 0, err
	}
	if h.state != nil {
		ch, err := s.content(ctx, h.state)
		if err != nil {
			return 0, err
		}
		return readFull(ch, p, off)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	s.follow(h)
	if h.clean == nil && h.size <= s.opts.WholeFile {
		ch, err := s.fetchWhole(ctx, h.p, h.key, h.size, h.ver)
		if err != nil {
			return 0, err
		}
		h.clean = ch
	}
	if h.clean == nil && !h.looked {
		// A large file is streamed, never fetched whole, but a copy the
		// cache already holds (this mount wrote the file, or read it
		// whole when it was small) is as good as the peer's while the
		// peer reports the same size and version: read it from the disk
		// here instead of over the network.
		h.looked = true
		if ch, ok, err := s.cache.Acquire(h.key, h.size, s.cacheVersion(h.p, h.ver), false); err == nil && ok {
			h.clean = ch
		} else if ch != nil {
			ch.Release()
		}
	}
	if h.clean != nil {
		return readFull(h.clean, p, off)
	}
	// Near the last read counts as sequential: the kernel's async reads
	// arrive slightly out of order.
	if h.next-chunkSize <= off && off <= h.next+chunkSize {
		h.seq++
		h.far = 0
	} else {
		h.seq = 0
		h.far++
	}
	if h.inStream(off) {
		return s.readStream(ctx, h, p, off)
	}
	if h.seq >= 2 {
		h.stopStream() // a sequential run elsewhere: start afresh there
		return s.readStream(ctx, h, p, off)
	}
	if h.far >= 2 {
		h.stopStream() // a random reader now: free the chunks
	}
	return s.readAhead(ctx, h, p, off)
}

type readerAt interface {
	ReadAt(p []byte, off int64) (int, error)
}

// readFull reads like io.ReaderAt but reports end of file as a short count
// without error, as FUSE expects.
func readFull(r readerAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		return n, nil
	}
	return n, err
}

// readerErr remembers the error its reader returned, telling a failed
// transfer from a failure to store what it brought.
type readerErr struct {
	r   io.Reader
	err error
}

func (r *readerErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// readRange fills buf from path on p at off with one ranged GET and
// returns the count, short only at end of file. A transfer the peer cut
// short (the file shrank while it was sent) is asked for once more, so
// that the reader sees the new end of file instead of an error.
func (s *Store) readRange(ctx context.Context, p *peerConn, path string, buf []byte, off int64) (int, error) {
	for retried := false; ; retried = true {
		var n int
		err := s.poolDo(ctx, p, "GET", func(c *peer.Conn) error {
			var err error
			n, err = c.ReadAt(ctx, path, buf, off)
			return err
		})
		s.countBytes(p, int64(n), 0)
		if err != nil && !retried && errors.Is(err, peer.ErrCutShort) {
			continue
		}
		return n, err
	}
}

// readAhead serves a read of a large file from the handle's read-ahead
// buffer, refilling it with one ranged GET whose size doubles while the
// reader stays sequential. Called with h.mu held.
func (s *Store) readAhead(ctx context.Context, h *handle, p []byte, off int64) (int, error) {
	if off >= h.raOff && off+int64(len(p)) <= h.raOff+int64(len(h.ra)) {
		h.next = off + int64(len(p))
		return copy(p, h.ra[off-h.raOff:]), nil
	}
	switch {
	case off == h.next && h.window > 0:
		h.window = min(max(2*h.window, minWindow), maxWindow)
	case off == h.next || off == 0:
		h.window = minWindow
	default:
		// A random read: fetch what was asked and no more, so 4 KiB
		// reads cost 4 KiB; a run of sequential reads grows it again.
		h.window = int64(len(p))
	}
	want := max(h.window, int64(len(p)))
	if cap(h.ra) < int(want) {
		h.ra = make([]byte, want)
	}
	h.ra = h.ra[:want]
	n, err := s.readRange(ctx, h.p, h.key.Path, h.ra, off)
	if err != nil {
		h.ra = h.ra[:0]
		return 0, netErr(h.p, err)
	}
	h.ra = h.ra[:n]
	h.raOff = off
	h.next = off + int64(min(len(p), n))
	return copy(p, h.ra), nil
}

// WriteAt implements fusefs.Store.
func (s *Store) WriteAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	h, err := s.handle(fh)
	if err != nil {
		return 0, err
	}
	if h.state == nil {
		return 0, syscall.EBADF
	}
	ch, err := s.content(ctx, h.state)
	if err != nil {
		return 0, err
	}
	if h.flags&os.O_APPEND != 0 {
		off = ch.Size()
	}
	n, err := ch.WriteAt(p, off)
	s.touch(h.state)
	return n, err
}

// Flush implements fusefs.Store: a writer's file is uploaded if it has
// changes, and the upload's error is returned (it reaches close()). So is
// a file this handle created, even read-only (open(O_CREAT|O_RDONLY)): a
// created file is on the peer no later than a written one.
func (s *Store) Flush(ctx context.Context, fh uint64) error {
	h, err := s.handle(fh)
	if err != nil {
		return err
	}
	if h.state == nil || !h.writable() && !h.created {
		return nil // readers never wait for uploads
	}
	if err := s.upload(ctx, h.state, false); err != nil {
		return err
	}
	return s.divertedErr(h)
}

// divertedErr returns what h's writer must still hear of: that its data
// went to a conflict copy (handle.diverted).
func (s *Store) divertedErr(h *handle) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return h.diverted
}

// Fsync implements fusefs.Store: a writer's fsync runs the SYNC round.
// The file itself goes up while the SYNC request is on its way, as a
// close would send it (held back if another peer holds the token); the
// turn then finds it stored and only has the peer make it durable.
func (s *Store) Fsync(ctx context.Context, fh uint64) error {
	h, err := s.handle(fh)
	if err != nil {
		return err
	}
	if h.state == nil {
		return nil
	}
	up := make(chan error, 1)
	go func() { up <- s.upload(ctx, h.state, false) }()
	err = s.Sync(ctx)
	// A failure to reach the peer is the turn's to report (it retries
	// what is still pending); a conflict is final: the data went to a
	// conflict copy, and the writer must hear of it.
	// A file set aside is final too.
	if uerr := <-up; errors.Is(uerr, syscall.ESTALE) || errors.Is(uerr, errSetAside) {
		return uerr
	}
	if err != nil {
		return err
	}
	return s.divertedErr(h)
}

// Release implements fusefs.Store.
func (s *Store) Release(fh uint64) error {
	s.mu.Lock()
	h, ok := s.handles[fh]
	delete(s.handles, fh)
	s.mu.Unlock()
	if !ok {
		return syscall.EBADF
	}
	h.mu.Lock()
	if h.clean != nil {
		h.clean.Release()
		h.clean = nil
	}
	h.stopStream()
	h.mu.Unlock()
	if h.state != nil {
		s.release(h.state)
	}
	return nil
}

// release drops one reference to f; a state with no handles and nothing
// left to upload is forgotten. One with pending changes stays for the
// retry loop.
func (s *Store) release(f *fileState) {
	f.up.Lock()
	defer f.up.Unlock()
	s.mu.Lock()
	f.refs--
	drop := f.refs <= 0 && (f.unlinked || f.parked != nil || !f.pending())
	if drop && s.files[f.key] == f {
		delete(s.files, f.key)
	}
	s.mu.Unlock()
	if drop {
		f.releaseCopy()
	}
}

// pending reports whether f has changes not yet on its peer. Called with
// Store.mu held.
func (f *fileState) pending() bool {
	return f.dirty() || f.setMode || f.setMtime != nil
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

// What peerHolds found on the peer.
const (
	holdsOther   = iota // another version (or one not compared)
	holdsCurrent        // this copy's content
	holdsSent           // the content of this writer's last failed attempt
)

// peerHolds reports whether the peer's file at path holds the content of
// ch (size bytes) or the version sent (if not nil), with the peer's
// attributes of it, fetching and hashing it only when its size is one of
// theirs. The attributes are from before the fetch: if the file changed
// in between, the next conditional PUT finds out.
func (s *Store) peerHolds(ctx context.Context, c *peer.Conn, path string, ch *cache.Handle, size int64, sent *digest) (peerproto.Entry, int) {
	e, err := c.Stat(ctx, path)
	if err != nil || e.IsDir() || e.Size > sumMax || (e.Size != size && (sent == nil || e.Size != sent.size)) {
		return peerproto.Entry{}, holdsOther
	}
	var cur digest
	curOK := false
	if e.Size == size {
		cur, curOK = digestOf(ch, size)
	}
	var theirs digest
	ok := false
	err = c.GetStream(ctx, path, func(n int64, r io.Reader) error {
		if n > sumMax {
			return errors.New("changed meanwhile") // too big to drain: drop the connection
		}
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return err
		}
		theirs.size = n
		h.Sum(theirs.sum[:0])
		ok = true
		return nil
	})
	switch {
	case err != nil || !ok:
		return peerproto.Entry{}, holdsOther
	case curOK && theirs == cur:
		return e, holdsCurrent
	case sent != nil && theirs == *sent:
		return e, holdsSent
	}
	return peerproto.Entry{}, holdsOther
}

// keyNow returns f's current key.
func (f *fileState) keyNow(s *Store) cache.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f.key
}

// putConflictCopy stores f's copy as "<name>.conflict-<self>-<time>" next
// to the file whose newer version it must not replace, and moves f (and
// its cache entry) to that name, so that later writes through open
// handles go there too. Called with f.up held.
func (s *Store) putConflictCopy(ctx context.Context, c *peer.Conn, f *fileState, key cache.Key, ch *cache.Handle) (peerproto.PutDone, error) {
	name := conflictName(key.Path, s.opts.Self, time.Now())
	src, err := ch.Reopen()
	if err != nil {
		return peerproto.PutDone{}, err
	}
	defer src.Close()
	pd, err := c.PutWith(ctx, peerproto.Put{Name: name, Size: ch.Size(), Async: true, Base: peerproto.BaseNone}, src, nil)
	if err != nil {
		return pd, err
	}
	to := cache.Key{Peer: key.Peer, Path: name}
	s.mu.Lock()
	if s.files[key] == f {
		delete(s.files, key)
	}
	f.key = to
	s.files[to] = f
	s.mu.Unlock()
	_ = s.cache.Rename(key, to)
	s.log.Warn().Str("peer", key.Peer).Str("path", key.Path).Str("kept_as", name).Msg("conflict: the file changed on its peer since this copy was opened; kept this writer's data beside it")
	return pd, nil
}

// conflictName returns the name a conflicting copy of p is kept under.
func conflictName(p, self string, now time.Time) string {
	dir, file := parent(p), base(p)
	suffix := ".conflict-" + self + "-" + now.UTC().Format("20060102T150405.000000000Z")
	if n := 255 - len(suffix); len(file) > n {
		file = file[:n]
	}
	if dir == "" {
		return file + suffix
	}
	return dir + "/" + file + suffix
}

// statesUnder returns the local copies at or under path, sorted by path
// (the order in which their up locks are taken).
func (s *Store) statesUnder(peerName, path string) []*fileState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*fileState
	for key, f := range s.files {
		if key.Peer == peerName && under(key.Path, path) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key.Path < out[j].key.Path })
	return out
}

func lockAll(fs []*fileState) {
	for _, f := range fs {
		f.up.Lock()
	}
}

func unlockAll(fs []*fileState) {
	for _, f := range fs {
		f.up.Unlock()
	}
}

// unlinkLocked marks f deleted and forgets it; the copy is released now if
// no handle has it open. Called with f.up held.
func (s *Store) unlinkLocked(f *fileState) {
	s.mu.Lock()
	f.unlinked = true
	if s.files[f.key] == f {
		delete(s.files, f.key)
	}
	drop := f.refs <= 0
	s.mu.Unlock()
	if drop {
		f.releaseCopy()
	}
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
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

// truncateState sets the size of a local copy. Truncating an unfetched
// copy to zero needs no download.
func (s *Store) truncateState(ctx context.Context, f *fileState, size int64) error {
	if size == 0 && f.ch.Load() == nil {
		f.fetch.Lock()
		if f.ch.Load() == nil {
			s.mu.Lock()
			key, base := f.key, f.owner+"/"+string(f.base)
			s.mu.Unlock()
			// Emptied without a download, and recording the version the
			// new content replaces (a shell's "> file" opens, then
			// truncates).
			ch, err := s.cache.Create(key, 0, base)
			if err != nil {
				f.fetch.Unlock()
				return err
			}
			f.ch.Store(ch)
		}
		f.fetch.Unlock()
	}
	ch, err := s.content(ctx, f)
	if err != nil {
		return err
	}
	if err := ch.Truncate(size); err != nil {
		return err
	}
	s.touch(f)
	return nil
}

func (s *Store) truncateLocal(ctx context.Context, key cache.Key, size int64) (fs.FileInfo, bool, error) {
	s.mu.Lock()
	f, ok := s.files[key]
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	if err := s.truncateState(ctx, f, size); err != nil {
		return nil, true, err
	}
	return s.localInfo(key), true, nil
}

func (s *Store) chmodLocal(key cache.Key, mode fs.FileMode) (fs.FileInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[key]
	if !ok {
		return nil, false
	}
	f.mode, f.setMode = mode.Perm(), true
	if ch := f.ch.Load(); ch != nil {
		_ = ch.SetMode(uint32(mode.Perm())) // survives a restart with the dirty copy
	}
	return f.info(base(key.Path)), true
}

func (s *Store) chtimesLocal(key cache.Key, mtime time.Time) (fs.FileInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[key]
	if !ok {
		return nil, false
	}
	f.setMtime = &mtime
	return f.info(base(key.Path)), true
}
