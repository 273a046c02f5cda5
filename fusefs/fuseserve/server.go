package fuseserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fusedev"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Lock order: servedHandle.mu (an open directory's listing) before
// nodeTable.mu, which a READDIRPLUS takes for each entry's lookup; no
// other of the server's locks is held while another is taken.
// nodeTable.mu is held while a node's Forget or Revive runs (see
// nodeTable.forget), so those must not call back into the server.

// Conn is the connection the server reads requests from and answers on:
// a *fusedev.Conn, or a fake in tests.
type Conn interface {
	ReadRequest() (fuse.Request, error)
	// Reply answers req with resp, of the type dispatch returns for it
	// (nil, a response, []byte or string: see fusedev.Conn.Reply).
	Reply(req fuse.Request, resp any) error
	ReplyError(req fuse.Request, errno fuse.Errno) error
	InvalidateNode(node fuse.NodeID, off, size int64) error
	InvalidateEntry(parent fuse.NodeID, name string) error
	ExpireEntry(parent fuse.NodeID, name string) error
}

var _ Conn = (*fusedev.Conn)(nil)

// Options configure a Server.
type Options struct {
	// Logger receives the server's logs: a panic in a node method at
	// error level, every request and answer at trace level.
	Logger zerolog.Logger
	// Observe, if set, is called once per answered request with the
	// operation's name in lower case ("lookup", "read", "flush"...), the
	// time from when it was read to its answer, and the errno's name
	// ("EIO") or "" on success. It must be quick and safe for concurrent
	// use.
	Observe func(op string, d time.Duration, errno string)
	// Errno maps an error to the errno the kernel gets; it is called for
	// every failed request, with the errors of node methods as well as
	// the server's own (errors.go). Required.
	Errno func(error) fuse.Errno
}

// Server answers the FUSE requests of one connection by calling the
// bazil fs.Node and fs.Handle interfaces of the nodes of an fs.FS, as
// bazil's fs.Server does, with one difference that matters here: how a
// request reaches the code that answers it.
//
// fs.Server reads every request on one goroutine and answers it on a new
// one. The reader is then blocked in read(2) on /dev/fuse, so the new
// goroutine must be picked up by another thread: a futex wake-up and a
// context switch per request, which on a small VM costs more than the
// rest of a lookup (bench/fusefloor: 9-20k lookups/s through fs.Serve,
// 33k answered inline, on the machine of docs/PERFORMANCE.md).
//
// Server answers a request on the goroutine that read it when the request
// is of a kind that is normally answered from memory or the local cache
// (lookup, getattr, open, read, write, release, forget...). Such a request
// can still wait on the network (a lookup nothing cached), so a timer
// armed for each one starts another reading goroutine if it has not been
// answered after handoffAfter; the goroutine that was answering it stops
// reading once it is done. Requests that usually wait on a peer (an
// upload's flush, fsync, setattr, statfs...) are answered on the
// goroutine that read them as well, but start another reading goroutine
// at once: given a goroutine of their own, as in fs.Server, they ran on
// another CPU, and a wake-up across CPUs costs ~25 us each way on that
// machine (bench/fuseuring), more than half an upload's FLUSH.
// (The timer is not for them: it fires about a millisecond late once
// every thread sleeps, since the runtime waits for timers in whole
// milliseconds, and would hold up the requests behind.) So the
// mount keeps reading requests while any of them waits, and a quick one
// costs no hand-off.
//
// The price: quick requests of several programs at once are answered one
// after the other by one goroutine (each under handoffAfter), so they
// use one CPU. Keeping GOMAXPROCS read loops blocked in ReadRequest was
// tried on the 2-vCPU machine measured: every workload got slower (small
// reads -30 %, stat -15 %, cold sequential reads -10 % in
// bench/compare.sh; the cause was not profiled).
type Server struct {
	conn    Conn
	fs      bfs.FS
	log     zerolog.Logger
	observe func(op string, d time.Duration, errno string) // may be nil
	errno   func(error) fuse.Errno
	start   time.Time // default times of an Attr

	nodes    nodeTable
	handles  handleTable
	inflight inflight
	readBufs sync.Pool      // *[]byte that file reads are answered from
	wg       sync.WaitGroup // reading goroutines and request goroutines

	mu  sync.Mutex // protects err
	err error      // the first error reading the device
}

// handoffAfter is how long a request answered inline may take before
// another goroutine takes over reading the device.
const handoffAfter = 100 * time.Microsecond

// New returns a server of fsys's nodes on conn; Serve starts it.
func New(conn Conn, fsys bfs.FS, opts Options) (*Server, error) {
	if opts.Errno == nil {
		return nil, errors.New("fuseserve: Options.Errno is required")
	}
	root, err := fsys.Root()
	if err != nil {
		return nil, fmt.Errorf("fuseserve: root node: %w", err)
	}
	return &Server{
		conn:     conn,
		fs:       fsys,
		log:      opts.Logger,
		observe:  opts.Observe,
		errno:    opts.Errno,
		start:    time.Now(),
		nodes:    newNodeTable(root),
		handles:  newHandleTable(),
		inflight: inflight{dying: fatalSignalPending, cancels: map[fuse.RequestID]flight{}},
		readBufs: sync.Pool{New: func() any { return new([]byte) }},
	}, nil
}

// Serve answers requests until the connection is closed (unmount), and
// returns once every request has been answered: nil then, or the error
// that stopped reading the device. Handles still open then are released
// (see releaseLeft).
func (s *Server) Serve() error {
	s.wg.Add(1)
	s.readLoop()
	s.wg.Wait()
	s.releaseLeft()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// readLoop reads and answers requests until the device is closed, or until a
// request it answers outlasts handoffAfter, or is one that usually waits,
// and another read loop takes over. The caller has counted it in s.wg.
func (s *Server) readLoop() {
	defer s.wg.Done()
	for {
		req, err := s.conn.ReadRequest()
		if err != nil {
			s.stop(err)
			return
		}
		// Registered before the next read, so that an INTERRUPT read
		// right after it finds it.
		ctx, cancel := s.inflight.begin(req.Hdr().ID, req.Hdr().Pid)
		if !s.quick(req) {
			// One that usually waits on a peer is answered here all
			// the same, on the CPU that read it, and another loop reads
			// on from the start (Server's comment says why).
			s.wg.Add(1)
			go s.readLoop()
			s.serve(ctx, cancel, req)
			return
		}
		s.wg.Add(1) // for the read loop the timer may start
		t := time.AfterFunc(handoffAfter, s.readLoop)
		s.serve(ctx, cancel, req)
		if !t.Stop() {
			return // another loop reads now, and owns the count added
		}
		s.wg.Done()
	}
}

// stop ends reading after ReadRequest failed with err.
func (s *Server) stop(err error) {
	// io.EOF: unmounted; ECONNABORTED: aborted through fusectl. Either
	// way no answer can be delivered any more: cancel what is still
	// running instead of waiting for it.
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNABORTED) {
		s.mu.Lock()
		if s.err == nil {
			s.err = fmt.Errorf("fuseserve: read request: %w", err)
		}
		s.mu.Unlock()
	}
	s.inflight.cancelAll()
}

// HandleQuickFlusher is a handle that knows whether its Flush is
// answered from memory (it uploads nothing): the server then answers its
// FLUSH as a quick request. The FLUSH of any other handle is answered with
// another reading goroutine started at once.
type HandleQuickFlusher interface {
	QuickFlush() bool
}

// quick reports whether req is of a kind normally answered without
// waiting on a peer, and so is answered on the reading goroutine under the
// hand-off timer (the others start another reading goroutine first): all but
// the changes to a peer's tree, fsync, statfs (every peer is asked) and
// the flush of a file open for writing (it uploads). An unlink, rmdir or
// rename is quick: the mount writes it behind (remote's behind.go), and
// so a mkdir on most peers (behind_make.go); so is a create: the new
// file is the cache's until its close (a spare file when the cache has
// one, cache/reuse.go). One that waits on its peer after all is handed
// off by the timer. Unknown requests (ioctl...) are answered ENOSYS at
// once.
func (s *Server) quick(req fuse.Request) bool {
	switch r := req.(type) {
	case *fuse.SymlinkRequest,
		*fuse.MknodRequest, *fuse.LinkRequest, *fuse.SetattrRequest, *fuse.FsyncRequest,
		*fuse.StatfsRequest, *fuse.SetxattrRequest, *fuse.RemovexattrRequest,
		*fuse.DestroyRequest:
		return false
	case *fuse.FlushRequest:
		// Closing a file opened for reading uploads nothing, unless
		// the open created it.
		h, ok := s.handles.get(r.Handle)
		if !ok {
			return false
		}
		q, ok := h.handle.(HandleQuickFlusher)
		return ok && q.QuickFlush()
	}
	return true
}

// serve answers one request: the only place that sends an answer.
func (s *Server) serve(ctx context.Context, cancel context.CancelFunc, req fuse.Request) {
	hdr := req.Hdr()
	defer func() {
		cancel()
		s.inflight.end(hdr.ID)
	}()
	if _, ok := req.(*fuse.NotifyReply); ok {
		return // a reply to a notification we never send; nothing to answer
	}
	began := time.Now()
	if trace := s.log.Trace(); trace.Enabled() {
		trace.Msgf("fuse: <- %v", req)
	}
	resp, err := s.dispatch(ctx, req)
	errno := ""
	if err != nil {
		e := s.errno(err)
		errno = errnoName(e)
		s.answer(req, s.conn.ReplyError(req, e))
	} else {
		s.respond(req, resp)
	}
	if trace := s.log.Trace(); trace.Enabled() {
		trace.Msgf("fuse: -> %v %s", hdr.ID, errno)
	}
	if s.observe != nil {
		s.observe(opName(req), time.Since(began), errno)
	}
}

// errnoName names an answered errno for Options.Observe: "ENOENT",
// "ENODATA", "ENOTEMPTY"... (bazil's ErrnoName knows a few names and
// gives the others' messages, which make poor metric labels).
func errnoName(e fuse.Errno) string {
	if n := unix.ErrnoName(syscall.Errno(e)); n != "" {
		return n
	}
	return e.ErrnoName()
}

// respond sends resp, the response dispatch returned for req, and gives
// back the read buffer it may hold.
func (s *Server) respond(req fuse.Request, resp any) {
	if r, ok := resp.(*readReply); ok { // READ, READDIR, READDIRPLUS
		s.answer(req, s.conn.Reply(req, &r.ReadResponse))
		s.readBufs.Put(r.buf) // Reply has written the data out
		return
	}
	s.answer(req, s.conn.Reply(req, resp))
}

// answer logs the failure to deliver an answer to req: the kernel then
// waits for one that will never come (until the request is interrupted
// or the connection aborted), so it is a bug or a dying connection.
func (s *Server) answer(req fuse.Request, err error) {
	if err != nil {
		s.log.Warn().Err(err).Str("request", fmt.Sprint(req)).Msg("fuseserve: write an answer to the FUSE device")
	}
}

// inflight is the requests being answered: each is cancelled when the
// server stops, and by an INTERRUPT while its caller is being killed.
type inflight struct {
	// dying reports whether the thread pid has a fatal signal pending
	// (fatalSignalPending; tests replace it). Read-only.
	dying func(pid uint32) bool

	mu      sync.Mutex // protects cancels
	cancels map[fuse.RequestID]flight
}

// flight is one request in flight.
type flight struct {
	cancel context.CancelFunc
	pid    uint32 // the calling thread, as the request's header names it
}

// begin registers request id, made by thread pid, as in flight.
func (f *inflight) begin(id fuse.RequestID, pid uint32) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.cancels[id] = flight{cancel: cancel, pid: pid}
	f.mu.Unlock()
	return ctx, cancel
}

// end forgets request id, answered.
func (f *inflight) end(id fuse.RequestID) {
	f.mu.Lock()
	delete(f.cancels, id)
	f.mu.Unlock()
}

// interrupt cancels request id if its caller is being killed, and
// ignores the INTERRUPT otherwise; false if id is not in flight.
//
// The kernel sends an INTERRUPT whenever a signal reaches a thread that
// waits in a request, and Go programs get SIGURG (the runtime's
// preemption) many times a second. A local disk never fails mkdir,
// chmod, rename, stat or read with EINTR, so programs do not retry them:
// a request runs to its end, which the Store bounds with its network
// deadlines, as a local disk's waits are killable only. A fatal signal
// (SIGKILL, or a signal the program neither catches nor ignores, as
// Ctrl-C to cat) is different: the kernel cannot let the process die
// before the request is answered, so the request is cancelled at once.
func (f *inflight) interrupt(id fuse.RequestID) bool {
	f.mu.Lock()
	fl, ok := f.cancels[id]
	f.mu.Unlock()
	if !ok {
		return false
	}
	if f.dying(fl.pid) {
		fl.cancel()
	}
	return true
}

// cancelAll cancels every request in flight.
func (f *inflight) cancelAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.cancels {
		fl.cancel()
	}
}
