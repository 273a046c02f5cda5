package fuseserve

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"bazil.org/fuse"
)

// fakeConn records the answers and invalidations sent to the kernel and
// answers them with err. It has no requests to read.
type fakeConn struct {
	sent []string
	err  error
}

func (c *fakeConn) ReadRequest() (fuse.Request, error) {
	return nil, errors.New("fakeConn: no requests")
}

func (c *fakeConn) Reply(req fuse.Request, resp any) error {
	c.sent = append(c.sent, fmt.Sprintf("reply %v", req.Hdr().ID))
	return c.err
}

func (c *fakeConn) ReplyError(req fuse.Request, errno fuse.Errno) error {
	c.sent = append(c.sent, fmt.Sprintf("error %v %d", req.Hdr().ID, errno))
	return c.err
}

func (c *fakeConn) InvalidateNode(node fuse.NodeID, off, size int64) error {
	c.sent = append(c.sent, fmt.Sprintf("node %d %d %d", node, off, size))
	return c.err
}

func (c *fakeConn) InvalidateEntry(parent fuse.NodeID, name string) error {
	c.sent = append(c.sent, fmt.Sprintf("entry %d %s", parent, name))
	return c.err
}

func (c *fakeConn) ExpireEntry(parent fuse.NodeID, name string) error {
	c.sent = append(c.sent, fmt.Sprintf("expire %d %s", parent, name))
	return c.err
}

// Invalidations name nodes by the kernel's NodeID; what the kernel does
// not hold (a node the server does not know, or fuse.ErrNotCached) is no
// error, any other failure is.
func TestInvalidate(t *testing.T) {
	s, _ := newTestServer(t)
	conn := &fakeConn{}
	s.conn = conn
	dir, _ := s.nodes.get(idDir)
	file, _ := s.nodes.get(idFile)
	unknown := &bareNode{name: "unknown"}

	for _, err := range []error{
		s.InvalidateEntry(dir.node, "a"),
		s.ExpireEntry(dir.node, "b"),
		s.InvalidateNodeData(file.node),
		s.InvalidateNodeAttr(dir.node),
		s.InvalidateEntry(unknown, "a"),
		s.ExpireEntry(unknown, "b"),
		s.InvalidateNodeData(unknown),
		s.InvalidateNodeAttr(unknown),
	} {
		if err != nil {
			t.Errorf("invalidation: %v", err)
		}
	}
	want := []string{
		fmt.Sprintf("entry %d a", idDir),
		fmt.Sprintf("expire %d b", idDir),
		fmt.Sprintf("node %d 0 -1", idFile),
		fmt.Sprintf("node %d -1 0", idDir),
	}
	if !slices.Equal(conn.sent, want) {
		t.Errorf("sent %q, want %q", conn.sent, want)
	}

	conn.err = fuse.ErrNotCached
	if err := s.InvalidateEntry(dir.node, "a"); err != nil {
		t.Errorf("InvalidateEntry of what the kernel does not cache: %v", err)
	}
	if err := s.InvalidateNodeAttr(dir.node); err != nil {
		t.Errorf("InvalidateNodeAttr of what the kernel does not cache: %v", err)
	}
	other := errors.New("device gone")
	conn.err = other
	if err := s.InvalidateNodeData(file.node); !errors.Is(err, other) {
		t.Errorf("InvalidateNodeData: %v, want %v", err, other)
	}
	if err := s.InvalidateEntry(dir.node, "a"); !errors.Is(err, other) {
		t.Errorf("InvalidateEntry: %v, want %v", err, other)
	}
}
