package export

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Server defaults, used for zero Options fields.
const (
	// DefaultMaxConns is the default limit on simultaneous connections.
	DefaultMaxConns = 256
	// DefaultIdleTimeout is how long a connection may sit between requests.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultIOTimeout is how long a running request may go without
	// progress on the network.
	DefaultIOTimeout = 30 * time.Second
	// DefaultMaxTransfers is the default limit on PUTs and GETs in progress.
	DefaultMaxTransfers = 64
	// DefaultHeaderTimeout is how long a request line may take to arrive
	// once its first byte has.
	DefaultHeaderTimeout = 10 * time.Second
	// DefaultHandshakeTimeout bounds the TLS handshake and membership proofs.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMinTransferRate is the least a PUT or GET payload must
	// average, in bytes per second, over any span longer than
	// DefaultTransferWindow.
	DefaultMinTransferRate = 4 << 10
	// DefaultTransferWindow is how far a transfer may fall behind
	// DefaultMinTransferRate: the longest it may stall after moving fast.
	DefaultTransferWindow = 30 * time.Second
)

// Options configures a Server.
type Options struct {
	Export      string        // directory to serve
	ReadOnly    bool          // refuse every write with "<VERB> FAIL readonly ..."
	MaxConns    int           // connections served at once; more get "CONNECT FAIL busy"; 0 means DefaultMaxConns
	IdleTimeout time.Duration // a connection idle between requests longer is closed; 0 means DefaultIdleTimeout
	IOTimeout   time.Duration // deadline for each read or write making progress within a request; 0 means DefaultIOTimeout

	// MaxTransfers bounds the PUTs and GETs in progress at once, over all
	// connections; more get "<VERB> FAIL busy too many transfers"; 0 means
	// DefaultMaxTransfers.
	MaxTransfers int
	// HeaderTimeout bounds a request line from its first byte to its
	// newline, so a client trickling bytes cannot hold a connection; 0
	// means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// MinTransferRate (bytes per second) and TransferWindow cut a
	// transfer (a PUT's payload, a GET's data) that is too slow, so that
	// clients trickling bytes cannot hold the transfer slots: each byte
	// moved buys 1/MinTransferRate s, and the time bought runs at most
	// TransferWindow ahead; a transfer whose time runs out is cut. So
	// over any span longer than TransferWindow it moves at least
	// MinTransferRate x (span - TransferWindow) bytes, and it may stall
	// for TransferWindow after moving fast. IOTimeout still bounds each
	// read and write. 0 means DefaultMinTransferRate and
	// DefaultTransferWindow; a negative MinTransferRate turns the check
	// off.
	MinTransferRate int64
	TransferWindow  time.Duration
	// Secure, if set, makes every connection TLS with a membership proof
	// (package secure) before anything else is said; nil serves the
	// plaintext protocol to anyone.
	Secure *secure.Config
	// HandshakeTimeout bounds the TLS handshake and proofs; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxPendingPerSource bounds the connections from one source (IPv4
	// address or IPv6 /64) still in the TLS handshake and proofs; more
	// are closed at once. 0 means secure.DefaultMaxPendingPerSource.
	// With Secure nil there is no handshake: MaxConns alone applies.
	MaxPendingPerSource int
	// MaxPending bounds the connections in the handshake from everywhere;
	// at the limit a new one evicts the oldest. 0 means
	// secure.DefaultMaxPending.
	MaxPending int
	// RefusalLogInterval: refused connections (strangers, and the excess
	// over the limits above and MaxConns) are logged one line per
	// interval at most, with counts; 0 means
	// secure.DefaultRefusalLogInterval.
	RefusalLogInterval time.Duration
	// AllowSetuid keeps the setuid and setgid bits that clients ask for
	// (SETATTR mode=, MKDIR <mode>) and those of a file that a PUT or a
	// SETATTR size= changes. By default they are stripped, as if the
	// export were mounted nosuid: a client must not plant a program that
	// runs with the rights of this process's user (root, often). Sticky
	// bits are kept either way.
	AllowSetuid bool
	// Owners stores and reports owners as they are, for a cluster that
	// shares one uid space: SETATTR uid= and gid= are served (lchown) and
	// FEATURES says "owners". By default they are refused (denied), and a
	// mount shows every file as its own user's.
	Owners bool
	// AllowDevices lets clients create character and block devices
	// (MKNOD c, b) and FEATURES says "devices". By default they are
	// refused (denied): a device node planted in an export gives whoever
	// can open it the device (a disk, memory) on this machine. FIFOs and
	// sockets are always allowed.
	AllowDevices bool

	Logger zerolog.Logger

	// noOpenat2 resolves paths through os.Root even where openat2 works
	// (jail.Options.NoOpenat2), so that tests cover both.
	noOpenat2 bool
	// notRoot makes the server act as a process that may not give files
	// away (keepsOwner), whatever its user, so that tests cover both.
	notRoot bool
	// noReflink makes a delta PUT copy the old content even where the
	// filesystem could share its blocks (FICLONE), so that tests cover
	// both.
	noReflink bool
	// cloneErr, if set, is what FICLONE fails with, not tried: a
	// filesystem that refuses a file a reflink, for a reason of its own.
	cloneErr error
	// undoMinSize, if not 0, replaces undoMinSize (put_undo.go): the
	// least size of a file a delta PUT changes in place; negative: never.
	undoMinSize int64
	// patchHook, if set, is called at each stage of a change in place
	// (put_undo.go; "written" once a PUT in place over a file with other
	// hard links has written it); errPatchCrashed stops it there as a crash would,
	// another error fails it there.
	patchHook func(stage string) error
	// installHook, if set, is called by a conditional PUT between its
	// last check of the target and the rename (under putMu).
	installHook func()
}

// privBits are the mode bits that make a program run with its owner's
// or its group's rights.
const privBits = unix.S_ISUID | unix.S_ISGID

// clientMode returns the permission bits (07777) a client may give a file
// or directory: mode without setuid and setgid, unless AllowSetuid.
func (s *Server) clientMode(mode uint32) uint32 {
	if s.opts.AllowSetuid {
		return mode & 0o7777
	}
	return mode & 0o7777 &^ privBits
}

// mayChown reports whether this process may give files away: it has
// CAP_CHOWN in effect (root, unless its capabilities were bounded).
func mayChown() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capget(&hdr, &data[0]) == nil && data[0].Effective&(1<<unix.CAP_CHOWN) != 0
}

// keepsOwner reports whether new content a PUT stores over a file gets
// that file's owner (replacedOwner, peerproto.FeatureKeepOwner): on a peer
// that keeps owners and may give files away (CAP_CHOWN).
func (s *Server) keepsOwner() bool {
	return s.opts.Owners && s.chown
}

// contentMode returns the permission bits (07777) of new content a PUT
// stores over (or into) a file whose mode is mode: its mode without setuid
// and setgid, with AllowSetuid too. The peer cannot tell whether the
// client's writer may keep them (a process with CAP_FSETID keeps them on a
// local disk), so new bytes never run with the owner's rights unless the
// PUT says its writer may keep them (peerproto.Put.Setid, where
// AllowSetuid lets it: replacedOwner, openInPlace).
func contentMode(mode uint32) uint32 {
	return mode & 0o7777 &^ privBits
}

// Server serves one exported directory to other peers, many clients at
// once, one request at a time per connection. Create it with NewServer,
// run it with Serve and stop it with Close.
type Server struct {
	opts  Options
	chown bool // the process may give files away (CAP_CHOWN): keepsOwner
	jail  *jail.Jail
	log   zerolog.Logger
	gate  *secure.Gate // connections before membership, and the log of refusals
	bufs  sync.Pool    // *[]byte buffers of sendChunk bytes, for PUT and GET payloads
	files openFiles    // open descriptors of recently read files
	vers  *versions    // version tokens of the export's files (versions.go)
	id    string       // the export's identity (identity.go)

	wg   sync.WaitGroup // Serve loops and connection goroutines
	done chan struct{}  // closed by Close

	// putMu orders the check-and-rename of conditional PUTs: of two that
	// started from one version, exactly one replaces it. A SETATTR of a
	// file's mtime holds it from taking the file's token to recording it
	// at the new mtime (changeFD), and a PUT's first check of a version
	// takes it too, so neither sees the file between. It guards no field.
	// It is held across disk I/O on purpose (only those wait on it),
	// never network I/O.
	putMu sync.Mutex
	// patchMu keeps a change in place (put_undo.go), which holds it to
	// write, apart from the requests that could move, replace, remove or
	// resize its file meanwhile (DELETE, RENAME, SETATTR, LINK, and the
	// final rename or in-place write of other PUTs), which hold it to
	// read: so the undo record always names the file it changes, in its
	// directory, and nothing but the delta changes it. It is taken before
	// putMu, never after; it guards no field.
	patchMu sync.RWMutex
	// settleMu guards settleErrs: the failures of changes in place
	// ended after their PUT DONE (endInPlace), by file, kept for the
	// next FSYNC of each (settled).
	settleMu   sync.Mutex
	settleErrs map[verID]error
	// noCloneDevs holds (as keys, uint64) the devices whose filesystem
	// refused a reflink as one that cannot share blocks (noteNoClone).
	noCloneDevs sync.Map

	// watchable: the export's filesystem reports every change to it
	// through inotify (not a network filesystem, where other machines'
	// changes go unseen), so WATCH is served (watch.go). Read-only.
	watchable bool
	watchMu   sync.Mutex // protects watch and watchDone
	watch     *watcher   // started by the first WATCH; nil until then
	watchDone bool       // set by Close: no watcher starts after it

	spaceMu    sync.Mutex // protects the two fields below
	spaceAvail int64      // bytes available on the export at spaceAt (statfs)
	spaceAt    time.Time

	mu        sync.Mutex // protects the fields below
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // every open connection, refused ones included
	active    int                   // connections being served (not refused)
	transfers int                   // PUTs and GETs in progress
}

// NewServer opens opts.Export and prepares to serve it. It removes the
// temporary files of uploads that a crash cut short (unless the export
// is read-only) and ends the changes in place it cut short: kept if
// they landed whole, else rolled back (put_undo.go).
func NewServer(opts Options) (*Server, error) {
	if opts.Export == "" {
		return nil, errors.New("peer: server: no export directory given")
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.IOTimeout <= 0 {
		opts.IOTimeout = DefaultIOTimeout
	}
	if opts.MaxTransfers <= 0 {
		opts.MaxTransfers = DefaultMaxTransfers
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = DefaultHeaderTimeout
	}
	if opts.MinTransferRate == 0 {
		opts.MinTransferRate = DefaultMinTransferRate
	}
	if opts.TransferWindow <= 0 {
		opts.TransferWindow = DefaultTransferWindow
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	j, err := jail.Open(opts.Export, jail.Options{NoOpenat2: opts.noOpenat2})
	if err != nil {
		return nil, fmt.Errorf("peer: server: open export: %w", err)
	}
	s := &Server{
		opts:      opts,
		jail:      j,
		log:       opts.Logger.With().Str("component", "peer-server").Str("export", j.Dir()).Logger(),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		done:      make(chan struct{}),
		vers:      newVersions(),
		chown:     mayChown() && !opts.notRoot,
	}
	if s.id, err = exportID(j); err != nil {
		j.Close()
		return nil, fmt.Errorf("peer: server: identity of the export: %w", err)
	}
	s.gate = secure.NewGate(secure.GateOptions{
		MaxPendingPerSource: opts.MaxPendingPerSource,
		MaxPending:          opts.MaxPending,
		RefusalLogInterval:  opts.RefusalLogInterval,
		Logger:              s.log,
	})
	s.bufs.New = func() any { b := make([]byte, sendChunk); return &b }
	s.watchable = watchableFS(j.FD())
	// Even a read-only export has the changes in place that a crash cut
	// short ended (kept whole or rolled back; their records lie in its
	// root: no walk), before it serves anything.
	undo, err := j.UndoRecords()
	if err != nil {
		s.log.Warn().Err(err).Msg("looking for the undo records of interrupted changes in place")
	}
	for _, name := range undo {
		if err := s.recoverUndo(name); err != nil {
			if !opts.ReadOnly {
				// Serving, and changing, a file whose record could
				// later roll it back over acknowledged changes: no.
				s.gate.Close()
				j.Close()
				return nil, fmt.Errorf("peer: server: an interrupted change in place: %w (fix the cause, or remove %s to keep the file as it is)", err, filepath.Join(j.Dir(), name))
			}
			// Nothing is changed through a read-only export; the
			// next writable start tries again first.
			s.log.Error().Err(err).Str("undo", name).Msg("ending a change in place cut short by a crash")
		}
	}
	if !opts.ReadOnly {
		n, err := j.RemoveStaleTemps()
		if n > 0 {
			s.log.Info().Int("removed", n).Msg("removed temporary files of interrupted uploads")
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("cleaning up temporary files of interrupted uploads")
		}
	}
	return s, nil
}

// ID returns the export's identity (see identity.go): what a mount binds
// the data it writes for this peer to.
func (s *Server) ID() string { return s.id }

// Export returns the absolute path of the exported directory.
func (s *Server) Export() string { return s.jail.Dir() }

// Serve accepts connections on ln and serves each in its own goroutine
// until Close is called, then returns nil (at once if Close came first).
// It closes ln when it returns.
// Serve may be called for several listeners at once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	s.log.Info().Str("addr", ln.Addr().String()).Msg("serving")
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if temporary(err) {
				// Out of file descriptors or a connection reset while
				// queued: wait a little rather than spin or give up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept")
				select {
				case <-time.After(backoff):
				case <-s.done:
					return nil
				}
				continue
			}
			return fmt.Errorf("peer: server: accept: %w", err)
		}
		backoff = 0
		if !s.track(nc) {
			nc.Close()
			return nil
		}
		var p *secure.Pending
		if s.opts.Secure != nil {
			var ok bool
			if p, ok = s.gate.Enter(nc); !ok {
				// Too many handshakes from its source: closed at once,
				// counted and logged (at a bounded rate) by the gate.
				nc.Close()
				s.untrack(nc, false)
				continue
			}
		}
		go s.handle(nc, p)
	}
}

// temporary reports whether an Accept error is worth retrying.
func temporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a new connection with Close; it reports false once the
// server is closed.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	return true
}

// admit counts a connection as active, unless MaxConns are already.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active >= s.opts.MaxConns {
		return false
	}
	s.active++
	return true
}

// beginTransfer counts a PUT or GET as in progress, unless MaxTransfers
// are already; endTransfer undoes it.
func (s *Server) beginTransfer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.transfers >= s.opts.MaxTransfers {
		return false
	}
	s.transfers++
	return true
}

func (s *Server) endTransfer() {
	s.mu.Lock()
	s.transfers--
	s.mu.Unlock()
}

func (s *Server) untrack(nc net.Conn, admitted bool) {
	s.mu.Lock()
	delete(s.conns, nc)
	if admitted {
		s.active--
	}
	s.mu.Unlock()
	s.wg.Done()
}

// Close stops the server: it closes every listener and connection,
// interrupting transfers in progress (whose temporary files are removed),
// and waits for every goroutine of the server to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.watchMu.Lock()
	s.watchDone = true
	if s.watch != nil {
		s.watch.close()
	}
	s.watchMu.Unlock()
	var err error
	for ln := range s.listeners {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.gate.Close()
	s.files.close()
	if cerr := s.jail.Close(); err == nil {
		err = cerr
	}
	s.log.Info().Msg("closed")
	return err
}

// handle serves one connection until it ends. nc is the accepted socket;
// with Options.Secure the protocol runs over TLS on top of it, after the
// handshake that p (from the gate) stands for.
func (s *Server) handle(nc net.Conn, p *secure.Pending) {
	admitted := false
	defer func() { s.untrack(nc, admitted) }()
	// Closing the socket, not the TLS layer: no close_notify that could
	// block on a client that does not read.
	defer nc.Close()
	log := s.log.With().Str("remote", nc.RemoteAddr().String()).Logger()

	stream := nc
	if s.opts.Secure != nil {
		// Before admission: a stranger never takes a connection slot, and
		// a handshake is bounded by HandshakeTimeout. Refusals are
		// counted and logged by the gate, at a bounded rate: a flood of
		// strangers must not flood the log.
		sc, err := s.opts.Secure.Server(nc, s.opts.HandshakeTimeout)
		if err != nil {
			p.Refuse(err)
		}
		switch {
		case err == nil:
			if !p.Done() {
				return // evicted by newer handshakes meanwhile
			}
			stream = sc
		case errors.Is(err, secure.ErrNotMember):
			sc.SetWriteDeadline(time.Now().Add(time.Second))
			peerproto.WriteMessage(sc, peerproto.Refusal{Err: peerproto.Fail(peerproto.VerbConnect,
				peerproto.CodeDenied, "not a member of this cluster")})
			return
		case errors.Is(err, secure.ErrPlaintext):
			peerproto.WriteMessage(sc, peerproto.Refusal{Err: peerproto.Fail(peerproto.VerbConnect,
				peerproto.CodeDenied, "this peer speaks TLS only: connect with the cluster secret (PEERFS_SECRET)")})
			return
		default:
			return
		}
	}

	admitted = s.admit()
	if !admitted {
		s.gate.Refused(nc.RemoteAddr(), secure.ReasonBusy, fmt.Errorf("too many connections (max_conns %d)", s.opts.MaxConns))
		stream.SetWriteDeadline(time.Now().Add(s.opts.IOTimeout))
		peerproto.WriteMessage(stream, peerproto.Refusal{Err: peerproto.Fail(peerproto.VerbConnect,
			peerproto.CodeBusy, "too many connections (%d)", s.opts.MaxConns)})
		return
	}
	log.Info().Bool("tls", s.opts.Secure != nil).Msg("connected")
	c := &conn{s: s, nc: stream, log: log}
	c.rate = minRate{perSec: s.opts.MinTransferRate, window: s.opts.TransferWindow}
	c.rd = &deadlineReader{nc: stream, rate: &c.rate}
	c.r = bufio.NewReaderSize(c.rd, 64<<10)
	c.w = bufio.NewWriterSize(&deadlineWriter{nc: stream, timeout: s.opts.IOTimeout, rate: &c.rate}, 64<<10)
	err := c.serve()
	switch {
	case err == nil, s.isClosed():
		log.Info().Msg("disconnected")
	case isTimeout(err):
		log.Info().Err(err).Msg("disconnected: timed out")
	default:
		log.Info().Err(err).Msg("disconnected")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sendChunk is the most file data sent under one write deadline: a
// receiver slower than sendChunk per IOTimeout is cut. It is also the
// size of the pooled buffers that PUT payloads and large GETs go through
// (over TLS the data must pass through user space to be encrypted), so a
// big transfer costs one file read or write per MiB.
const sendChunk = 1 << 20
