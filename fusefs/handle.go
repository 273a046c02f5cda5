package fusefs

import (
	"context"
	"errors"
	"io"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
)

var (
	_ bfs.Handle         = (*handle)(nil)
	_ bfs.HandleReader   = (*handle)(nil)
	_ bfs.HandleWriter   = (*handle)(nil)
	_ bfs.HandleFlusher  = (*handle)(nil)
	_ bfs.HandleReleaser = (*handle)(nil)

	_ fuseserve.HandleQuickFlusher = (*handle)(nil)
)

// handle is an open file: a Store handle number. Handles keep no state
// of their own and take no lock, so they never wait for each other.
type handle struct {
	file     *file
	fh       uint64
	writable bool
	created  bool // made by Create: its flush uploads, whatever its mode
}

// uploads reports whether the handle's flush may upload: it writes, or it
// created the file.
func (h *handle) uploads() bool { return h.writable || h.created }

// QuickFlush implements fuseserve.HandleQuickFlusher: a flush that
// uploads nothing is answered from memory.
func (h *handle) QuickFlush() bool { return !h.uploads() }

// Read implements bfs.HandleReader. A short read means end of file.
func (h *handle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	f := h.file.fsys
	buf := resp.Data[:req.Size]
	n, err := f.store.ReadAt(ctx, h.fh, buf, req.Offset)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	resp.Data = buf[:n]
	if err != nil {
		return f.done("read", h.file.peer, h.file.key().path, err)
	}
	return nil // reads are too many to log one by one
}

// Write implements bfs.HandleWriter.
func (h *handle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	f := h.file.fsys
	if req.Flags&fuse.WriteKillSUIDGID != 0 && f.killPriv {
		if err := h.file.killOnWrite(ctx, req.Header); err != nil {
			return f.done("write", h.file.peer, h.file.key().path, err)
		}
	}
	n, err := f.store.WriteAt(ctx, h.fh, req.Data, req.Offset)
	resp.Size = n
	if n > 0 {
		h.file.changed()
	}
	if err != nil {
		return f.done("write", h.file.peer, h.file.key().path, err)
	}
	return nil
}

// Flush implements bfs.HandleFlusher. It runs on every close(2) of a
// descriptor, and the Store commits (uploads) here, so its error is the
// one close() returns; Release's would be dropped by the kernel.
func (h *handle) Flush(ctx context.Context, req *fuse.FlushRequest) error {
	f := h.file.fsys
	err := f.store.Flush(uninterruptible(ctx), h.fh)
	if h.uploads() {
		h.file.localStored()
		h.file.changed()
		f.siblingsChanged(h.file.peer, h.file.peerInode(), h.file.node)
		if h.created {
			// The upload made the entry in its directory on the peer
			// only now: the directory's times changed with it.
			k, _ := h.file.key().parent()
			if d, ok := f.names.lookupSelf(k).(*dir); ok {
				f.dirChanged(d, true)
			}
		}
	}
	return f.done("flush", h.file.peer, h.file.key().path, err)
}

// Release implements bfs.HandleReleaser. The kernel ignores its
// result, so an error is only logged.
func (h *handle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	fl := h.file
	fl.mu.Lock()
	delete(fl.handles, h)
	fl.mu.Unlock()
	if err := fl.fsys.store.Release(h.fh); err != nil {
		fl.fsys.log.Error().Err(err).Str("peer", fl.peer).Str("path", fl.key().path).Msg("release failed")
	}
	fl.fsys.done("release", fl.peer, fl.key().path, nil)
	return nil
}

// uninterruptible detaches a flush or fsync from the kernel's interrupt.
// The kernel interrupts a FUSE request whenever a signal reaches the
// waiting thread — and Go programs get SIGURG (preemption) all the time —
// so honouring it would make close() and fsync() fail with EINTR at
// random, with an upload half done. The Store bounds these operations
// with its own network timeouts and the SYNC lease instead.
func uninterruptible(ctx context.Context) context.Context {
	return context.WithoutCancel(ctx)
}
