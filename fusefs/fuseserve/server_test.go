package fuseserve

import (
	"syscall"
	"testing"

	"bazil.org/fuse"
)

// Quick requests are answered on the goroutine that read them; the
// others, which usually wait on a peer, get one of their own.
func TestQuick(t *testing.T) {
	s, _ := newTestServer(t)
	// A handle whose flush uploads.
	uploads := s.handles.add(&fakeHandle{name: "w", quick: false})
	for _, tc := range []struct {
		req   fuse.Request
		quick bool
	}{
		{&fuse.LookupRequest{}, true},
		{&fuse.GetattrRequest{}, true},
		{&fuse.OpenRequest{}, true},
		{&fuse.ReadRequest{}, true},
		{&fuse.WriteRequest{}, true},
		{&fuse.ReleaseRequest{}, true},
		{&fuse.ForgetRequest{}, true},
		{&fuse.AccessRequest{}, true},
		{&fuse.GetxattrRequest{}, true},
		{&fuse.InterruptRequest{}, true},
		{&fuse.PollRequest{}, true},
		{&fuse.FlushRequest{Handle: hFile}, true}, // QuickFlush says so
		{&fuse.FlushRequest{Handle: uploads}, false},
		{&fuse.FlushRequest{Handle: hDir}, false}, // no HandleQuickFlusher
		{&fuse.FlushRequest{Handle: 99}, false},
		{&fuse.CreateRequest{}, true}, // local until close (remote)
		{&fuse.MkdirRequest{}, true},  // written behind (remote)
		{&fuse.SymlinkRequest{}, false},
		{&fuse.MknodRequest{}, false},
		{&fuse.LinkRequest{}, false},
		{&fuse.RemoveRequest{}, true}, // written behind (remote)
		{&fuse.RenameRequest{}, true}, // written behind (remote)
		{&fuse.SetattrRequest{}, false},
		{&fuse.FsyncRequest{}, false},
		{&fuse.StatfsRequest{}, false},
		{&fuse.SetxattrRequest{}, false},
		{&fuse.RemovexattrRequest{}, false},
		{&fuse.DestroyRequest{}, false},
	} {
		if got := s.quick(tc.req); got != tc.quick {
			t.Errorf("quick(%T %v) = %v, want %v", tc.req, tc.req, got, tc.quick)
		}
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
