package fusedev

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
	"golang.org/x/sys/unix"
)

// Once the Conn is closed, its descriptor number is free for the next
// file the process opens; an invalidation or an answer sent after Close
// (the invalidator of fusefs runs until Unmount, which comes after an
// unmount from outside has closed the Conn) must fail, not be written to
// whatever now has that number.
func TestReviewNothingWrittenAfterClose(t *testing.T) {
	c, _ := pairConn(t, 0)
	old := int(c.dev.Fd())
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Another file takes the number, as the next open(2) would.
	if err := unix.Dup3(p[1], old, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	defer unix.Close(old)

	if err := c.InvalidateEntry(1, "name"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("InvalidateEntry after Close: %v, want os.ErrClosed", err)
	}
	if err := c.InvalidateNode(1, -1, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("InvalidateNode after Close: %v, want os.ErrClosed", err)
	}
	if err := c.ReplyError(&fuse.LookupRequest{Header: fuse.Header{ID: 2}}, fuse.Errno(syscall.ENOENT)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReplyError after Close: %v, want os.ErrClosed", err)
	}
	if _, err := c.ReadRequest(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadRequest after Close: %v, want os.ErrClosed", err)
	}
	buf := make([]byte, 4096)
	if n, err := unix.Read(p[0], buf); n > 0 {
		t.Errorf("%d bytes written after Close to the file that took the descriptor's number", n)
	} else if err != unix.EAGAIN {
		t.Fatalf("read the pipe: %v", err)
	}
}

// A response Reply has no encoding for is a bug of the caller; the
// request must still be answered (EIO), or the process that made it waits
// for ever, unkillably, and so does an unmount. bazil's server answered
// such a request ENOSYS, fuseserve's respond did the same before.
func TestReviewReplyWithoutEncodingAnswers(t *testing.T) {
	c, k := pairConn(t, 0)
	if err := c.Reply(&fuse.LookupRequest{Header: fuse.Header{ID: 6}}, 42); err == nil {
		t.Error("Reply with an int: no error")
	}
	k.recv(6, -int32(syscall.EIO))
}

// INIT does not take FUSE_ASYNC_DIO when the kernel offers it: one
// O_DIRECT call's WRITEs must reach the server one after the other
// (fusefs TestReviewDirectAppendInOrder).
func TestReviewInitNoAsyncDIO(t *testing.T) {
	c, k := pairConn(t, 0)
	k.send(opInit, 1, 0, u32s(7, 33, 1<<20, initAsyncDIO|initBigWrites|initMaxPages))
	if err := c.init(Config{MaxWrite: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if flags := ne.Uint32(k.recv(1, 0)[12:]); flags&initAsyncDIO != 0 {
		t.Errorf("init_out flags %#x take FUSE_ASYNC_DIO", flags)
	}
}

// TestMountFusermountHangs: a fusermount3 that never finishes (its mount
// point on a filesystem that does not answer) fails the mount at
// mountTimeout with an error that says so, instead of hanging it.
func TestMountFusermountHangs(t *testing.T) {
	bin := t.TempDir()
	fake := "#!/bin/sh\nexec sleep 60\n"
	if err := os.WriteFile(filepath.Join(bin, "fusermount3"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	old := mountTimeout
	mountTimeout = 200 * time.Millisecond
	t.Cleanup(func() { mountTimeout = old })
	start := time.Now()
	c, err := Mount(t.TempDir(), Config{})
	if err == nil {
		c.Close()
		t.Fatal("Mount succeeded through a fusermount3 that never finishes")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Mount failed after %v, want about %v", took, mountTimeout)
	}
	if !strings.Contains(err.Error(), "did not finish within") {
		t.Errorf("error %q does not say fusermount3 did not finish", err)
	}
}
