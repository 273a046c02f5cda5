package fuseserve

import (
	"syscall"
	"testing"

	"bazil.org/fuse"
)

// Every request but DESTROY is answered on the goroutine that read it
// (serve_test.go has the hand-off of one that waits).
func TestQuick(t *testing.T) {
	s, _ := newTestServer(t)
	for _, req := range []fuse.Request{
		&fuse.LookupRequest{}, &fuse.GetattrRequest{}, &fuse.OpenRequest{},
		&fuse.ReadRequest{}, &fuse.WriteRequest{}, &fuse.FlushRequest{Handle: hFile},
		&fuse.FlushRequest{Handle: 99}, &fuse.ReleaseRequest{}, &fuse.CreateRequest{},
		&fuse.SetattrRequest{}, &fuse.FsyncRequest{}, &fuse.StatfsRequest{},
		&fuse.RenameRequest{}, &fuse.InterruptRequest{}, &fuse.ForgetRequest{},
	} {
		if !s.quick(req) {
			t.Errorf("quick(%T) = false", req)
		}
	}
	if s.quick(&fuse.DestroyRequest{}) {
		t.Error("quick(DESTROY) = true")
	}
}

func TestErrnoName(t *testing.T) {
	for e, want := range map[fuse.Errno]string{
		fuse.Errno(syscall.ENOENT):    "ENOENT",
		fuse.Errno(syscall.ENODATA):   "ENODATA",
		fuse.Errno(syscall.ENOTEMPTY): "ENOTEMPTY",
	} {
		if got := errnoName(e); got != want {
			t.Errorf("errnoName(%d) = %q, want %q", e, got, want)
		}
	}
}

func TestNewNeedsErrno(t *testing.T) {
	if _, err := New(nil, &fakeFS{rec: &recorder{}, root: &bareNode{}}, Options{}); err == nil {
		t.Error("New without Options.Errno succeeded")
	}
}
