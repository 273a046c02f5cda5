package fusedev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"bazil.org/fuse"
	"golang.org/x/sys/unix"
)

// Config is what a connection negotiates with the kernel (INIT), besides
// the mount's own options.
type Config struct {
	MountOptions
	// MaxReadahead is the most the kernel reads ahead, in bytes (0: the
	// kernel's offer).
	MaxReadahead uint32
	// AsyncRead lets the kernel send several READs of one file at once.
	AsyncRead bool
	// MaxWrite is the largest WRITE (and READ) the kernel may send, in
	// bytes: 128 KiB (the kernel's default) if 0, at most 1 MiB. Above
	// 128 KiB the kernel must offer FUSE_MAX_PAGES; if it does not, the
	// connection stays at 128 KiB. Each goroutine reading requests holds
	// a buffer of this size.
	MaxWrite uint32
	// AtomicTrunc makes open(O_TRUNC) of an existing file one OPEN that
	// carries O_TRUNC, which the filesystem must honour, instead of a
	// SETATTR of size 0 and then an OPEN without it.
	AtomicTrunc bool
	// Readdirplus makes the kernel list directories with READDIRPLUS
	// (ReaddirplusRequest) instead of READDIR: each entry comes with its
	// lookup's answer. The kernel then sends it for every listing.
	Readdirplus bool
	// KillPriv (FUSE_HANDLE_KILLPRIV_V2) makes the filesystem, not the
	// kernel, clear a file's setuid and setgid bits where a write, a
	// truncation, an open with O_TRUNC or a chown must: the kernel marks
	// the WRITEs, truncating SETATTRs and OPENs of callers without
	// CAP_FSETID (fuse.WriteKillSUIDGID, fuse.SetattrKillSUIDGID,
	// fuse.OpenKillSUIDGID) and sends no mode change of its own, and
	// clears nothing on a chown (a SETATTR of owners, or of nothing at
	// all for chown(-1, -1)). In exchange it stops asking for
	// security.capability (a GETXATTR) before every write to a file: only
	// before the first one to each file it holds.
	KillPriv bool
}

// Conn is a mounted FUSE connection: requests in (ReadRequest), answers
// out (Reply, ReplyError), cache invalidations out. Its methods are safe
// for concurrent use; each request is answered at most once.
type Conn struct {
	dev      *os.File        // the FUSE device; closed by Close
	raw      syscall.RawConn // dev's descriptor, for withFD
	flags    uint32          // the INIT flags negotiated
	maxWrite uint32          // the largest WRITE the kernel sends
	bufs     sync.Pool

	mu   sync.Mutex                 // protects held
	held map[fuse.RequestID]*[]byte // the buffers of WRITEs not yet answered (their Data)
}

// Mount mounts a filesystem on dir and negotiates the connection. The
// caller serves its requests until ReadRequest returns io.EOF (it was
// unmounted), and then calls Close.
func Mount(dir string, cfg Config) (*Conn, error) {
	dev, err := mountDevice(dir, cfg.MountOptions)
	if err != nil {
		return nil, err
	}
	c := newConn(dev)
	if err := c.init(cfg); err != nil {
		dev.Close()
		// The mount exists even though nobody serves it: detach it
		// (umount2 needs root; fusermount3 does it for the user who
		// mounted).
		if unix.Unmount(dir, unix.MNT_DETACH) != nil {
			_ = exec.Command("fusermount3", "-u", "-z", "--", dir).Run()
		}
		return nil, err
	}
	return c, nil
}

func newConn(dev *os.File) *Conn {
	// Fd puts dev in blocking mode: a read(2) waits for the next request.
	// SyscallConn fails only for a nil File.
	dev.Fd()
	raw, _ := dev.SyscallConn()
	c := &Conn{dev: dev, raw: raw, maxWrite: maxWriteDefault, held: map[fuse.RequestID]*[]byte{}}
	c.bufs.New = func() any {
		b := make([]byte, int(c.maxWrite)+bufferOverhead)
		return &b
	}
	return c
}

// getBuf returns a buffer for one request, of the size negotiated.
func (c *Conn) getBuf() *[]byte {
	bp := c.bufs.Get().(*[]byte)
	if need := int(c.maxWrite) + bufferOverhead; len(*bp) < need {
		*bp = make([]byte, need) // made before INIT raised the size
	}
	return bp
}

// init reads the kernel's INIT and answers it with what cfg asks for and
// the kernel offers.
func (c *Conn) init(cfg Config) error {
	bp := c.getBuf()
	defer c.bufs.Put(bp)
	n, err := c.read(*bp)
	if err != nil {
		if err == io.EOF {
			return errors.New("fusedev: connection closed before INIT")
		}
		return err
	}
	msg := (*bp)[:n]
	h := header(msg)
	if h.opcode != opInit || len(msg) < inHeaderSize+initInSize {
		return fmt.Errorf("fusedev: the kernel's first request is opcode %d, not INIT", h.opcode)
	}
	in := msg[inHeaderSize:]
	major, minor := ne.Uint32(in[0:]), ne.Uint32(in[4:])
	readahead, offered := ne.Uint32(in[8:]), ne.Uint32(in[12:])
	if major != protoMajor || minor < protoMinMinor {
		c.replyRaw(h.unique, -int32(syscall.EPROTO), nil)
		return fmt.Errorf("fusedev: kernel FUSE protocol %d.%d is older than %d.%d", major, minor, protoMajor, protoMinMinor)
	}
	// Not FUSE_ASYNC_DIO: the WRITEs (and READs) one O_DIRECT call is
	// cut into would then come at once, and out of order, where a Store
	// takes them one after the other (remote's appends an O_APPEND
	// handle's at its own size).
	want := uint32(initBigWrites | initParallelDirops | initSetxattrExt | initMaxPages)
	if cfg.AsyncRead {
		want |= initAsyncRead
	}
	if cfg.Readdirplus {
		want |= initDoReaddirplus
	}
	if cfg.AtomicTrunc {
		want |= initAtomicOTrunc
	}
	if cfg.KillPriv {
		want |= initKillprivV2
	}
	c.flags = offered & want
	maxWrite := min(max(cfg.MaxWrite, maxWriteDefault), maxKernelPages*pageSize) &^ (pageSize - 1)
	var maxPages uint16
	if maxWrite > maxWriteDefault && c.flags&initMaxPages != 0 {
		maxPages = uint16(maxWrite / pageSize)
	} else {
		maxWrite = maxWriteDefault
		c.flags &^= initMaxPages
	}
	if cfg.MaxReadahead != 0 {
		readahead = min(readahead, cfg.MaxReadahead)
	}
	out := make([]byte, initOutSize)
	ne.PutUint32(out[0:], protoMajor)
	ne.PutUint32(out[4:], min(minor, protoMinor))
	ne.PutUint32(out[8:], readahead)
	ne.PutUint32(out[12:], c.flags)
	ne.PutUint32(out[20:], maxWrite)
	ne.PutUint16(out[28:], maxPages)
	if err := c.replyRaw(h.unique, 0, out); err != nil {
		return err
	}
	// Only now: the buffer INIT was read into is of the old size.
	c.maxWrite = maxWrite
	return nil
}

// KillPriv reports whether the kernel took Config.KillPriv: the
// filesystem then clears setuid and setgid bits itself (see there).
func (c *Conn) KillPriv() bool { return c.flags&initKillprivV2 != 0 }

// Close closes the device. Requests read before and not yet answered can
// no longer be; reads, answers and notifications after it fail with
// os.ErrClosed.
func (c *Conn) Close() error { return c.dev.Close() }

// withFD runs f on the device's descriptor. Close does not release the
// descriptor while f runs (the os.File counts it in use), and after Close
// withFD returns os.ErrClosed without running f: by then the number may
// name another file of the process.
func (c *Conn) withFD(f func(fd int)) error {
	if err := c.raw.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		return os.ErrClosed
	}
	return nil
}

// read reads one request into buf, retrying what the kernel asks to be
// retried; io.EOF once the filesystem is unmounted.
func (c *Conn) read(buf []byte) (int, error) {
	for {
		var n int
		var err error
		if cerr := c.withFD(func(fd int) { n, err = unix.Read(fd, buf) }); cerr != nil {
			return 0, cerr
		}
		switch err {
		case nil:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case unix.EINTR, unix.EAGAIN, unix.ENOENT:
			// ENOENT: the request was interrupted before it could
			// be read.
			continue
		case unix.ENODEV:
			return 0, io.EOF
		}
		return 0, err
	}
}

// ReadRequest returns the next request: one of bazil's request types
// (fuse.LookupRequest...), a *ReaddirplusRequest, a *BadRequest (a message
// this package cannot decode: answer it ReplyError), or for an opcode it
// does not know a *fuse.UnrecognizedRequest. It returns io.EOF once the
// filesystem is unmounted.
func (c *Conn) ReadRequest() (fuse.Request, error) {
	bp := c.getBuf()
	n, err := c.read(*bp)
	if err != nil {
		c.bufs.Put(bp)
		return nil, err
	}
	msg := (*bp)[:n]
	if n < inHeaderSize {
		c.bufs.Put(bp)
		return nil, fmt.Errorf("fusedev: a request of %d bytes, shorter than its header", n)
	}
	h := header(msg)
	if int(h.length) != n {
		c.bufs.Put(bp)
		return nil, fmt.Errorf("fusedev: read %d bytes of a request (opcode %d) that says %d", n, h.opcode, h.length)
	}
	req := c.decode(h, msg[inHeaderSize:])
	if w, ok := req.(*fuse.WriteRequest); ok {
		// Its Data is in the buffer: kept until it is answered.
		c.mu.Lock()
		c.held[w.ID] = bp
		c.mu.Unlock()
	} else {
		c.bufs.Put(bp)
	}
	return req, nil
}

// release gives back the buffer request id's data lies in, if it has one.
func (c *Conn) release(id fuse.RequestID) {
	c.mu.Lock()
	bp, ok := c.held[id]
	delete(c.held, id)
	c.mu.Unlock()
	if ok {
		c.bufs.Put(bp)
	}
}

// ReplyError answers req with errno.
func (c *Conn) ReplyError(req fuse.Request, errno fuse.Errno) error {
	id := req.Hdr().ID
	defer c.release(id)
	return c.replyRaw(uint64(id), -int32(errno), nil)
}

// Reply answers req with resp, encoded as req's kind of request takes it:
//   - nil for the requests answered with nothing (REMOVE, RENAME, FLUSH...);
//   - *fuse.LookupResponse (LOOKUP, MKNOD, LINK), *fuse.MkdirResponse,
//     *fuse.SymlinkResponse, *fuse.CreateResponse, *fuse.OpenResponse,
//     *fuse.GetattrResponse, *fuse.SetattrResponse, *fuse.WriteResponse,
//     *fuse.StatfsResponse;
//   - *fuse.GetxattrResponse, *fuse.ListxattrResponse: the size alone
//     when the request's Size is 0, the data otherwise;
//   - *fuse.ReadResponse, []byte (READ, READDIR, READDIRPLUS) or string
//     (READLINK): the bytes as they are.
//
// Any other resp is an error, and req is answered EIO.
//
// FORGET, BATCH_FORGET, NOTIFY_REPLY and INTERRUPT take no answer but an
// error: Reply sends nothing for them.
func (c *Conn) Reply(req fuse.Request, resp any) error {
	id := req.Hdr().ID
	defer c.release(id)
	switch req.(type) {
	case *fuse.ForgetRequest, *fuse.BatchForgetRequest, *fuse.NotifyReply, *fuse.InterruptRequest:
		return nil // the kernel waits for no answer (an INTERRUPT's is an error only)
	}
	var out []byte
	switch r := resp.(type) {
	case nil:
	case *fuse.LookupResponse:
		out = appendEntry(nil, r)
	case *fuse.MkdirResponse:
		out = appendEntry(nil, &r.LookupResponse)
	case *fuse.SymlinkResponse:
		out = appendEntry(nil, &r.LookupResponse)
	case *fuse.CreateResponse:
		out = appendOpen(appendEntry(make([]byte, 0, entryOutSize+openOutSize), &r.LookupResponse), &r.OpenResponse)
	case *fuse.OpenResponse:
		out = appendOpen(nil, r)
	case *fuse.GetattrResponse:
		out = appendAttrOut(nil, &r.Attr)
	case *fuse.SetattrResponse:
		out = appendAttrOut(nil, &r.Attr)
	case *fuse.WriteResponse:
		out = make([]byte, writeOutSize)
		ne.PutUint32(out, uint32(r.Size))
	case *fuse.StatfsResponse:
		out = appendStatfs(nil, r)
	case *fuse.GetxattrResponse:
		out = xattrReply(req, r.Xattr)
	case *fuse.ListxattrResponse:
		out = xattrReply(req, r.Xattr)
	case *fuse.ReadResponse:
		out = r.Data
	case []byte:
		out = r
	case string:
		out = []byte(r)
	default:
		// A bug of the caller; the request is answered all the same,
		// or its caller would wait for ever.
		err := fmt.Errorf("fusedev: no encoding of %T (answering %v)", resp, req)
		if werr := c.replyRaw(uint64(id), -int32(syscall.EIO), nil); werr != nil {
			return errors.Join(err, werr)
		}
		return err
	}
	return c.replyRaw(uint64(id), 0, out)
}

// xattrReply is the answer to a GETXATTR or LISTXATTR with value v: its
// size alone if the caller asked for the size (Size 0).
func xattrReply(req fuse.Request, v []byte) []byte {
	var size uint32
	switch r := req.(type) {
	case *fuse.GetxattrRequest:
		size = r.Size
	case *fuse.ListxattrRequest:
		size = r.Size
	}
	if size != 0 {
		return v
	}
	out := make([]byte, getxattrOutSize)
	ne.PutUint32(out, uint32(len(v)))
	return out
}

// replyRaw writes an answer to request unique: errno (negative) or 0 and
// the payload.
func (c *Conn) replyRaw(unique uint64, errno int32, payload []byte) error {
	err := c.send(unique, errno, payload)
	if err == unix.ENOENT {
		return nil // the request was interrupted and is gone
	}
	return err
}

// send writes one message: header (its length, the error field and
// unique), then payload, in one writev(2).
func (c *Conn) send(unique uint64, errField int32, payload []byte) error {
	var hdr [outHeaderSize]byte
	ne.PutUint32(hdr[0:], uint32(outHeaderSize+len(payload)))
	ne.PutUint32(hdr[4:], uint32(errField))
	ne.PutUint64(hdr[8:], unique)
	iov := [][]byte{hdr[:]}
	if len(payload) > 0 {
		iov = append(iov, payload)
	}
	for {
		var err error
		if cerr := c.withFD(func(fd int) { _, err = unix.Writev(fd, iov) }); cerr != nil {
			return cerr
		}
		if err != unix.EINTR {
			return err
		}
	}
}

// InvalidateNode drops the kernel's cached attributes of node and its
// cached data from off for size bytes (size -1: to the end; off -1: no
// data, attributes only). fuse.ErrNotCached: the kernel holds no such
// node.
func (c *Conn) InvalidateNode(node fuse.NodeID, off, size int64) error {
	b := make([]byte, invalInodeSize)
	ne.PutUint64(b[0:], uint64(node))
	ne.PutUint64(b[8:], uint64(off))
	ne.PutUint64(b[16:], uint64(size))
	return c.notify(notifyInvalInode, b)
}

// InvalidateEntry drops the kernel's cached lookup of name in parent.
// fuse.ErrNotCached: the kernel holds no such entry.
func (c *Conn) InvalidateEntry(parent fuse.NodeID, name string) error {
	return c.invalEntry(parent, name, 0)
}

// ExpireEntry has the kernel look name up in parent again at its next
// use, keeping its entry meanwhile (FUSE_EXPIRE_ONLY, Linux 6.2): a
// directory that is a process's working directory stays it if the
// lookup finds the same node. Kernels before 6.2 drop the entry, as
// InvalidateEntry does.
func (c *Conn) ExpireEntry(parent fuse.NodeID, name string) error {
	return c.invalEntry(parent, name, expireOnly)
}

// invalEntry writes FUSE_NOTIFY_INVAL_ENTRY with flags.
func (c *Conn) invalEntry(parent fuse.NodeID, name string, flags uint32) error {
	if len(name) > maxNameLen {
		return fuse.ErrNotCached // the kernel cannot hold it either
	}
	b := make([]byte, invalEntrySize, invalEntrySize+len(name)+1)
	ne.PutUint64(b[0:], uint64(parent))
	ne.PutUint32(b[8:], uint32(len(name)))
	ne.PutUint32(b[12:], flags)
	b = append(b, name...)
	b = append(b, 0)
	return c.notify(notifyInvalEntry, b)
}

// notify writes a notification: a message with no request (unique 0)
// whose error field is its code.
func (c *Conn) notify(code int32, payload []byte) error {
	err := c.send(0, code, payload)
	if err == unix.ENOENT {
		return fuse.ErrNotCached
	}
	return err
}
