package fusefs

import (
	"context"
	"os"
	"syscall"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

var (
	_ bfs.Node          = (*file)(nil)
	_ bfs.NodeGetattrer = (*file)(nil)
	_ bfs.NodeSetattrer = (*file)(nil)
	_ bfs.NodeForgetter = (*file)(nil)
	_ bfs.NodeOpener    = (*file)(nil)
	_ bfs.NodeFsyncer   = (*file)(nil)
)

// file is a regular file inside a peer's export. Reading and writing
// happen on its handles.
type file struct {
	*node
}

// openFlags translates the kernel's open flags to the os.O_* bits the
// Store takes.
func openFlags(fl fuse.OpenFlags) int {
	var flags int
	switch {
	case fl.IsWriteOnly():
		flags = os.O_WRONLY
	case fl.IsReadWrite():
		flags = os.O_RDWR
	default:
		flags = os.O_RDONLY
	}
	for _, m := range []struct {
		fuse fuse.OpenFlags
		os   int
	}{
		{fuse.OpenAppend, os.O_APPEND},
		{fuse.OpenCreate, os.O_CREATE},
		{fuse.OpenExclusive, os.O_EXCL},
		{fuse.OpenTruncate, os.O_TRUNC},
	} {
		if fl&m.fuse != 0 {
			flags |= m.os
		}
	}
	return flags
}

// writable reports whether flags open for writing.
func writable(flags int) bool {
	return flags&(os.O_WRONLY|os.O_RDWR) != 0
}

// Open implements bfs.NodeOpener. The response asks for no kernel
// flags: without OpenKeepCache the kernel drops the file's cached pages
// on every open, so a reader sees what the Store has now.
func (fl *file) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (bfs.Handle, error) {
	f := fl.fsys
	path := fl.key().path
	flags := openFlags(req.Flags)
	if writable(flags) && f.readOnly {
		return nil, f.done("open", fl.peer, path, syscall.EROFS)
	}
	if flags&os.O_TRUNC != 0 && req.OpenFlags&fuse.OpenKillSUIDGID != 0 && f.killPriv {
		// The bits go before the truncation (Store.Open truncates), as
		// the kernel clears them before a write: an upload that keeps
		// them never carries the truncated content (the Store's Chmod
		// waits for one under way).
		if err := fl.killOnWrite(ctx, req.Header); err != nil {
			return nil, f.done("open", fl.peer, path, err)
		}
	}
	fh, info, err := f.store.Open(ctx, fl.peer, path, flags, 0)
	if err != nil {
		return nil, f.done("open", fl.peer, path, err)
	}
	if info != nil {
		fl.mu.Lock()
		fl.last = info
		fl.mu.Unlock()
	}
	if flags&os.O_TRUNC != 0 {
		fl.changed()
	}
	return fl.newHandle(fh, flags, false), f.done("open", fl.peer, path, nil)
}

// killOnWrite clears the file's setuid and setgid bits before a write
// or an open with O_TRUNC by a caller without CAP_FSETID
// (node.killSuidgid), and has the kernel drop the mode it holds: the
// request that cleared them brings it no attributes. A file whose name
// is gone keeps its bits (no name to change them through).
func (fl *file) killOnWrite(ctx context.Context, hdr fuse.Header) error {
	fl.mu.Lock()
	path, removed := fl.path, fl.removed
	fl.mu.Unlock()
	if removed {
		return nil
	}
	last, err := fl.lastInfo(ctx)
	if err != nil {
		return err
	}
	info, err := fl.killSuidgid(ctx, path, last, hdr, fl.fsys.groupOf(last), false)
	if err != nil || info == nil {
		return err
	}
	fl.prime(info)
	fl.fsys.names.dropListing(fl.key())
	if k := fl.fsys.kernel; k != nil {
		if err := k.InvalidateNodeAttr(fl.self); err != nil {
			fl.fsys.log.Debug().Err(err).Str("peer", fl.peer).Str("path", path).Msg("invalidate the attributes of a file whose setuid bits went")
		}
	}
	return nil
}

// newHandle registers an open Store handle with the file; created says
// the handle created it (its close uploads it, even read-only).
func (fl *file) newHandle(fh uint64, flags int, created bool) *handle {
	h := &handle{file: fl, fh: fh, writable: writable(flags), created: created}
	fl.mu.Lock()
	if fl.handles == nil {
		fl.handles = map[*handle]struct{}{}
	}
	fl.handles[h] = struct{}{}
	fl.mu.Unlock()
	return h
}

// changed notes that the file's content changed through the mount.
func (fl *file) changed() {
	fl.unprime()
	fl.fsys.names.dropListing(fl.key())
}

// Fsync implements bfs.NodeFsyncer. The request server delivers fsync to
// the node, as bazil's interfaces have it, not to the handle the kernel
// named, so every open handle of the file is synced (usually there is
// one).
func (fl *file) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	f := fl.fsys
	fl.mu.Lock()
	fhs := make([]uint64, 0, len(fl.handles))
	for h := range fl.handles {
		fhs = append(fhs, h.fh)
	}
	fl.mu.Unlock()
	var err error
	for _, fh := range fhs {
		if err = f.store.Fsync(uninterruptible(ctx), fh); err != nil {
			break
		}
	}
	if len(fhs) > 0 {
		fl.localStored()
	}
	return f.done("fsync", fl.peer, fl.key().path, err)
}
