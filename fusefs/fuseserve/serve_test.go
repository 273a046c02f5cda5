package fuseserve

import (
	"context"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
)

// chanConn is a Conn fed requests from a channel; the answers go to
// another. A closed requests channel is the unmount.
type chanConn struct {
	requests chan fuse.Request
	answers  chan fuse.RequestID
}

func (c *chanConn) ReadRequest() (fuse.Request, error) {
	req, ok := <-c.requests
	if !ok {
		return nil, io.EOF
	}
	return req, nil
}

func (c *chanConn) Reply(req fuse.Request, resp any) error {
	c.answers <- req.Hdr().ID
	return nil
}

func (c *chanConn) ReplyError(req fuse.Request, errno fuse.Errno) error {
	c.answers <- req.Hdr().ID
	return nil
}

func (c *chanConn) InvalidateNode(fuse.NodeID, int64, int64) error { return nil }
func (c *chanConn) InvalidateEntry(fuse.NodeID, string) error      { return nil }
func (c *chanConn) ExpireEntry(fuse.NodeID, string) error          { return nil }

// waitingRoot is a root whose Fsync waits until release is closed (or
// the request is interrupted).
type waitingRoot struct {
	release chan struct{}
}

var (
	_ bfs.Node        = (*waitingRoot)(nil)
	_ bfs.NodeFsyncer = (*waitingRoot)(nil)
)

func (r *waitingRoot) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = os.ModeDir | 0o755
	return nil
}

func (r *waitingRoot) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	select {
	case <-r.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type waitingFS struct{ root *waitingRoot }

func (f waitingFS) Root() (bfs.Node, error) { return f.root, nil }

// TestWaitingRequestHandsOff: a request that usually waits (an fsync's
// round, an upload), answered on the goroutine that read it, does not
// hold up the next: another goroutine reads and answers it. Then both are
// answered, and Serve returns at the unmount.
func TestWaitingRequestHandsOff(t *testing.T) {
	conn := &chanConn{requests: make(chan fuse.Request, 4), answers: make(chan fuse.RequestID, 4)}
	root := &waitingRoot{release: make(chan struct{})}
	s, err := New(conn, waitingFS{root}, Options{Errno: func(error) fuse.Errno { return fuse.Errno(syscall.EIO) }})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	released, unmounted := false, false
	t.Cleanup(func() { // on failure too: no goroutine left serving
		if !released {
			close(root.release)
		}
		if !unmounted {
			close(conn.requests)
			<-served
		}
	})

	hdr := func(id fuse.RequestID) fuse.Header {
		return fuse.Header{ID: id, Node: rootID, Pid: uint32(os.Getpid())}
	}
	conn.requests <- &fuse.FsyncRequest{Header: hdr(1)}
	conn.requests <- &fuse.GetattrRequest{Header: hdr(2)}
	answer := func(what string) fuse.RequestID {
		t.Helper()
		select {
		case id := <-conn.answers:
			return id
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to %s", what)
			return 0
		}
	}
	if id := answer("the getattr behind a waiting fsync"); id != 2 {
		t.Fatalf("answered request %d first, want the getattr (2): the fsync does not wait", id)
	}
	close(root.release)
	released = true
	if id := answer("the fsync"); id != 1 {
		t.Fatalf("answered request %d, want the fsync (1)", id)
	}
	close(conn.requests)
	unmounted = true
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the unmount")
	}
}
