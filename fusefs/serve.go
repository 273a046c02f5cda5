package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"bazil.org/fuse/fuseutil"
	"github.com/rs/zerolog"
)

// server answers the FUSE requests of one bazil.org/fuse connection by
// calling the bazil bfs.Node and bfs.Handle interfaces our nodes
// implement, as bazil's fs.Server does, with one difference that matters
// here: how a request reaches the code that answers it.
//
// fs.Server reads every request on one goroutine and answers it on a new
// one. The reader is then blocked in read(2) on /dev/fuse, so the new
// goroutine must be picked up by another thread: a futex wake-up and a
// context switch per request, which on a small VM costs more than the
// rest of a lookup (bench/fusefloor: 9-20k lookups/s through fs.Serve,
// 33k answered inline, on the machine of docs/PERFORMANCE.md).
//
// server answers a request on the goroutine that read it when the request
// is of a kind that is normally answered from memory or the local cache
// (lookup, getattr, open, read, write, release, forget...). Such a request
// can still wait on the network (a lookup nothing cached), so a timer
// armed for each one starts another reading goroutine if it has not been
// answered after handoffAfter; the goroutine that was answering it stops
// reading once it is done. Requests that usually wait on a peer (create,
// flush, fsync, rename, remove...) go to a goroutine of their own at once,
// as in fs.Server. So the mount keeps reading requests while any of them
// waits, and a quick one costs no hand-off.
//
// The price: quick requests of several programs at once are answered one
// after the other by one goroutine (each under handoffAfter), so they
// use one CPU. Keeping GOMAXPROCS read loops blocked in ReadRequest was
// tried on the 2-vCPU machine measured: every workload got slower (small
// reads -30 %, stat -15 %, cold sequential reads -10 % in
// bench/compare.sh; the cause was not profiled).
type server struct {
	conn    *fuse.Conn
	fs      bfs.FS
	log     zerolog.Logger
	observe func(op string, d time.Duration, errno string) // may be nil
	start   time.Time                                      // default times of an Attr

	wg sync.WaitGroup // reading goroutines and request goroutines

	mu         sync.Mutex // protects the fields below
	nodes      map[fuse.NodeID]*servedNode
	ids        map[bfs.Node]fuse.NodeID
	nextNode   fuse.NodeID
	handles    map[fuse.HandleID]*servedHandle
	nextHandle fuse.HandleID
	inflight   map[fuse.RequestID]context.CancelFunc
	err        error // the first error reading the device
}

// handoffAfter is how long a request answered inline may take before
// another goroutine takes over reading the device.
const handoffAfter = 100 * time.Microsecond

// Default attribute and entry validity where a node sets none, as fs.Server.
const (
	defaultAttrValid  = time.Minute
	defaultEntryValid = time.Minute
)

// servedNode is a node the kernel knows by a NodeID.
type servedNode struct {
	node  bfs.Node
	inode uint64
	refs  uint64 // lookups the kernel has not forgotten
}

// servedHandle is an open file or directory.
type servedHandle struct {
	handle bfs.Handle

	mu      sync.Mutex // protects dirents
	dirents []byte     // a directory's entries, encoded at offset 0
}

// readBufs recycles the buffers file reads are answered from: Respond
// copies the data out, so a buffer is free again once it returns.
var readBufs = sync.Pool{New: func() any { return new([]byte) }}

func newServer(conn *fuse.Conn, fsys bfs.FS, log zerolog.Logger, observe func(string, time.Duration, string)) (*server, error) {
	root, err := fsys.Root()
	if err != nil {
		return nil, fmt.Errorf("fusefs: root node: %w", err)
	}
	s := &server{
		conn:       conn,
		fs:         fsys,
		log:        log,
		observe:    observe,
		start:      time.Now(),
		nodes:      map[fuse.NodeID]*servedNode{1: {node: root, inode: 1, refs: 1}},
		ids:        map[bfs.Node]fuse.NodeID{root: 1},
		nextNode:   2,
		handles:    map[fuse.HandleID]*servedHandle{},
		nextHandle: 1,
		inflight:   map[fuse.RequestID]context.CancelFunc{},
	}
	return s, nil
}

// Serve answers requests until the connection is closed (unmount), and
// returns once every request has been answered: nil then, or the error
// that stopped reading the device.
func (s *server) Serve() error {
	s.wg.Add(1)
	s.read()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// read reads and answers requests until the device is closed, or until a
// request it answers inline outlasts handoffAfter and another read loop
// takes over. The caller has counted it in s.wg.
func (s *server) read() {
	defer s.wg.Done()
	for {
		req, err := s.conn.ReadRequest()
		if err != nil {
			// io.EOF: unmounted; ECONNABORTED: aborted through fusectl
			// (Mounted.wait). Either way no answer can be delivered any
			// more: cancel what is still running instead of waiting for it.
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNABORTED) {
				s.mu.Lock()
				if s.err == nil {
					s.err = fmt.Errorf("fusefs: read request: %w", err)
				}
				s.mu.Unlock()
			}
			s.mu.Lock()
			for _, cancel := range s.inflight {
				cancel()
			}
			s.mu.Unlock()
			return
		}
		// Registered before the next read, so that an INTERRUPT read
		// right after it finds it.
		ctx, cancel := s.begin(req)
		if !s.quick(req) {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(ctx, cancel, req)
			}()
			continue
		}
		s.wg.Add(1) // for the read loop the timer may start
		t := time.AfterFunc(handoffAfter, s.read)
		s.serve(ctx, cancel, req)
		if !t.Stop() {
			return // another loop reads now, and owns the count added
		}
		s.wg.Done()
	}
}

// begin registers req as in flight, cancellable by an INTERRUPT.
func (s *server) begin(req fuse.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.inflight[req.Hdr().ID] = cancel
	s.mu.Unlock()
	return ctx, cancel
}

// quick reports whether req is of a kind normally answered without
// waiting on a peer, and so is answered on the reading goroutine: all but
// the changes to a peer's tree, fsync, statfs (every peer is asked) and
// the flush of a file open for writing (it uploads). Unknown requests
// (ioctl...) are answered ENOSYS at once.
func (s *server) quick(req fuse.Request) bool {
	switch r := req.(type) {
	case *fuse.CreateRequest, *fuse.MkdirRequest, *fuse.SymlinkRequest,
		*fuse.MknodRequest, *fuse.LinkRequest, *fuse.RemoveRequest,
		*fuse.RenameRequest, *fuse.SetattrRequest, *fuse.FsyncRequest,
		*fuse.StatfsRequest, *fuse.SetxattrRequest, *fuse.RemovexattrRequest,
		*fuse.DestroyRequest:
		return false
	case *fuse.FlushRequest:
		// Closing a file opened for reading uploads nothing, unless
		// the open created it.
		s.mu.Lock()
		sh := s.handles[r.Handle]
		s.mu.Unlock()
		h, ok := sh.handleOf().(*handle)
		return ok && !h.uploads()
	}
	return true
}

func (sh *servedHandle) handleOf() bfs.Handle {
	if sh == nil {
		return nil
	}
	return sh.handle
}

// serve answers one request.
func (s *server) serve(ctx context.Context, cancel context.CancelFunc, req fuse.Request) {
	hdr := req.Hdr()
	defer func() {
		cancel()
		s.mu.Lock()
		delete(s.inflight, hdr.ID)
		s.mu.Unlock()
	}()
	if _, ok := req.(*fuse.NotifyReply); ok {
		return // a reply to a notification we never send; nothing to answer
	}
	began := time.Now()
	s.mu.Lock()
	var sn *servedNode
	if hdr.Node != 0 {
		sn = s.nodes[hdr.Node]
	}
	s.mu.Unlock()
	if trace := s.log.Trace(); trace.Enabled() {
		trace.Msgf("fuse: <- %v", req)
	}

	var err error
	switch req.(type) {
	case *fuse.ForgetRequest, *fuse.BatchForgetRequest, *fuse.InterruptRequest:
		// Not about a node we must know (and a FORGET takes no error).
		err = s.handle(ctx, sn, req)
	default:
		if hdr.Node != 0 && sn == nil {
			err = syscall.ESTALE
		} else {
			err = s.handle(ctx, sn, req)
		}
	}
	errno := ""
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			err = syscall.EINTR // interrupted by the kernel (a signal)
		}
		e := fuse.ToErrno(err)
		errno = errnoName(e)
		req.RespondError(e)
	}
	if trace := s.log.Trace(); trace.Enabled() {
		trace.Msgf("fuse: -> %v %s", hdr.ID, errno)
	}
	if s.observe != nil {
		s.observe(opName(req), time.Since(began), errno)
	}
}

// handle calls the node or handle method for req and answers it; it
// returns the error to answer instead. A panic in a method is answered
// with EIO and logged, as fs.Server does, instead of stopping the mount.
func (s *server) handle(ctx context.Context, sn *servedNode, req fuse.Request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error().Str("request", fmt.Sprint(req)).Msgf("panic answering a FUSE request: %v\n%s", v, debug.Stack())
			err = syscall.EIO
		}
	}()
	var node bfs.Node
	if sn != nil {
		node = sn.node
	}
	switch r := req.(type) {
	case *fuse.LookupRequest:
		resp := &fuse.LookupResponse{EntryValid: defaultEntryValid}
		var n bfs.Node
		switch l := node.(type) {
		case bfs.NodeRequestLookuper:
			n, err = l.Lookup(ctx, r, resp)
		case bfs.NodeStringLookuper:
			n, err = l.Lookup(ctx, r.Name)
		default:
			return syscall.ENOENT
		}
		if err != nil {
			return err
		}
		if err := s.saveLookup(ctx, resp, sn, r.Name, n); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.GetattrRequest:
		resp := &fuse.GetattrResponse{}
		if g, ok := node.(bfs.NodeGetattrer); ok {
			err = g.Getattr(ctx, r, resp)
		} else {
			err = s.attr(ctx, sn, &resp.Attr)
		}
		if err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.SetattrRequest:
		resp := &fuse.SetattrResponse{}
		if n, ok := node.(bfs.NodeSetattrer); ok {
			if err := n.Setattr(ctx, r, resp); err != nil {
				return err
			}
		}
		// The attributes after the change, whatever Setattr filled in.
		if err := s.attr(ctx, sn, &resp.Attr); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.OpenRequest:
		resp := &fuse.OpenResponse{}
		h := bfs.Handle(node)
		if o, ok := node.(bfs.NodeOpener); ok {
			if h, err = o.Open(ctx, r, resp); err != nil {
				return err
			}
		}
		resp.Handle = s.saveHandle(h)
		r.Respond(resp)

	case *fuse.CreateRequest:
		c, ok := node.(bfs.NodeCreater)
		if !ok {
			return syscall.EPERM // ENOSYS would make the kernel try mknod+open
		}
		resp := &fuse.CreateResponse{LookupResponse: fuse.LookupResponse{EntryValid: defaultEntryValid}}
		n, h, err := c.Create(ctx, r, resp)
		if err != nil {
			return err
		}
		if err := s.saveLookup(ctx, &resp.LookupResponse, sn, r.Name, n); err != nil {
			if rel, ok := h.(bfs.HandleReleaser); ok {
				rel.Release(ctx, &fuse.ReleaseRequest{Header: r.Header, Flags: r.Flags})
			}
			return err
		}
		resp.Handle = s.saveHandle(h)
		r.Respond(resp)

	case *fuse.MkdirRequest:
		m, ok := node.(bfs.NodeMkdirer)
		if !ok {
			return syscall.EPERM
		}
		n, err := m.Mkdir(ctx, r)
		if err != nil {
			return err
		}
		resp := &fuse.MkdirResponse{LookupResponse: fuse.LookupResponse{EntryValid: defaultEntryValid}}
		if err := s.saveLookup(ctx, &resp.LookupResponse, sn, r.Name, n); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.SymlinkRequest:
		m, ok := node.(bfs.NodeSymlinker)
		if !ok {
			return syscall.EIO
		}
		n, err := m.Symlink(ctx, r)
		if err != nil {
			return err
		}
		resp := &fuse.SymlinkResponse{LookupResponse: fuse.LookupResponse{EntryValid: defaultEntryValid}}
		if err := s.saveLookup(ctx, &resp.LookupResponse, sn, r.NewName, n); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.MknodRequest:
		m, ok := node.(bfs.NodeMknoder)
		if !ok {
			return syscall.EIO
		}
		n, err := m.Mknod(ctx, r)
		if err != nil {
			return err
		}
		resp := &fuse.LookupResponse{EntryValid: defaultEntryValid}
		if err := s.saveLookup(ctx, resp, sn, r.Name, n); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.LinkRequest:
		l, ok := node.(bfs.NodeLinker)
		if !ok {
			return syscall.EIO
		}
		s.mu.Lock()
		old := s.nodes[r.OldNode]
		s.mu.Unlock()
		if old == nil {
			return syscall.ESTALE
		}
		n, err := l.Link(ctx, r, old.node)
		if err != nil {
			return err
		}
		resp := &fuse.LookupResponse{EntryValid: defaultEntryValid}
		if err := s.saveLookup(ctx, resp, sn, r.NewName, n); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.ReadlinkRequest:
		l, ok := node.(bfs.NodeReadlinker)
		if !ok {
			return syscall.EIO
		}
		target, err := l.Readlink(ctx, r)
		if err != nil {
			return err
		}
		r.Respond(target)

	case *fuse.RemoveRequest:
		m, ok := node.(bfs.NodeRemover)
		if !ok {
			return syscall.EIO
		}
		if err := m.Remove(ctx, r); err != nil {
			return err
		}
		r.Respond()

	case *fuse.RenameRequest:
		m, ok := node.(bfs.NodeRenamer)
		if !ok {
			return syscall.EIO
		}
		s.mu.Lock()
		newDir := s.nodes[r.NewDir]
		s.mu.Unlock()
		if newDir == nil {
			return syscall.ESTALE
		}
		if err := m.Rename(ctx, r, newDir.node); err != nil {
			return err
		}
		r.Respond()

	case *fuse.AccessRequest:
		if a, ok := node.(bfs.NodeAccesser); ok {
			if err := a.Access(ctx, r); err != nil {
				return err
			}
		}
		r.Respond()

	case *fuse.FsyncRequest:
		m, ok := node.(bfs.NodeFsyncer)
		if !ok {
			return syscall.EIO
		}
		if err := m.Fsync(ctx, r); err != nil {
			return err
		}
		r.Respond()

	case *fuse.GetxattrRequest:
		g, ok := node.(bfs.NodeGetxattrer)
		if !ok {
			return syscall.ENOTSUP
		}
		resp := &fuse.GetxattrResponse{}
		if err := g.Getxattr(ctx, r, resp); err != nil {
			return err
		}
		if r.Size != 0 && uint64(len(resp.Xattr)) > uint64(r.Size) {
			return syscall.ERANGE
		}
		r.Respond(resp)

	case *fuse.ListxattrRequest:
		l, ok := node.(bfs.NodeListxattrer)
		if !ok {
			return syscall.ENOTSUP
		}
		resp := &fuse.ListxattrResponse{}
		if err := l.Listxattr(ctx, r, resp); err != nil {
			return err
		}
		if r.Size != 0 && uint64(len(resp.Xattr)) > uint64(r.Size) {
			return syscall.ERANGE
		}
		r.Respond(resp)

	case *fuse.SetxattrRequest:
		x, ok := node.(bfs.NodeSetxattrer)
		if !ok {
			return syscall.ENOTSUP
		}
		if err := x.Setxattr(ctx, r); err != nil {
			return err
		}
		r.Respond()

	case *fuse.RemovexattrRequest:
		x, ok := node.(bfs.NodeRemovexattrer)
		if !ok {
			return syscall.ENOTSUP
		}
		if err := x.Removexattr(ctx, r); err != nil {
			return err
		}
		r.Respond()

	case *fuse.ForgetRequest:
		s.forget(r.Hdr().Node, r.N)
		r.Respond()

	case *fuse.BatchForgetRequest:
		for _, item := range r.Forget {
			s.forget(item.NodeID, item.N)
		}
		r.Respond()

	case *fuse.ReadRequest:
		sh := s.handleByID(r.Handle)
		if sh == nil {
			return syscall.ESTALE
		}
		bp := readBufs.Get().(*[]byte)
		defer readBufs.Put(bp)
		if cap(*bp) < r.Size {
			*bp = make([]byte, r.Size)
		}
		resp := &fuse.ReadResponse{Data: (*bp)[:0:r.Size]}
		if r.Dir {
			rd, ok := sh.handle.(bfs.HandleReadDirAller)
			if !ok {
				return syscall.EIO
			}
			sh.mu.Lock()
			defer sh.mu.Unlock()
			if r.Offset == 0 || sh.dirents == nil {
				// A read from offset 0 is a new pass (rewinddir): list again.
				sh.dirents = nil // a failed listing leaves none to serve
				ents, err := rd.ReadDirAll(ctx)
				if err != nil {
					return err
				}
				data := []byte{}
				for _, e := range ents {
					if e.Inode == 0 {
						e.Inode = bfs.GenerateDynamicInode(sn.inode, e.Name)
					}
					data = fuse.AppendDirent(data, e)
				}
				sh.dirents = data
			}
			fuseutil.HandleRead(r, resp, sh.dirents)
			r.Respond(resp)
			return nil
		}
		h, ok := sh.handle.(bfs.HandleReader)
		if !ok {
			return syscall.EIO
		}
		if err := h.Read(ctx, r, resp); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.WriteRequest:
		sh := s.handleByID(r.Handle)
		if sh == nil {
			return syscall.ESTALE
		}
		w, ok := sh.handle.(bfs.HandleWriter)
		if !ok {
			return syscall.EIO
		}
		resp := &fuse.WriteResponse{}
		if err := w.Write(ctx, r, resp); err != nil {
			return err
		}
		r.Respond(resp)

	case *fuse.FlushRequest:
		sh := s.handleByID(r.Handle)
		if sh == nil {
			return syscall.ESTALE
		}
		if f, ok := sh.handle.(bfs.HandleFlusher); ok {
			if err := f.Flush(ctx, r); err != nil {
				return err
			}
		}
		r.Respond()

	case *fuse.ReleaseRequest:
		s.mu.Lock()
		sh := s.handles[r.Handle]
		delete(s.handles, r.Handle) // whatever Release says, the handle is gone
		s.mu.Unlock()
		if sh == nil {
			return syscall.ESTALE
		}
		if rel, ok := sh.handle.(bfs.HandleReleaser); ok {
			if err := rel.Release(ctx, r); err != nil {
				return err
			}
		}
		r.Respond()

	case *fuse.StatfsRequest:
		resp := &fuse.StatfsResponse{}
		if st, ok := s.fs.(bfs.FSStatfser); ok {
			if err := st.Statfs(ctx, r, resp); err != nil {
				return err
			}
		}
		r.Respond(resp)

	case *fuse.InterruptRequest:
		s.mu.Lock()
		cancel := s.inflight[r.IntrID]
		s.mu.Unlock()
		if cancel == nil {
			// Answered already, or not yet read: EAGAIN makes the kernel
			// send the interrupt again if the request is still pending.
			return syscall.EAGAIN
		}
		cancel()
		r.Respond()

	case *fuse.DestroyRequest:
		if d, ok := s.fs.(bfs.FSDestroyer); ok {
			d.Destroy()
		}
		r.Respond()

	default:
		// To FUSE, ENOSYS means "never implemented": the kernel stops
		// asking. For POLL that makes it answer "always ready" itself,
		// instead of a round trip for every file a Go program opens
		// (os.Open registers regular files with epoll).
		return syscall.ENOSYS
	}
	return nil
}

// attr fills a with sn's attributes, over the defaults fs.Server uses.
func (s *server) attr(ctx context.Context, sn *servedNode, a *fuse.Attr) error {
	if err := s.nodeAttr(ctx, sn.node, a); err != nil {
		return err
	}
	if a.Inode == 0 {
		a.Inode = sn.inode
	}
	return nil
}

func (s *server) nodeAttr(ctx context.Context, n bfs.Node, a *fuse.Attr) error {
	a.Valid = defaultAttrValid
	a.Nlink = 1
	a.Atime, a.Mtime, a.Ctime = s.start, s.start, s.start
	return n.Attr(ctx, a)
}

// saveLookup fills resp for node n, found as name in parent, and counts
// one more kernel reference to it.
func (s *server) saveLookup(ctx context.Context, resp *fuse.LookupResponse, parent *servedNode, name string, n bfs.Node) error {
	if err := s.nodeAttr(ctx, n, &resp.Attr); err != nil {
		return err
	}
	if resp.Attr.Inode == 0 {
		resp.Attr.Inode = bfs.GenerateDynamicInode(parent.inode, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[n]
	if !ok {
		// NodeIDs are never reused (64 bits last), so a stale one can
		// only ever miss, never name another node.
		id = s.nextNode
		s.nextNode++
		s.ids[n] = id
		s.nodes[id] = &servedNode{node: n, inode: resp.Attr.Inode}
		// The kernel may have forgotten n (a FORGET answered while this
		// lookup waited and the timer had another goroutine read) after
		// the Lookup found it and before now: n is known again, and
		// must be where invalidations look for it.
		if r, ok := n.(reviver); ok {
			r.revive()
		}
	}
	s.nodes[id].refs++
	resp.Node = id
	return nil
}

// reviver is a node that forgets itself on its last FORGET (see forget)
// and must be told when a lookup makes it known again.
type reviver interface {
	revive()
}

// forget drops n of the kernel's references to node id; the last one
// forgets the node.
func (s *server) forget(id fuse.NodeID, n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.nodes[id]
	if sn == nil || id == 1 {
		return
	}
	sn.refs -= min(n, sn.refs)
	if sn.refs > 0 {
		return
	}
	delete(s.nodes, id)
	delete(s.ids, sn.node)
	// Under s.mu: a lookup of the same node must not get a new NodeID
	// between the two tables forgetting it and the node forgetting
	// itself. (Forget takes filesys.mu; nothing holds that while
	// calling into the server.)
	if f, ok := sn.node.(bfs.NodeForgetter); ok {
		f.Forget()
	}
}

func (s *server) saveHandle(h bfs.Handle) fuse.HandleID {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextHandle
	s.nextHandle++
	s.handles[id] = &servedHandle{handle: h}
	return id
}

func (s *server) handleByID(id fuse.HandleID) *servedHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handles[id]
}

// nodeID returns the NodeID the kernel knows n by.
func (s *server) nodeID(n bfs.Node) (fuse.NodeID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[n]
	return id, ok
}

// InvalidateNodeData drops the kernel's cached attributes and data of n;
// fuse.ErrNotCached if the kernel does not know n.
func (s *server) InvalidateNodeData(n bfs.Node) error {
	id, ok := s.nodeID(n)
	if !ok {
		return fuse.ErrNotCached
	}
	return s.conn.InvalidateNode(id, 0, -1)
}

// InvalidateNodeAttr drops the kernel's cached attributes of n (and, as
// the kernel implements it, its data); fuse.ErrNotCached if the kernel
// does not know n.
func (s *server) InvalidateNodeAttr(n bfs.Node) error {
	id, ok := s.nodeID(n)
	if !ok {
		return fuse.ErrNotCached
	}
	return s.conn.InvalidateNode(id, 0, 0)
}

// InvalidateEntry drops the kernel's cached lookup of name in parent;
// fuse.ErrNotCached if the kernel does not know parent.
func (s *server) InvalidateEntry(parent bfs.Node, name string) error {
	id, ok := s.nodeID(parent)
	if !ok {
		return fuse.ErrNotCached
	}
	return s.conn.InvalidateEntry(id, name)
}

// opName names a request's operation as the kernel does: "lookup",
// "getattr", "read", and for directories "opendir", "readdir",
// "releasedir", "fsyncdir".
func opName(r fuse.Request) string {
	switch r := r.(type) {
	case *fuse.LookupRequest:
		return "lookup"
	case *fuse.GetattrRequest:
		return "getattr"
	case *fuse.SetattrRequest:
		return "setattr"
	case *fuse.OpenRequest:
		if r.Dir {
			return "opendir"
		}
		return "open"
	case *fuse.CreateRequest:
		return "create"
	case *fuse.MkdirRequest:
		return "mkdir"
	case *fuse.SymlinkRequest:
		return "symlink"
	case *fuse.MknodRequest:
		return "mknod"
	case *fuse.LinkRequest:
		return "link"
	case *fuse.ReadlinkRequest:
		return "readlink"
	case *fuse.RemoveRequest:
		return "remove"
	case *fuse.RenameRequest:
		return "rename"
	case *fuse.AccessRequest:
		return "access"
	case *fuse.FsyncRequest:
		if r.Dir {
			return "fsyncdir"
		}
		return "fsync"
	case *fuse.GetxattrRequest:
		return "getxattr"
	case *fuse.ListxattrRequest:
		return "listxattr"
	case *fuse.SetxattrRequest:
		return "setxattr"
	case *fuse.RemovexattrRequest:
		return "removexattr"
	case *fuse.ForgetRequest:
		return "forget"
	case *fuse.BatchForgetRequest:
		return "batchforget"
	case *fuse.ReadRequest:
		if r.Dir {
			return "readdir"
		}
		return "read"
	case *fuse.WriteRequest:
		return "write"
	case *fuse.FlushRequest:
		return "flush"
	case *fuse.ReleaseRequest:
		if r.Dir {
			return "releasedir"
		}
		return "release"
	case *fuse.StatfsRequest:
		return "statfs"
	case *fuse.InterruptRequest:
		return "interrupt"
	case *fuse.PollRequest:
		return "poll"
	case *fuse.DestroyRequest:
		return "destroy"
	}
	return "unrecognized"
}
