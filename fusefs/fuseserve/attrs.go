package fuseserve

import (
	"context"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// The requests about node sn itself: attributes, access, extended
// attributes, fsync and statfs.

// NodeStatfser is a node that answers statfs for itself (a peer's folder
// reports that peer's space). A STATFS about any other node goes to the
// FS, if it is a bfs.FSStatfser.
type NodeStatfser interface {
	Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error
}

func (s *Server) getattr(ctx context.Context, sn servedNode, r *fuse.GetattrRequest) (*fuse.GetattrResponse, error) {
	resp := &fuse.GetattrResponse{}
	var err error
	if g, ok := sn.node.(bfs.NodeGetattrer); ok {
		err = g.Getattr(ctx, r, resp)
	} else {
		err = s.attr(ctx, sn, &resp.Attr)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) setattr(ctx context.Context, sn servedNode, r *fuse.SetattrRequest) (*fuse.SetattrResponse, error) {
	resp := &fuse.SetattrResponse{}
	if n, ok := sn.node.(bfs.NodeSetattrer); ok {
		if err := n.Setattr(ctx, r, resp); err != nil {
			return nil, err
		}
	}
	// The attributes after the change, whatever Setattr filled in.
	if err := s.attr(ctx, sn, &resp.Attr); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) access(ctx context.Context, sn servedNode, r *fuse.AccessRequest) error {
	if a, ok := sn.node.(bfs.NodeAccesser); ok {
		return a.Access(ctx, r)
	}
	return nil
}

func (s *Server) fsync(ctx context.Context, sn servedNode, r *fuse.FsyncRequest) error {
	m, ok := sn.node.(bfs.NodeFsyncer)
	if !ok {
		return &UnsupportedError{Op: opName(r)}
	}
	return m.Fsync(ctx, r)
}

func (s *Server) getxattr(ctx context.Context, sn servedNode, r *fuse.GetxattrRequest) (*fuse.GetxattrResponse, error) {
	g, ok := sn.node.(bfs.NodeGetxattrer)
	if !ok {
		return nil, &UnsupportedError{Op: "getxattr"}
	}
	resp := &fuse.GetxattrResponse{}
	if err := g.Getxattr(ctx, r, resp); err != nil {
		return nil, err
	}
	if r.Size != 0 && uint64(len(resp.Xattr)) > uint64(r.Size) {
		return nil, ErrXattrTooLarge
	}
	return resp, nil
}

func (s *Server) listxattr(ctx context.Context, sn servedNode, r *fuse.ListxattrRequest) (*fuse.ListxattrResponse, error) {
	l, ok := sn.node.(bfs.NodeListxattrer)
	if !ok {
		return nil, &UnsupportedError{Op: "listxattr"}
	}
	resp := &fuse.ListxattrResponse{}
	if err := l.Listxattr(ctx, r, resp); err != nil {
		return nil, err
	}
	if r.Size != 0 && uint64(len(resp.Xattr)) > uint64(r.Size) {
		return nil, ErrXattrTooLarge
	}
	return resp, nil
}

func (s *Server) setxattr(ctx context.Context, sn servedNode, r *fuse.SetxattrRequest) error {
	x, ok := sn.node.(bfs.NodeSetxattrer)
	if !ok {
		return &UnsupportedError{Op: "setxattr"}
	}
	return x.Setxattr(ctx, r)
}

func (s *Server) removexattr(ctx context.Context, sn servedNode, r *fuse.RemovexattrRequest) error {
	x, ok := sn.node.(bfs.NodeRemovexattrer)
	if !ok {
		return &UnsupportedError{Op: "removexattr"}
	}
	return x.Removexattr(ctx, r)
}

func (s *Server) statfs(ctx context.Context, sn servedNode, r *fuse.StatfsRequest) (*fuse.StatfsResponse, error) {
	resp := &fuse.StatfsResponse{}
	var err error
	if st, ok := sn.node.(NodeStatfser); ok {
		err = st.Statfs(ctx, r, resp)
	} else if st, ok := s.fs.(bfs.FSStatfser); ok {
		err = st.Statfs(ctx, r, resp)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}
