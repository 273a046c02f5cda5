package fuseserve

import (
	"errors"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// The invalidations drop what the kernel caches about a node, and need
// the node's NodeID. What the kernel does not hold (the node is unknown
// to the server, or to the kernel: fuse.ErrNotCached) there is nothing to
// drop: that is no error.

// InvalidateNodeData drops the kernel's cached attributes and data of n.
func (s *Server) InvalidateNodeData(n bfs.Node) error {
	id, ok := s.nodes.id(n)
	if !ok {
		return nil
	}
	return notCached(s.conn.InvalidateNode(id, 0, -1))
}

// InvalidateNodeAttr drops the kernel's cached attributes of n, and
// nothing of its data (a negative offset: the kernel then invalidates no
// pages, and waits on none, so that a request in progress may call it).
func (s *Server) InvalidateNodeAttr(n bfs.Node) error {
	id, ok := s.nodes.id(n)
	if !ok {
		return nil
	}
	return notCached(s.conn.InvalidateNode(id, -1, 0))
}

// InvalidateEntry drops the kernel's cached lookup of name in parent.
func (s *Server) InvalidateEntry(parent bfs.Node, name string) error {
	id, ok := s.nodes.id(parent)
	if !ok {
		return nil
	}
	return notCached(s.conn.InvalidateEntry(id, name))
}

// ExpireEntry has the kernel look name up in parent again at its next
// use, keeping its entry meanwhile (fusedev.Conn.ExpireEntry).
func (s *Server) ExpireEntry(parent bfs.Node, name string) error {
	id, ok := s.nodes.id(parent)
	if !ok {
		return nil
	}
	return notCached(s.conn.ExpireEntry(id, name))
}

// notCached is err, or nil if it says the kernel held nothing to drop.
func notCached(err error) error {
	if errors.Is(err, fuse.ErrNotCached) {
		return nil
	}
	return err
}
