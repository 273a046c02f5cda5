package main

// A minimal io_uring (no liburing) and a FUSE-over-io_uring server on it.
//
// Kernel requirements, from fs/fuse/dev_uring.c (Linux 6.14+):
//   - the ring must be set up with IORING_SETUP_SQE128: fuse_uring_cmd
//     returns -EINVAL unless IO_URING_F_SQE128, because struct
//     fuse_uring_cmd_req lives in the SQE's 80-byte command area (offset 48);
//   - /sys/module/fuse/parameters/enable_uring must be Y when INIT is
//     answered (the kernel offers FUSE_OVER_IO_URING, flags2 bit 9, only
//     then, and sets fc->io_uring only if the reply has it), and when the
//     REGISTER commands arrive (-EOPNOTSUPP otherwise, unless fc->io_uring);
//   - REGISTER before INIT is answered gets -EAGAIN (!fc->initialized);
//   - each REGISTER passes sqe->addr = an array of 2 iovecs (sqe->len must
//     be 2): iov[0] >= sizeof(struct fuse_uring_req_header) = 288 bytes,
//     iov[1] >= ring->max_payload_sz = max(8192, max_write,
//     max_pages*PAGE_SIZE);
//   - qid < num_possible_cpus(); requests are queued on the queue of the
//     CPU the calling task runs on, and the ring becomes "ready" (and all
//     requests are routed through it) only once every queue 0..nr-1 has an
//     available entry. Until then new requests block (fuse_block_alloc).
//   - a REGISTER completes only when a request is assigned to the entry:
//     its CQE (res 0) *is* the first request. COMMIT_AND_FETCH answers the
//     request whose unique is commit_id and waits for the next one.
//   - FORGET, BATCH_FORGET and INTERRUPT still come through read(2) on
//     /dev/fuse, and notifications must still be written there.

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	ioringSetupCQSize       = 1 << 3
	ioringSetupCoopTaskrun  = 1 << 8
	ioringSetupTaskrunFlag  = 1 << 9
	ioringSetupSQE128       = 1 << 10
	ioringSetupSingleIssuer = 1 << 12
	ioringSetupDeferTaskrun = 1 << 13

	ioringFeatSingleMmap = 1 << 0
	ioringFeatExtArg     = 1 << 8

	ioringEnterGetevents = 1 << 0
	ioringEnterExtArg    = 1 << 3

	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringOpURingCmd = 46

	sqeSize = 128 // with IORING_SETUP_SQE128
	cqeSize = 16

	fuseURingCmdRegister       = 1
	fuseURingCmdCommitAndFetch = 2

	// struct fuse_uring_req_header: in_out[128], op_in[128],
	// fuse_uring_ent_in_out {flags u64, commit_id u64, payload_sz u32,
	// padding u32, reserved u64}.
	uringHeaderSize   = 288
	uringOffOpIn      = 128
	uringOffEntInOut  = 256
	uringOffCommitID  = uringOffEntInOut + 8
	uringOffPayloadSz = uringOffEntInOut + 16
	uringPayloadSize  = maxWrite // >= max(8192, max_write, 32 pages)
	uringHeaderStride = 512
	sqeOffCmd         = 48 // struct fuse_uring_cmd_req here
	cmdReqOffCommitID = 8
	cmdReqOffQid      = 16
)

// ring is one io_uring instance, used from one OS thread.
type ring struct {
	fd       int
	ringMem  []byte // SQ and CQ rings (one mapping with FEAT_SINGLE_MMAP)
	cqMem    []byte // separate CQ mapping, if any
	sqeMem   []byte
	argMem   []byte // io_uring_getevents_arg and its timespec
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqN      uint32
	sqArray  unsafe.Pointer
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     unsafe.Pointer
	tail     uint32 // our SQ tail, published on flush
	features uint32
}

func u32at(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

func newRing(entries uint32, flags uint32) (*ring, error) {
	var p [120]byte // struct io_uring_params
	ne.PutUint32(p[8:], flags|ioringSetupCQSize)
	ne.PutUint32(p[4:], entries*2) // cq_entries
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p[0])), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup(flags %#x): %w", flags, e)
	}
	r := &ring{fd: int(fd)}
	sqEntries, cqEntries := ne.Uint32(p[0:]), ne.Uint32(p[4:])
	r.features = ne.Uint32(p[20:])
	sq, cq := p[40:80], p[80:120]
	sqSize := ne.Uint32(sq[24:]) + sqEntries*4
	cqSize := ne.Uint32(cq[20:]) + cqEntries*cqeSize
	single := r.features&ioringFeatSingleMmap != 0
	size := sqSize
	if single && cqSize > size {
		size = cqSize
	}
	var err error
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	prot, mflags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.ringMem, err = unix.Mmap(r.fd, ioringOffSQRing, int(size), prot, mflags); err != nil {
		return nil, fmt.Errorf("mmap SQ ring: %w", err)
	}
	cqm := r.ringMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, ioringOffCQRing, int(cqSize), prot, mflags); err != nil {
			return nil, fmt.Errorf("mmap CQ ring: %w", err)
		}
		cqm = r.cqMem
	}
	if r.sqeMem, err = unix.Mmap(r.fd, ioringOffSQEs, int(sqEntries*sqeSize), prot, mflags); err != nil {
		return nil, fmt.Errorf("mmap SQEs: %w", err)
	}
	if r.argMem, err = unix.Mmap(-1, 0, 4096, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("mmap arg: %w", err)
	}
	r.sqHead = u32at(r.ringMem, ne.Uint32(sq[0:]))
	r.sqTail = u32at(r.ringMem, ne.Uint32(sq[4:]))
	r.sqMask = *u32at(r.ringMem, ne.Uint32(sq[8:]))
	r.sqN = *u32at(r.ringMem, ne.Uint32(sq[12:]))
	r.sqArray = unsafe.Pointer(&r.ringMem[ne.Uint32(sq[24:])])
	r.cqHead = u32at(cqm, ne.Uint32(cq[0:]))
	r.cqTail = u32at(cqm, ne.Uint32(cq[4:]))
	r.cqMask = *u32at(cqm, ne.Uint32(cq[8:]))
	r.cqes = unsafe.Pointer(&cqm[ne.Uint32(cq[20:])])
	r.tail = atomic.LoadUint32(r.sqTail)
	if r.features&ioringFeatExtArg == 0 {
		err = fmt.Errorf("kernel lacks IORING_FEAT_EXT_ARG")
		return nil, err
	}
	return r, nil
}

func (r *ring) close() {
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.ringMem, r.argMem} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqMem, r.ringMem, r.argMem = nil, nil, nil, nil
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// getSQE returns the next free SQE, zeroed, or nil if the SQ is full.
func (r *ring) getSQE() []byte {
	if r.tail-atomic.LoadUint32(r.sqHead) >= r.sqN {
		return nil
	}
	idx := r.tail & r.sqMask
	sqe := r.sqeMem[idx*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	*(*uint32)(unsafe.Add(r.sqArray, idx*4)) = idx
	r.tail++
	return sqe
}

// pending publishes the SQEs prepared and returns how many the kernel has
// not consumed yet.
func (r *ring) pending() uint32 {
	atomic.StoreUint32(r.sqTail, r.tail) // release: the SQEs are written
	return r.tail - atomic.LoadUint32(r.sqHead)
}

// enter submits what is pending and, if wait, waits up to timeout for at
// least one completion. ETIME and EINTR are not errors.
func (r *ring) enter(wait bool, timeout time.Duration) error {
	toSubmit := r.pending()
	var flags, minComplete uintptr
	var argp, argsz uintptr
	if wait {
		flags = ioringEnterGetevents | ioringEnterExtArg
		minComplete = 1
		// struct io_uring_getevents_arg {u64 sigmask; u32 sigmask_sz;
		// u32 min_wait_usec; u64 ts;} then a __kernel_timespec at 32.
		a := r.argMem
		clear(a[:48])
		ne.PutUint64(a[32:], uint64(timeout/time.Second))
		ne.PutUint64(a[40:], uint64(timeout%time.Second))
		ne.PutUint64(a[16:], uint64(uintptr(unsafe.Pointer(&a[32]))))
		argp, argsz = uintptr(unsafe.Pointer(&a[0])), 24
	}
	if toSubmit == 0 && !wait {
		return nil
	}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), minComplete, flags, argp, argsz)
	switch e {
	case 0, unix.ETIME, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		return nil
	}
	return fmt.Errorf("io_uring_enter: %w", e)
}

// reap calls f for each completion and consumes them.
func (r *ring) reap(f func(userData uint64, res int32)) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail) // acquire: the CQEs are written
	n := 0
	for ; head != tail; head++ {
		c := unsafe.Add(r.cqes, (head&r.cqMask)*cqeSize)
		ud := *(*uint64)(c)
		res := *(*int32)(unsafe.Add(c, 8))
		f(ud, res)
		n++
	}
	atomic.StoreUint32(r.cqHead, head) // release: the slots are free
	return n
}

// ent is one FUSE ring entry: a header buffer and a payload buffer the
// kernel copies requests into and answers out of.
type ent struct {
	qid     uint16
	hdr     []byte
	payload []byte
	iov     unsafe.Pointer // 2 struct iovec, in mmap'd memory
	dead    bool
}

// uringServer serves the FUSE queues qids on one ring, on one locked OS
// thread (pinned to cpu if cpu >= 0).
type uringServer struct {
	devfd    int
	qids     []uint16
	perQueue int
	cpu      int
	flags    uint32
	served   atomic.Int64
	stop     atomic.Bool
	regErr   []string // registrations refused
	done     chan error
}

func (s *uringServer) start(ready chan<- error) {
	s.done = make(chan error, 1)
	go func() {
		// Never unlocked: the thread dies with the goroutine, taking
		// its CPU affinity with it.
		runtime.LockOSThread()
		s.done <- s.run(ready)
	}()
}

func (s *uringServer) run(ready chan<- error) (err error) {
	readySent := false
	defer func() {
		if !readySent {
			ready <- err
		}
	}()
	if s.cpu >= 0 {
		var set unix.CPUSet
		set.Set(s.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", s.cpu, err)
		}
	}
	n := len(s.qids) * s.perQueue
	sqN := uint32(1)
	for sqN < uint32(n) {
		sqN <<= 1
	}
	r, err := newRing(sqN, ioringSetupSQE128|s.flags)
	if err != nil {
		return err
	}
	defer r.close()

	// Buffers: mmap'd, so the Go collector never moves or frees them.
	hdrMem, err := unix.Mmap(-1, 0, n*uringHeaderStride, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(hdrMem)
	payMem, err := unix.Mmap(-1, 0, n*uringPayloadSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(payMem)
	ents := make([]*ent, n)
	for i := range ents {
		h := hdrMem[i*uringHeaderStride : (i+1)*uringHeaderStride]
		e := &ent{
			qid:     s.qids[i/s.perQueue],
			hdr:     h[:uringHeaderSize],
			payload: payMem[i*uringPayloadSize : (i+1)*uringPayloadSize],
			iov:     unsafe.Pointer(&h[uringHeaderSize]), // 32 bytes after the header
		}
		iov := (*[2]unix.Iovec)(e.iov)
		iov[0].Base, iov[0].Len = &e.hdr[0], uringHeaderSize
		iov[1].Base, iov[1].Len = &e.payload[0], uringPayloadSize
		ents[i] = e
	}
	prep := func(i int, cmd uint32, commitID uint64) {
		e := ents[i]
		sqe := r.getSQE()
		if sqe == nil {
			panic("SQ full") // cannot happen: one SQE per entry at most
		}
		sqe[0] = ioringOpURingCmd
		ne.PutUint32(sqe[4:], uint32(s.devfd))
		ne.PutUint32(sqe[8:], cmd) // cmd_op
		if cmd == fuseURingCmdRegister {
			ne.PutUint64(sqe[16:], uint64(uintptr(e.iov))) // addr
			ne.PutUint32(sqe[24:], 2)                      // len: iovecs
		}
		ne.PutUint64(sqe[32:], uint64(i)) // user_data
		c := sqe[sqeOffCmd:]
		ne.PutUint64(c[cmdReqOffCommitID:], commitID)
		ne.PutUint16(c[cmdReqOffQid:], e.qid)
	}
	for i := range ents {
		prep(i, fuseURingCmdRegister, 0)
	}
	if err := r.enter(false, 0); err != nil {
		return err
	}
	if left := r.pending(); left != 0 {
		return fmt.Errorf("kernel consumed %d of %d REGISTER SQEs", uint32(n)-left, n)
	}
	alive := n
	// A refused REGISTER completes at once, with the error; an accepted
	// one completes only with the first request it carries.
	var early [][2]int64
	r.reap(func(ud uint64, res int32) { early = append(early, [2]int64{int64(ud), int64(res)}) })

	handleCQE := func(ud uint64, res int32) {
		e := ents[ud]
		if res < 0 {
			switch unix.Errno(-res) {
			case unix.EAGAIN, unix.EINTR:
				prep(int(ud), fuseURingCmdRegister, 0) // retried as is
				return
			case unix.ENOTCONN, unix.ECANCELED, unix.ECONNABORTED:
			default:
				s.regErr = append(s.regErr, fmt.Sprintf("entry %d qid %d: %v", ud, e.qid, unix.Errno(-res)))
			}
			e.dead = true
			alive--
			return
		}
		h := e.hdr
		opcode := ne.Uint32(h[4:])
		unique := ne.Uint64(h[8:])
		nodeid := ne.Uint64(h[16:])
		commitID := ne.Uint64(h[uringOffCommitID:])
		errno, out, _ := handle(opcode, nodeid)
		s.served.Add(1)
		ne.PutUint32(h[0:], uint32(outHeaderSize+len(out)))
		ne.PutUint32(h[4:], uint32(errno))
		ne.PutUint64(h[8:], unique)
		copy(e.payload, out)
		ne.PutUint32(h[uringOffPayloadSz:], uint32(len(out)))
		prep(int(ud), fuseURingCmdCommitAndFetch, commitID)
	}
	for _, c := range early {
		handleCQE(uint64(c[0]), int32(c[1]))
	}
	if alive < n {
		err := fmt.Errorf("REGISTER refused: %v", s.regErr)
		ready <- err
		readySent = true
		return err
	}
	ready <- nil
	readySent = true

	var stopAt time.Time
	for alive > 0 {
		if err := r.enter(true, 200*time.Millisecond); err != nil {
			return err
		}
		r.reap(handleCQE)
		if s.stop.Load() {
			if stopAt.IsZero() {
				stopAt = time.Now()
			} else if time.Since(stopAt) > 5*time.Second {
				return fmt.Errorf("%d entries still held by the kernel 5s after unmount", alive)
			}
		}
	}
	return nil
}
