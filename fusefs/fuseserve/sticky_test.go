package fuseserve

import (
	"encoding/binary"
	"os"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
)

// stickyReply writes the kernel's layout for the answers whose attributes
// carry the sticky bit, and leaves every other answer to bazil.
func TestStickyReply(t *testing.T) {
	ne := binary.NativeEndian
	mtime := time.Unix(1700000000, 123456789)
	attr := fuse.Attr{Valid: 1500 * time.Millisecond, Inode: 42, Size: 4096, Blocks: 8, Mtime: mtime,
		Atime: time.Unix(-2, 5), Ctime: mtime, Mode: os.ModeDir | os.ModeSticky | os.ModeSetgid | 0o777,
		Nlink: 3, Uid: 1000, Gid: 100, BlockSize: 4096}
	plain := attr
	plain.Mode = os.ModeDir | 0o755

	if _, ok := stickyReply(&fuse.GetattrRequest{}, &fuse.GetattrResponse{Attr: plain}); ok {
		t.Error("an answer without the sticky bit is written here, not by bazil")
	}
	if _, ok := stickyReply(&fuse.ReadRequest{}, &fuse.ReadResponse{}); ok {
		t.Error("an answer without attributes is written here")
	}

	// checkAttr checks the fuse_attr at b[off:].
	checkAttr := func(t *testing.T, b []byte, off int) {
		t.Helper()
		a := b[off:]
		for _, f := range []struct {
			name      string
			got, want uint64
		}{
			{"ino", ne.Uint64(a[0:]), 42},
			{"size", ne.Uint64(a[8:]), 4096},
			{"blocks", ne.Uint64(a[16:]), 8},
			{"atime", ne.Uint64(a[24:]), uint64(1<<64 - 2)}, // -2 s, two's complement
			{"mtime", ne.Uint64(a[32:]), 1700000000},
			{"atimensec", uint64(ne.Uint32(a[48:])), 5},
			{"mtimensec", uint64(ne.Uint32(a[52:])), 123456789},
			{"mode", uint64(ne.Uint32(a[60:])), syscall.S_IFDIR | syscall.S_ISVTX | syscall.S_ISGID | 0o777},
			{"nlink", uint64(ne.Uint32(a[64:])), 3},
			{"uid", uint64(ne.Uint32(a[68:])), 1000},
			{"gid", uint64(ne.Uint32(a[72:])), 100},
			{"blksize", uint64(ne.Uint32(a[80:])), 4096},
		} {
			if f.got != f.want {
				t.Errorf("attr %s = %#o, want %#o", f.name, f.got, f.want)
			}
		}
	}
	header := func(t *testing.T, b []byte, id fuse.RequestID, size int) {
		t.Helper()
		if len(b) != size || ne.Uint32(b[0:]) != uint32(size) || ne.Uint32(b[4:]) != 0 || ne.Uint64(b[8:]) != uint64(id) {
			t.Fatalf("header: len %d, says %d, error %d, unique %d; want %d bytes of request %d",
				len(b), ne.Uint32(b[0:]), ne.Uint32(b[4:]), ne.Uint64(b[8:]), size, id)
		}
	}

	t.Run("getattr", func(t *testing.T) {
		b, ok := stickyReply(&fuse.GetattrRequest{Header: fuse.Header{ID: 7}}, &fuse.GetattrResponse{Attr: attr})
		if !ok {
			t.Fatal("not written")
		}
		header(t, b, 7, outHeaderSize+attrOutSize)
		if s, ns := ne.Uint64(b[16:]), ne.Uint32(b[24:]); s != 1 || ns != 500_000_000 {
			t.Errorf("attr valid %d s %d ns", s, ns)
		}
		checkAttr(t, b, outHeaderSize+16)
	})
	t.Run("create", func(t *testing.T) {
		resp := &fuse.CreateResponse{
			LookupResponse: fuse.LookupResponse{Node: 9, Generation: 2, EntryValid: time.Second, Attr: attr},
			OpenResponse:   fuse.OpenResponse{Handle: 11, Flags: fuse.OpenDirectIO},
		}
		b, ok := stickyReply(&fuse.CreateRequest{Header: fuse.Header{ID: 8}}, resp)
		if !ok {
			t.Fatal("not written")
		}
		header(t, b, 8, outHeaderSize+entryOutSize+openOutSize)
		if n, g, ev := ne.Uint64(b[16:]), ne.Uint64(b[24:]), ne.Uint64(b[32:]); n != 9 || g != 2 || ev != 1 {
			t.Errorf("entry: node %d generation %d entry valid %d s", n, g, ev)
		}
		checkAttr(t, b, outHeaderSize+40)
		o := b[outHeaderSize+entryOutSize:]
		if fh, fl := ne.Uint64(o[0:]), ne.Uint32(o[8:]); fh != 11 || fl != uint32(fuse.OpenDirectIO) {
			t.Errorf("open: handle %d flags %#x", fh, fl)
		}
	})
}
