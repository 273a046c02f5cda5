package fusedev

import (
	"testing"

	"bazil.org/fuse"
)

// FuzzDecode: whatever the body of a request, decode returns a request
// (a *BadRequest for one it cannot read) with the header's identity, and
// never panics.
func FuzzDecode(f *testing.F) {
	readIn := append(u64s(3, 0), u32s(4096, 0, 0, 0, 0, 0)...)
	for _, seed := range []struct {
		op   uint32
		body []byte
	}{
		{opLookup, cstr("a")},
		{opSetattr, make([]byte, setattrInSize)},
		{opMkdir, append(u32s(0o755, 0o22), cstr("d")...)},
		{opCreate, append(u32s(1, 0o644, 0o22, 0), cstr("f")...)},
		{opRename, append(u64s(1), cstr("a", "b")...)},
		{opSymlink, cstr("l", "t")},
		{opSetxattr, append(append(u32s(3, 0, 0, 0), cstr("user.x")...), "abc"...)},
		{opBatchForget, append(u32s(1, 0), u64s(2, 1)...)},
		{opWrite, append(append(u64s(1, 0), u32s(3, 0, 0, 0, 0, 0)...), "abc"...)},
		{opReaddirplus, readIn},
		{opLink, append(u64s(2), cstr("n")...)},
	} {
		f.Add(seed.op, seed.body, true)
	}
	f.Fuzz(func(t *testing.T, op uint32, body []byte, ext bool) {
		c := &Conn{}
		if ext {
			c.flags = initSetxattrExt
		}
		h := inHeader{opcode: op % 64, unique: 7, nodeid: 9}
		req := c.decode(h, body)
		if req == nil {
			t.Fatalf("opcode %d: no request", h.opcode)
		}
		if hdr := req.Hdr(); hdr.ID != 7 || hdr.Node != 9 {
			t.Fatalf("opcode %d: header %v", h.opcode, hdr)
		}
		if w, ok := req.(*fuse.WriteRequest); ok && len(w.Data) > len(body) {
			t.Fatalf("write data of %d bytes from a body of %d", len(w.Data), len(body))
		}
	})
}
