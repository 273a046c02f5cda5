package fuseserve

import (
	"context"
	"io/fs"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// The requests that find, make, name or unname an entry of directory sn.

func (s *Server) lookup(ctx context.Context, sn servedNode, r *fuse.LookupRequest) (*fuse.LookupResponse, error) {
	resp := &fuse.LookupResponse{EntryValid: defaultEntryValid}
	var (
		n   bfs.Node
		err error
	)
	switch l := sn.node.(type) {
	case bfs.NodeRequestLookuper:
		n, err = l.Lookup(ctx, r, resp)
	case bfs.NodeStringLookuper:
		n, err = l.Lookup(ctx, r.Name)
	default:
		return nil, fs.ErrNotExist // nothing is in what is no directory
	}
	if err != nil {
		return nil, err
	}
	if err := s.saveLookup(ctx, resp, sn, r.Name, n); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) create(ctx context.Context, sn servedNode, r *fuse.CreateRequest) (*fuse.CreateResponse, error) {
	c, ok := sn.node.(bfs.NodeCreater)
	if !ok {
		return nil, &UnsupportedError{Op: "create"}
	}
	resp := &fuse.CreateResponse{LookupResponse: fuse.LookupResponse{EntryValid: defaultEntryValid}}
	n, h, err := c.Create(ctx, r, resp)
	if err != nil {
		return nil, err
	}
	if err := s.saveLookup(ctx, &resp.LookupResponse, sn, r.Name, n); err != nil {
		if rel, ok := h.(bfs.HandleReleaser); ok {
			rel.Release(ctx, &fuse.ReleaseRequest{Header: r.Header, Flags: r.Flags})
		}
		return nil, err
	}
	resp.Handle = s.handles.add(h)
	return resp, nil
}

func (s *Server) mkdir(ctx context.Context, sn servedNode, r *fuse.MkdirRequest) (*fuse.MkdirResponse, error) {
	m, ok := sn.node.(bfs.NodeMkdirer)
	if !ok {
		return nil, &UnsupportedError{Op: "mkdir"}
	}
	n, err := m.Mkdir(ctx, r)
	if err != nil {
		return nil, err
	}
	resp := &fuse.MkdirResponse{LookupResponse: fuse.LookupResponse{EntryValid: defaultEntryValid}}
	if err := s.saveLookup(ctx, &resp.LookupResponse, sn, r.Name, n); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) symlink(ctx context.Context, sn servedNode, r *fuse.SymlinkRequest) (*fuse.SymlinkResponse, error) {
	m, ok := sn.node.(bfs.NodeSymlinker)
	if !ok {
		return nil, &UnsupportedError{Op: "symlink"}
	}
	n, err := m.Symlink(ctx, r)
	if err != nil {
		return nil, err
	}
	resp := &fuse.SymlinkResponse{LookupResponse: fuse.LookupResponse{EntryValid: defaultEntryValid}}
	if err := s.saveLookup(ctx, &resp.LookupResponse, sn, r.NewName, n); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) mknod(ctx context.Context, sn servedNode, r *fuse.MknodRequest) (*fuse.LookupResponse, error) {
	m, ok := sn.node.(bfs.NodeMknoder)
	if !ok {
		return nil, &UnsupportedError{Op: "mknod"}
	}
	n, err := m.Mknod(ctx, r)
	if err != nil {
		return nil, err
	}
	resp := &fuse.LookupResponse{EntryValid: defaultEntryValid}
	if err := s.saveLookup(ctx, resp, sn, r.Name, n); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) link(ctx context.Context, sn servedNode, r *fuse.LinkRequest) (*fuse.LookupResponse, error) {
	l, ok := sn.node.(bfs.NodeLinker)
	if !ok {
		return nil, &UnsupportedError{Op: "link"}
	}
	old, ok := s.nodes.get(r.OldNode)
	if !ok {
		return nil, ErrStale
	}
	n, err := l.Link(ctx, r, old.node)
	if err != nil {
		return nil, err
	}
	resp := &fuse.LookupResponse{EntryValid: defaultEntryValid}
	if err := s.saveLookup(ctx, resp, sn, r.NewName, n); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) readlink(ctx context.Context, sn servedNode, r *fuse.ReadlinkRequest) (string, error) {
	l, ok := sn.node.(bfs.NodeReadlinker)
	if !ok {
		return "", &UnsupportedError{Op: "readlink"}
	}
	return l.Readlink(ctx, r)
}

func (s *Server) remove(ctx context.Context, sn servedNode, r *fuse.RemoveRequest) error {
	m, ok := sn.node.(bfs.NodeRemover)
	if !ok {
		return &UnsupportedError{Op: "remove"}
	}
	return m.Remove(ctx, r)
}

func (s *Server) rename(ctx context.Context, sn servedNode, r *fuse.RenameRequest) error {
	m, ok := sn.node.(bfs.NodeRenamer)
	if !ok {
		return &UnsupportedError{Op: "rename"}
	}
	newDir, ok := s.nodes.get(r.NewDir)
	if !ok {
		return ErrStale
	}
	return m.Rename(ctx, r, newDir.node)
}
