package fusedev

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
	"golang.org/x/sys/unix"
)

// The tests stand in for the kernel on the other end of a SOCK_SEQPACKET
// socket pair: like /dev/fuse, each read takes one whole message and each
// write gives one.

// kernelSide is the kernel's end of a test connection.
type kernelSide struct {
	t  *testing.T
	fd int
}

// pairConn returns a Conn (negotiated as 7.33 with flags) and the
// kernel's end of it.
func pairConn(t *testing.T, flags uint32) (*Conn, *kernelSide) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(os.NewFile(uintptr(fds[0]), "fuse-test"))
	c.flags = flags
	k := &kernelSide{t: t, fd: fds[1]}
	t.Cleanup(func() {
		c.Close()
		unix.Close(k.fd)
	})
	return c, k
}

// send writes a request: header (opcode, unique, node) and body.
func (k *kernelSide) send(opcode uint32, unique, node uint64, body ...[]byte) {
	k.t.Helper()
	b := make([]byte, inHeaderSize)
	for _, p := range body {
		b = append(b, p...)
	}
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint32(b[4:], opcode)
	ne.PutUint64(b[8:], unique)
	ne.PutUint64(b[16:], node)
	ne.PutUint32(b[24:], 1000) // uid
	ne.PutUint32(b[28:], 100)  // gid
	ne.PutUint32(b[32:], 4242) // pid
	if _, err := unix.Write(k.fd, b); err != nil {
		k.t.Fatal(err)
	}
}

// recv reads one answer and checks its header: its length, error and
// unique; it returns the payload.
func (k *kernelSide) recv(unique uint64, errno int32) []byte {
	k.t.Helper()
	b := make([]byte, 1<<20)
	if err := unix.SetNonblock(k.fd, false); err != nil {
		k.t.Fatal(err)
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(k.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		k.t.Fatal(err)
	}
	n, err := unix.Read(k.fd, b)
	if err != nil {
		k.t.Fatalf("read an answer: %v", err)
	}
	b = b[:n]
	if n < outHeaderSize || ne.Uint32(b[0:]) != uint32(n) {
		k.t.Fatalf("answer of %d bytes says it has %d", n, ne.Uint32(b[0:]))
	}
	if e, u := int32(ne.Uint32(b[4:])), ne.Uint64(b[8:]); e != errno || u != unique {
		k.t.Fatalf("answer: error %d unique %d, want error %d unique %d", e, u, errno, unique)
	}
	return b[outHeaderSize:]
}

// le32, le64 and cstr build request bodies.
func u32s(vs ...uint32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		ne.PutUint32(b[4*i:], v)
	}
	return b
}

func u64s(vs ...uint64) []byte {
	b := make([]byte, 8*len(vs))
	for i, v := range vs {
		ne.PutUint64(b[8*i:], v)
	}
	return b
}

func cstr(names ...string) []byte {
	var b []byte
	for _, n := range names {
		b = append(append(b, n...), 0)
	}
	return b
}

// The requests decode into bazil's types, field by field, as the kernel
// lays them out.
func TestDecode(t *testing.T) {
	c, k := pairConn(t, initSetxattrExt)
	read := func() fuse.Request {
		t.Helper()
		req, err := c.ReadRequest()
		if err != nil {
			t.Fatal(err)
		}
		if h := req.Hdr(); h.Uid != 1000 || h.Gid != 100 || h.Pid != 4242 {
			t.Errorf("%v: header uid %d gid %d pid %d", req, h.Uid, h.Gid, h.Pid)
		}
		return req
	}

	k.send(opLookup, 1, 5, cstr("a.txt"))
	if r, ok := read().(*fuse.LookupRequest); !ok || r.Name != "a.txt" || r.Node != 5 || r.ID != 1 {
		t.Errorf("lookup: %#v", r)
	}

	setattr := make([]byte, setattrInSize)
	ne.PutUint32(setattr[0:], uint32(fuse.SetattrMode|fuse.SetattrMtime|fuse.SetattrSize))
	ne.PutUint64(setattr[8:], 77)          // fh
	ne.PutUint64(setattr[16:], 4096)       // size
	ne.PutUint64(setattr[40:], 1700000000) // mtime
	ne.PutUint32(setattr[60:], 123)        // mtimensec
	ne.PutUint32(setattr[68:], syscall.S_IFREG|syscall.S_ISVTX|0o640)
	ne.PutUint32(setattr[76:], 1001) // uid
	ne.PutUint32(setattr[80:], 1002) // gid
	k.send(opSetattr, 2, 5, setattr)
	if r, ok := read().(*fuse.SetattrRequest); !ok || r.Handle != 77 || r.Size != 4096 || !r.Mtime.Equal(time.Unix(1700000000, 123)) ||
		r.Mode != os.ModeSticky|0o640 || r.Uid != 1001 || r.Gid != 1002 || !r.Valid.Mode() || !r.Valid.Size() || r.Valid.Uid() {
		t.Errorf("setattr: %#v", r)
	}

	k.send(opMkdir, 3, 5, u32s(0o755, 0o022), cstr("d"))
	if r, ok := read().(*fuse.MkdirRequest); !ok || r.Name != "d" || r.Mode != os.ModeDir|0o755 || r.Umask != 0o022 {
		t.Errorf("mkdir: %#v", r)
	}

	k.send(opCreate, 4, 5, u32s(uint32(os.O_WRONLY|os.O_EXCL)|oLargefile, syscall.S_IFREG|0o644, 0o022, 0), cstr("f"))
	if r, ok := read().(*fuse.CreateRequest); !ok || r.Name != "f" || r.Mode != 0o644 || r.Umask != 0o022 ||
		r.Flags != fuse.OpenWriteOnly|fuse.OpenExclusive {
		t.Errorf("create: %#v", r)
	}

	k.send(opRename, 5, 5, u64s(9), cstr("old", "new"))
	if r, ok := read().(*fuse.RenameRequest); !ok || r.NewDir != 9 || r.OldName != "old" || r.NewName != "new" {
		t.Errorf("rename: %#v", r)
	}

	k.send(opSymlink, 6, 5, cstr("link", "../target"))
	if r, ok := read().(*fuse.SymlinkRequest); !ok || r.NewName != "link" || r.Target != "../target" {
		t.Errorf("symlink: %#v", r)
	}

	k.send(opSetxattr, 7, 5, u32s(3, 1, 0, 0), cstr("user.x"), []byte("abc"))
	if r, ok := read().(*fuse.SetxattrRequest); !ok || r.Name != "user.x" || string(r.Xattr) != "abc" || r.Flags != 1 {
		t.Errorf("setxattr: %#v", r)
	}

	k.send(opBatchForget, 8, 0, u32s(2, 0), u64s(10, 1, 11, 3))
	if r, ok := read().(*fuse.BatchForgetRequest); !ok || len(r.Forget) != 2 || r.Forget[1].NodeID != 11 || r.Forget[1].N != 3 {
		t.Errorf("batch forget: %#v", r)
	}

	readIn := u64s(33, 8192)
	readIn = append(readIn, u32s(4096, 0)...)
	readIn = append(readIn, u64s(0)...)
	readIn = append(readIn, u32s(0, 0)...)
	k.send(opReaddirplus, 9, 5, readIn)
	if r, ok := read().(*ReaddirplusRequest); !ok || !r.Dir || r.Handle != 33 || r.Offset != 8192 || r.Size != 4096 {
		t.Errorf("readdirplus: %#v", r)
	}
	k.send(opRead, 10, 5, readIn)
	if r, ok := read().(*fuse.ReadRequest); !ok || r.Dir || r.Offset != 8192 {
		t.Errorf("read: %#v", r)
	}

	// Malformed and unknown requests are requests too: the server
	// answers them, and reading goes on.
	k.send(opGetattr, 11, 5, u32s(0)) // 4 bytes of 16
	if r, ok := read().(*BadRequest); !ok || r.Opcode != opGetattr {
		t.Errorf("short getattr_in: %#v", r)
	}
	k.send(opLookup, 12, 5, []byte("no-nul"))
	if r, ok := read().(*BadRequest); !ok || r.Opcode != opLookup {
		t.Errorf("unterminated name: %#v", r)
	}
	k.send(4096, 13, 5)
	if r, ok := read().(*fuse.UnrecognizedRequest); !ok || r.Opcode != 4096 {
		t.Errorf("unknown opcode: %#v", r)
	}

	// The marks of Config.KillPriv reach the filesystem.
	writeIn := u64s(9, 4096)
	writeIn = append(writeIn, u32s(1, uint32(fuse.WriteKillSUIDGID))...)
	writeIn = append(writeIn, u64s(0)...)
	writeIn = append(writeIn, u32s(0, 0)...)
	k.send(opWrite, 40, 5, writeIn, []byte("x"))
	if r, ok := read().(*fuse.WriteRequest); !ok || r.Flags&fuse.WriteKillSUIDGID == 0 || r.Offset != 4096 {
		t.Errorf("write with FUSE_WRITE_KILL_SUIDGID: %#v", r)
	}
	kill := make([]byte, setattrInSize)
	ne.PutUint32(kill[0:], uint32(fuse.SetattrSize|fuse.SetattrKillSUIDGID))
	k.send(opSetattr, 41, 5, kill)
	if r, ok := read().(*fuse.SetattrRequest); !ok || r.Valid&fuse.SetattrKillSUIDGID == 0 || !r.Valid.Size() || r.Size != 0 {
		t.Errorf("setattr with FATTR_KILL_SUIDGID: %#v", r)
	}
	k.send(opOpen, 42, 5, u32s(uint32(os.O_WRONLY|os.O_TRUNC), uint32(fuse.OpenKillSUIDGID)))
	if r, ok := read().(*fuse.OpenRequest); !ok || r.OpenFlags&fuse.OpenKillSUIDGID == 0 || r.Flags&fuse.OpenTruncate == 0 {
		t.Errorf("open with FUSE_OPEN_KILL_SUIDGID: %#v", r)
	}
}

// A WRITE's data stays in the buffer it was read into until the WRITE is
// answered: requests read meanwhile do not overwrite it.
func TestWriteDataKeptUntilAnswered(t *testing.T) {
	c, k := pairConn(t, 0)
	writeIn := u64s(1, 0)
	writeIn = append(writeIn, u32s(5, 0)...)
	writeIn = append(writeIn, u64s(0)...)
	writeIn = append(writeIn, u32s(0, 0)...)
	k.send(opWrite, 1, 5, writeIn, []byte("hello"))
	req, err := c.ReadRequest()
	if err != nil {
		t.Fatal(err)
	}
	w := req.(*fuse.WriteRequest)
	for i := range 8 { // more reads than the pool is likely to hold
		k.send(opLookup, uint64(2+i), 5, cstr("xxxxxxxxxxxxxxxxxxxx"))
		r, err := c.ReadRequest()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ReplyError(r, fuse.Errno(syscall.ENOENT)); err != nil {
			t.Fatal(err)
		}
		k.recv(uint64(2+i), -int32(syscall.ENOENT))
	}
	if string(w.Data) != "hello" {
		t.Fatalf("write data %q after other requests, want hello", w.Data)
	}
	if err := c.Reply(w, &fuse.WriteResponse{Size: 5}); err != nil {
		t.Fatal(err)
	}
	if out := k.recv(1, 0); len(out) != writeOutSize || ne.Uint32(out) != 5 {
		t.Errorf("write_out %v", out)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) != 0 {
		t.Errorf("%d buffers still held after the answer", len(c.held))
	}
}

// checkAttr checks the fuse_attr at b against attr, the test's attributes.
func checkAttr(t *testing.T, a []byte) {
	t.Helper()
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

var testAttr = fuse.Attr{Valid: 1500 * time.Millisecond, Inode: 42, Size: 4096, Blocks: 8,
	Mtime: time.Unix(1700000000, 123456789), Atime: time.Unix(-2, 5), Ctime: time.Unix(1700000000, 123456789),
	Mode: os.ModeDir | os.ModeSticky | os.ModeSetgid | 0o777, Nlink: 3, Uid: 1000, Gid: 100, BlockSize: 4096}

// Answers are written in the kernel's layout; attributes keep the sticky
// bit, which bazil's encoding dropped.
func TestReply(t *testing.T) {
	c, k := pairConn(t, 0)
	hdr := func(id uint64) fuse.Header { return fuse.Header{ID: fuse.RequestID(id)} }

	t.Run("getattr", func(t *testing.T) {
		if err := c.Reply(&fuse.GetattrRequest{Header: hdr(7)}, &fuse.GetattrResponse{Attr: testAttr}); err != nil {
			t.Fatal(err)
		}
		b := k.recv(7, 0)
		if len(b) != attrOutSize {
			t.Fatalf("attr_out of %d bytes", len(b))
		}
		if s, ns := ne.Uint64(b[0:]), ne.Uint32(b[8:]); s != 1 || ns != 500_000_000 {
			t.Errorf("attr valid %d s %d ns", s, ns)
		}
		checkAttr(t, b[16:])
	})
	t.Run("create", func(t *testing.T) {
		resp := &fuse.CreateResponse{
			LookupResponse: fuse.LookupResponse{Node: 9, Generation: 2, EntryValid: time.Second, Attr: testAttr},
			OpenResponse:   fuse.OpenResponse{Handle: 11, Flags: fuse.OpenDirectIO},
		}
		if err := c.Reply(&fuse.CreateRequest{Header: hdr(8)}, resp); err != nil {
			t.Fatal(err)
		}
		b := k.recv(8, 0)
		if len(b) != entryOutSize+openOutSize {
			t.Fatalf("create answer of %d bytes", len(b))
		}
		if n, g, ev := ne.Uint64(b[0:]), ne.Uint64(b[8:]), ne.Uint64(b[16:]); n != 9 || g != 2 || ev != 1 {
			t.Errorf("entry: node %d generation %d entry valid %d s", n, g, ev)
		}
		checkAttr(t, b[40:])
		if fh, fl := ne.Uint64(b[entryOutSize:]), ne.Uint32(b[entryOutSize+8:]); fh != 11 || fl != uint32(fuse.OpenDirectIO) {
			t.Errorf("open: handle %d flags %#x", fh, fl)
		}
	})
	t.Run("xattr", func(t *testing.T) {
		// Size 0 asks for the size alone.
		c.Reply(&fuse.GetxattrRequest{Header: hdr(9)}, &fuse.GetxattrResponse{Xattr: []byte("value")})
		if b := k.recv(9, 0); len(b) != getxattrOutSize || ne.Uint32(b) != 5 {
			t.Errorf("getxattr size: %v", b)
		}
		c.Reply(&fuse.ListxattrRequest{Header: hdr(10), Size: 64}, &fuse.ListxattrResponse{Xattr: []byte("user.a\x00")})
		if b := k.recv(10, 0); string(b) != "user.a\x00" {
			t.Errorf("listxattr: %q", b)
		}
	})
	t.Run("statfs", func(t *testing.T) {
		c.Reply(&fuse.StatfsRequest{Header: hdr(11)}, &fuse.StatfsResponse{Blocks: 100, Bfree: 50, Bavail: 40, Files: 9, Ffree: 8, Bsize: 4096, Namelen: 255, Frsize: 4096})
		b := k.recv(11, 0)
		if len(b) != statfsOutSize || ne.Uint64(b[0:]) != 100 || ne.Uint64(b[16:]) != 40 || ne.Uint32(b[40:]) != 4096 || ne.Uint32(b[44:]) != 255 {
			t.Errorf("statfs: %v", b)
		}
	})
	t.Run("error", func(t *testing.T) {
		c.ReplyError(&fuse.LookupRequest{Header: hdr(12)}, fuse.Errno(syscall.ENOENT))
		if b := k.recv(12, -int32(syscall.ENOENT)); len(b) != 0 {
			t.Errorf("error answer with %d bytes of payload", len(b))
		}
	})
	t.Run("no answer", func(t *testing.T) {
		for _, r := range []fuse.Request{&fuse.ForgetRequest{Header: hdr(13)}, &fuse.InterruptRequest{Header: hdr(14)}} {
			if err := c.Reply(r, nil); err != nil {
				t.Fatal(err)
			}
		}
		c.Reply(&fuse.FlushRequest{Header: hdr(15)}, nil)
		k.recv(15, 0) // the first answer written: the forget and interrupt got none
	})
}

// A READDIRPLUS entry is a fuse_entry_out (zero for none), then the
// dirent, its name padded to 8 bytes.
func TestAppendDirentplus(t *testing.T) {
	entry := &fuse.LookupResponse{Node: 9, EntryValid: time.Second, Attr: testAttr}
	b := AppendDirentplus(nil, entry, fuse.Dirent{Inode: 42, Type: fuse.DT_Dir, Name: "sub"}, 3)
	b = AppendDirentplus(b, nil, fuse.Dirent{Inode: 1, Type: fuse.DT_Dir, Name: ".."}, 4)
	if want := DirentplusSize("sub") + DirentplusSize(".."); len(b) != want || want != 2*(entryOutSize+direntSize+8) {
		t.Fatalf("%d bytes, want %d", len(b), want)
	}
	if ne.Uint64(b[0:]) != 9 {
		t.Errorf("nodeid %d", ne.Uint64(b[0:]))
	}
	checkAttr(t, b[40:])
	d := b[entryOutSize:]
	if ino, off, n, typ := ne.Uint64(d[0:]), ne.Uint64(d[8:]), ne.Uint32(d[16:]), ne.Uint32(d[20:]); ino != 42 || off != 3 || n != 3 || typ != uint32(fuse.DT_Dir) {
		t.Errorf("dirent: ino %d off %d namelen %d type %d", ino, off, n, typ)
	}
	if name := d[direntSize : direntSize+8]; !bytes.Equal(name, []byte("sub\x00\x00\x00\x00\x00")) {
		t.Errorf("name %q", name)
	}
	second := b[DirentplusSize("sub"):]
	if !bytes.Equal(second[:entryOutSize], make([]byte, entryOutSize)) {
		t.Error(`".." carries a lookup`)
	}
}

// INIT takes what the configuration asks for among what the kernel
// offers, and refuses a kernel older than the layouts this package knows.
func TestInit(t *testing.T) {
	t.Run("negotiate", func(t *testing.T) {
		c, k := pairConn(t, 0)
		offered := uint32(initAsyncRead | initBigWrites | initDoReaddirplus | initReaddirplusAuto | initParallelDirops | initMaxPages | 1<<30)
		k.send(opInit, 1, 0, u32s(7, 40, 1<<20, offered))
		if err := c.init(Config{MaxReadahead: 128 << 10, AsyncRead: true, Readdirplus: true}); err != nil {
			t.Fatal(err)
		}
		b := k.recv(1, 0)
		if len(b) != initOutSize {
			t.Fatalf("init_out of %d bytes", len(b))
		}
		want := uint32(initAsyncRead | initBigWrites | initDoReaddirplus | initParallelDirops)
		if major, minor, ra, flags, mw := ne.Uint32(b[0:]), ne.Uint32(b[4:]), ne.Uint32(b[8:]), ne.Uint32(b[12:]), ne.Uint32(b[20:]); major != 7 || minor != protoMinor ||
			ra != 128<<10 || flags != want || mw != maxWriteDefault {
			t.Errorf("init_out: %d.%d readahead %d flags %#x (want %#x) max_write %d", major, minor, ra, flags, want, mw)
		}
	})
	t.Run("killpriv", func(t *testing.T) {
		for _, ask := range []bool{false, true} {
			c, k := pairConn(t, 0)
			k.send(opInit, 1, 0, u32s(7, 33, 1<<20, initKillprivV2|initBigWrites))
			if err := c.init(Config{KillPriv: ask}); err != nil {
				t.Fatal(err)
			}
			b := k.recv(1, 0)
			if got := ne.Uint32(b[12:])&initKillprivV2 != 0; got != ask || c.KillPriv() != ask {
				t.Errorf("asked %v: init_out takes FUSE_HANDLE_KILLPRIV_V2 %v, KillPriv() %v", ask, got, c.KillPriv())
			}
		}
		// Not offered (a kernel before 5.11): not taken.
		c, k := pairConn(t, 0)
		k.send(opInit, 1, 0, u32s(7, 31, 1<<20, initBigWrites))
		if err := c.init(Config{KillPriv: true}); err != nil {
			t.Fatal(err)
		}
		if b := k.recv(1, 0); ne.Uint32(b[12:])&initKillprivV2 != 0 || c.KillPriv() {
			t.Errorf("FUSE_HANDLE_KILLPRIV_V2 taken though the kernel did not offer it")
		}
	})
	t.Run("max pages", func(t *testing.T) {
		c, k := pairConn(t, 0)
		k.send(opInit, 1, 0, u32s(7, 33, 1<<20, initMaxPages|initBigWrites))
		if err := c.init(Config{MaxWrite: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		b := k.recv(1, 0)
		if flags, mw, pages := ne.Uint32(b[12:]), ne.Uint32(b[20:]), ne.Uint16(b[28:]); flags != initMaxPages|initBigWrites || mw != 1<<20 || pages != 256 {
			t.Errorf("flags %#x max_write %d max_pages %d", flags, mw, pages)
		}
		if c.maxWrite != 1<<20 {
			t.Errorf("the connection reads requests of up to %d bytes", c.maxWrite)
		}
		// A request larger than the default fits the buffers read into
		// (160 KiB: a socket's message cannot be 1 MiB).
		const size = 160 << 10
		writeIn := u64s(1, 0)
		writeIn = append(writeIn, u32s(size, 0)...)
		writeIn = append(writeIn, u64s(0)...)
		writeIn = append(writeIn, u32s(0, 0)...)
		k.send(opWrite, 2, 5, writeIn, bytes.Repeat([]byte{7}, size))
		req, err := c.ReadRequest()
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := req.(*fuse.WriteRequest); !ok || len(w.Data) != size {
			t.Errorf("a 1 MiB write read as %v", req)
		}
	})
	t.Run("max pages not offered", func(t *testing.T) {
		c, k := pairConn(t, 0)
		k.send(opInit, 1, 0, u32s(7, 33, 1<<20, initBigWrites))
		if err := c.init(Config{MaxWrite: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		if b := k.recv(1, 0); ne.Uint32(b[20:]) != maxWriteDefault || ne.Uint16(b[28:]) != 0 || c.maxWrite != maxWriteDefault {
			t.Errorf("max_write %d max_pages %d without FUSE_MAX_PAGES", ne.Uint32(b[20:]), ne.Uint16(b[28:]))
		}
	})
	t.Run("without readdirplus", func(t *testing.T) {
		c, k := pairConn(t, 0)
		k.send(opInit, 1, 0, u32s(7, 31, 1<<20, initDoReaddirplus|initBigWrites))
		if err := c.init(Config{}); err != nil {
			t.Fatal(err)
		}
		if b := k.recv(1, 0); ne.Uint32(b[4:]) != 31 || ne.Uint32(b[12:]) != initBigWrites {
			t.Errorf("minor %d flags %#x", ne.Uint32(b[4:]), ne.Uint32(b[12:]))
		}
	})
	t.Run("old kernel", func(t *testing.T) {
		c, k := pairConn(t, 0)
		k.send(opInit, 1, 0, u32s(7, 26, 1<<20, 0))
		if err := c.init(Config{}); err == nil {
			t.Fatal("a 7.26 kernel was accepted")
		}
		k.recv(1, -int32(syscall.EPROTO))
	})
}

// Invalidations are notifications (unique 0, the code in the error
// field); one the kernel has nothing for is fuse.ErrNotCached.
func TestInvalidate(t *testing.T) {
	c, k := pairConn(t, 0)
	if err := c.InvalidateEntry(7, "name"); err != nil {
		t.Fatal(err)
	}
	b := k.recv(0, notifyInvalEntry)
	if p, n, f := ne.Uint64(b[0:]), ne.Uint32(b[8:]), ne.Uint32(b[12:]); p != 7 || n != 4 || f != 0 || string(b[invalEntrySize:]) != "name\x00" {
		t.Errorf("inval_entry: parent %d namelen %d flags %d name %q", p, n, f, b[invalEntrySize:])
	}
	if err := c.ExpireEntry(7, "dir"); err != nil {
		t.Fatal(err)
	}
	b = k.recv(0, notifyInvalEntry)
	if p, n, f := ne.Uint64(b[0:]), ne.Uint32(b[8:]), ne.Uint32(b[12:]); p != 7 || n != 3 || f != expireOnly || string(b[invalEntrySize:]) != "dir\x00" {
		t.Errorf("inval_entry, expire only: parent %d namelen %d flags %d name %q", p, n, f, b[invalEntrySize:])
	}
	if err := c.InvalidateNode(9, -1, 0); err != nil {
		t.Fatal(err)
	}
	b = k.recv(0, notifyInvalInode)
	if ino, off := ne.Uint64(b[0:]), int64(ne.Uint64(b[8:])); ino != 9 || off != -1 {
		t.Errorf("inval_inode: ino %d off %d", ino, off)
	}
}

// Closing the kernel's end is the unmount: ReadRequest returns io.EOF.
func TestReadAfterUnmount(t *testing.T) {
	c, k := pairConn(t, 0)
	unix.Close(k.fd)
	k.fd = -1
	if _, err := c.ReadRequest(); !errors.Is(err, io.EOF) {
		t.Errorf("ReadRequest after the other end closed: %v, want io.EOF", err)
	}
}

// Modes convert both ways: every file type with permission, setuid,
// setgid and sticky bits; a kernel mode without a type is irregular.
func TestModeConversion(t *testing.T) {
	types := []os.FileMode{0, os.ModeDir, os.ModeSymlink, os.ModeNamedPipe, os.ModeSocket, os.ModeDevice, os.ModeDevice | os.ModeCharDevice}
	for _, typ := range types {
		for _, bits := range []os.FileMode{0o644, 0o755 | os.ModeSetuid, 0o775 | os.ModeSetgid, 0o777 | os.ModeSticky | os.ModeSetuid | os.ModeSetgid} {
			m := typ | bits
			if got := fileMode(kernelMode(m)); got != m {
				t.Errorf("fileMode(kernelMode(%v)) = %v", m, got)
			}
		}
	}
	if got, want := kernelMode(os.ModeDevice|os.ModeCharDevice|0o600), uint32(syscall.S_IFCHR|0o600); got != want {
		t.Errorf("kernelMode of a character device: %#o, want %#o", got, want)
	}
	if got := fileMode(0o644); got != os.ModeIrregular|0o644 {
		t.Errorf("fileMode of a mode without a type: %v", got)
	}
}
