package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"bazil.org/fuse"
)

func TestOpenFlags(t *testing.T) {
	for _, tc := range []struct {
		in   fuse.OpenFlags
		want int
	}{
		{fuse.OpenReadOnly, os.O_RDONLY},
		{fuse.OpenWriteOnly | fuse.OpenTruncate, os.O_WRONLY | os.O_TRUNC},
		{fuse.OpenReadWrite | fuse.OpenAppend, os.O_RDWR | os.O_APPEND},
		{fuse.OpenWriteOnly | fuse.OpenCreate | fuse.OpenExclusive, os.O_WRONLY | os.O_CREATE | os.O_EXCL},
		{fuse.OpenReadOnly | fuse.OpenNonblock | fuse.OpenDirectory, os.O_RDONLY},
	} {
		if got := openFlags(tc.in); got != tc.want {
			t.Errorf("openFlags(%v) = %#o, want %#o", tc.in, got, tc.want)
		}
	}
}

func TestCreateWriteReadFlush(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	alice := mustLookup(t, f.root, "alice").(*dir)
	n, h, err := alice.Create(ctx, &fuse.CreateRequest{Name: "new.txt", Flags: fuse.OpenReadWrite | fuse.OpenCreate, Mode: 0o600}, &fuse.CreateResponse{})
	if err != nil {
		t.Fatal(err)
	}
	if again := mustLookup(t, alice, "new.txt"); again != n {
		t.Error("lookup after create returned another node")
	}
	hd := h.(*handle)
	wresp := &fuse.WriteResponse{}
	if err := hd.Write(ctx, &fuse.WriteRequest{Data: []byte("hello world"), Offset: 0}, wresp); err != nil || wresp.Size != 11 {
		t.Fatalf("write: %d, %v", wresp.Size, err)
	}
	rresp := &fuse.ReadResponse{Data: make([]byte, 0, 64)}
	if err := hd.Read(ctx, &fuse.ReadRequest{Offset: 6, Size: 64}, rresp); err != nil || string(rresp.Data) != "world" {
		t.Fatalf("read: %q, %v", rresp.Data, err)
	}
	if err := hd.Flush(ctx, &fuse.FlushRequest{}); err != nil {
		t.Fatal(err)
	}
	// Setattr size goes to Truncate; the server then calls Attr, which is primed.
	fl := n.(*file)
	if err := fl.Setattr(ctx, &fuse.SetattrRequest{Valid: fuse.SetattrSize | fuse.SetattrHandle, Size: 5}, &fuse.SetattrResponse{}); err != nil {
		t.Fatal(err)
	}
	stats := store.stats.Load()
	if a := attr(t, fl); a.Size != 5 || a.Mode != 0o600 {
		t.Errorf("attr after truncate = %v", a)
	}
	if store.stats.Load() != stats {
		t.Error("Attr after Setattr called Stat")
	}
	if err := fl.Fsync(ctx, &fuse.FsyncRequest{}); err != nil {
		t.Fatal(err)
	}

	store.failFlush.Store(true)
	wantErrno(t, "flush with failing store", hd.Flush(ctx, &fuse.FlushRequest{}), syscall.EIO)
	store.failFlush.Store(false)

	if err := hd.Release(ctx, &fuse.ReleaseRequest{}); err != nil {
		t.Fatal(err)
	}
	if store.open() != 0 {
		t.Errorf("%d store handles still open", store.open())
	}
	got, err := os.ReadFile(filepath.Join(store.base, "alice", "new.txt"))
	if err != nil || string(got) != "hello" {
		t.Errorf("backing file = %q, %v", got, err)
	}
}
