package fuseserve

import (
	"context"
	"fmt"
	"runtime/debug"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fusedev"
)

// dispatch calls the node or handle method for req and returns the
// response to send (of the type respond expects; nil where there is
// none) or the error to answer instead. It sends nothing itself. A panic
// in a method is logged and answered ErrPanic, as fs.Server answers EIO,
// instead of stopping the mount.
func (s *Server) dispatch(ctx context.Context, req fuse.Request) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error().Str("request", fmt.Sprint(req)).Msgf("panic answering a FUSE request: %v\n%s", v, debug.Stack())
			resp, err = nil, fmt.Errorf("%w: %v", ErrPanic, v)
		}
	}()
	hdr := req.Hdr()
	// Not about a node the server must know (and a FORGET takes no error).
	switch r := req.(type) {
	case *fuse.ForgetRequest:
		s.nodes.forget(hdr.Node, r.N)
		return nil, nil
	case *fuse.BatchForgetRequest:
		for _, item := range r.Forget {
			s.nodes.forget(item.NodeID, item.N)
		}
		return nil, nil
	case *fuse.InterruptRequest:
		if !s.inflight.interrupt(r.IntrID) {
			return nil, ErrNotInFlight
		}
		return nil, nil
	}
	sn, known := s.nodes.get(hdr.Node)
	if hdr.Node != 0 && !known {
		return nil, ErrStale
	}
	return s.dispatchNode(ctx, sn, req)
}

// dispatchNode is dispatch for the requests about node sn (the zero
// servedNode for a request that names none, as DESTROY).
func (s *Server) dispatchNode(ctx context.Context, sn servedNode, req fuse.Request) (any, error) {
	switch r := req.(type) {
	case *fuse.LookupRequest:
		return answer(s.lookup(ctx, sn, r))
	case *fuse.GetattrRequest:
		return answer(s.getattr(ctx, sn, r))
	case *fuse.SetattrRequest:
		return answer(s.setattr(ctx, sn, r))
	case *fuse.AccessRequest:
		return nil, s.access(ctx, sn, r)
	case *fuse.CreateRequest:
		return answer(s.create(ctx, sn, r))
	case *fuse.MkdirRequest:
		return answer(s.mkdir(ctx, sn, r))
	case *fuse.SymlinkRequest:
		return answer(s.symlink(ctx, sn, r))
	case *fuse.MknodRequest:
		return answer(s.mknod(ctx, sn, r))
	case *fuse.LinkRequest:
		return answer(s.link(ctx, sn, r))
	case *fuse.ReadlinkRequest:
		return answer(s.readlink(ctx, sn, r))
	case *fuse.RemoveRequest:
		return nil, s.remove(ctx, sn, r)
	case *fuse.RenameRequest:
		return nil, s.rename(ctx, sn, r)
	case *fuse.FsyncRequest:
		return nil, s.fsync(ctx, sn, r)
	case *fuse.GetxattrRequest:
		return answer(s.getxattr(ctx, sn, r))
	case *fuse.ListxattrRequest:
		return answer(s.listxattr(ctx, sn, r))
	case *fuse.SetxattrRequest:
		return nil, s.setxattr(ctx, sn, r)
	case *fuse.RemovexattrRequest:
		return nil, s.removexattr(ctx, sn, r)
	case *fuse.StatfsRequest:
		return answer(s.statfs(ctx, sn, r))
	case *fuse.OpenRequest:
		return answer(s.open(ctx, sn, r))
	case *fuse.ReadRequest:
		return answer(s.read(ctx, sn, r))
	case *fusedev.ReaddirplusRequest:
		return answer(s.readDirPlus(ctx, sn, r))
	case *fusedev.BadRequest:
		return nil, fmt.Errorf("%w: %s", ErrMalformed, r.Reason)
	case *fuse.WriteRequest:
		return answer(s.write(ctx, r))
	case *fuse.FlushRequest:
		return nil, s.flush(ctx, r)
	case *fuse.ReleaseRequest:
		return nil, s.release(ctx, r)
	case *fuse.DestroyRequest:
		if d, ok := s.fs.(bfs.FSDestroyer); ok {
			d.Destroy()
		}
		return nil, nil
	}
	// To FUSE, ENOSYS means "never implemented": the kernel stops asking.
	// For POLL that makes it answer "always ready" itself, instead of a
	// round trip for every file a Go program opens (os.Open registers
	// regular files with epoll).
	return nil, ErrNotImplemented
}

// answer returns a method's response as dispatch's, and none (not a
// typed nil) with an error.
func answer[T any](resp T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return resp, nil
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
	case *fusedev.ReaddirplusRequest:
		return "readdirplus"
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
