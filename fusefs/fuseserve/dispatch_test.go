package fuseserve

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"testing"

	"bazil.org/fuse"
)

// dispatchCase is one request to dispatch and what must come of it.
type dispatchCase struct {
	name   string
	before []fuse.Request // dispatched first (their calls are not checked)
	setup  func(s *Server)
	fail   bool // the fakes fail with errFake
	req    fuse.Request
	want   any                           // the response (reflect.DeepEqual) when no error is wanted
	check  func(t *testing.T, resp any)  // instead of want
	err    error                         // the error wanted: errors.Is, or the Op of an *UnsupportedError
	calls  []string                      // the fake methods called, in order
	after  func(t *testing.T, s *Server) // checks of the server's tables
}

func hdr(id fuse.NodeID) fuse.Header { return fuse.Header{ID: 100, Node: id} }

func unsupported(op string) error { return &UnsupportedError{Op: op} }

// TestDispatch drives every kind of request the server serves through
// dispatch, with fake nodes and handles and no kernel: the node method
// called, the response or error returned, and the tables after.
func TestDispatch(t *testing.T) {
	cases := slices.Concat(lookupCases(), attrCases(), entryCases(), xattrCases(),
		forgetCases(), handleCases(), readCases(), otherCases())
	seen := map[reflect.Type]bool{}
	for _, tc := range cases {
		seen[reflect.TypeOf(tc.req)] = true
		t.Run(tc.name, func(t *testing.T) {
			s, rec := newTestServer(t)
			ctx := context.Background()
			for _, req := range tc.before {
				if _, err := s.dispatch(ctx, req); err != nil {
					t.Fatalf("before: %v: %v", req, err)
				}
			}
			if tc.setup != nil {
				tc.setup(s)
			}
			rec.calls, rec.fail = nil, tc.fail
			resp, err := s.dispatch(ctx, tc.req)
			rec.fail = false
			checkErr(t, err, tc.err)
			switch {
			case tc.err != nil:
				if resp != nil {
					t.Errorf("response %#v with the error", resp)
				}
			case tc.check != nil:
				tc.check(t, resp)
			case !reflect.DeepEqual(resp, tc.want):
				t.Errorf("response\n %#v\nwant\n %#v", resp, tc.want)
			}
			if !slices.Equal(rec.calls, tc.calls) {
				t.Errorf("calls %q, want %q", rec.calls, tc.calls)
			}
			if tc.after != nil {
				tc.after(t, s)
			}
		})
	}
	// Every kind respond answers is in the table.
	for _, req := range []fuse.Request{
		&fuse.LookupRequest{}, &fuse.GetattrRequest{}, &fuse.SetattrRequest{},
		&fuse.OpenRequest{}, &fuse.CreateRequest{}, &fuse.MkdirRequest{},
		&fuse.SymlinkRequest{}, &fuse.MknodRequest{}, &fuse.LinkRequest{},
		&fuse.ReadlinkRequest{}, &fuse.GetxattrRequest{}, &fuse.ListxattrRequest{},
		&fuse.StatfsRequest{}, &fuse.WriteRequest{}, &fuse.ReadRequest{},
		&fuse.RemoveRequest{}, &fuse.RenameRequest{}, &fuse.AccessRequest{},
		&fuse.FsyncRequest{}, &fuse.SetxattrRequest{}, &fuse.RemovexattrRequest{},
		&fuse.ForgetRequest{}, &fuse.BatchForgetRequest{}, &fuse.FlushRequest{},
		&fuse.ReleaseRequest{}, &fuse.InterruptRequest{}, &fuse.DestroyRequest{},
	} {
		if !seen[reflect.TypeOf(req)] {
			t.Errorf("no case for %T", req)
		}
	}
}

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	var wantU, gotU *UnsupportedError
	switch {
	case want == nil:
		if err != nil {
			t.Errorf("error %v, want none", err)
		}
	case errors.As(want, &wantU):
		if !errors.As(err, &gotU) || gotU.Op != wantU.Op {
			t.Errorf("error %v, want %v", err, want)
		}
	case !errors.Is(err, want):
		t.Errorf("error %v, want %v", err, want)
	}
}

// knows checks that the kernel's NodeID id names a node with refs
// references (none: forgotten).
func knows(id fuse.NodeID, refs uint64) func(*testing.T, *Server) {
	return func(t *testing.T, s *Server) {
		t.Helper()
		s.nodes.mu.Lock()
		defer s.nodes.mu.Unlock()
		_, known := s.nodes.byID[id]
		if got := s.nodes.refs[id]; got != refs || known != (refs > 0) {
			t.Errorf("node %d: known %v with %d references, want %d", id, known, got, refs)
		}
	}
}

// holds checks whether HandleID id is open.
func holds(id fuse.HandleID, open bool) func(*testing.T, *Server) {
	return func(t *testing.T, s *Server) {
		t.Helper()
		if _, ok := s.handles.get(id); ok != open {
			t.Errorf("handle %d open: %v, want %v", id, ok, open)
		}
	}
}

func lookupCases() []dispatchCase {
	entry := func(id fuse.NodeID, a fuse.Attr) *fuse.LookupResponse {
		return &fuse.LookupResponse{Node: id, EntryValid: defaultEntryValid, Attr: a}
	}
	return []dispatchCase{
		{name: "lookup of a known node", req: &fuse.LookupRequest{Header: hdr(rootID), Name: "file"},
			want: entry(idFile, fileAttr(42)), calls: []string{"root.Lookup file", "file.Attr"}, after: knows(idFile, 2)},
		{name: "lookup of a new node", req: &fuse.LookupRequest{Header: hdr(idDir), Name: "a"},
			want: entry(idNext, fileAttr(inodeOf("dir", "a"))), calls: []string{"dir.Lookup a", "a.Attr"}, after: knows(idNext, 1)},
		{name: "lookup by string", req: &fuse.LookupRequest{Header: hdr(idStrDir), Name: "s"},
			want: entry(idNext, attr(inodeOf("strdir", "s"), 0, 0o600)), calls: []string{"strdir.Lookup s", "s.Attr"}},
		{name: "lookup in no directory", req: &fuse.LookupRequest{Header: hdr(idBare), Name: "x"}, err: fs.ErrNotExist},
		{name: "lookup of a missing name", req: &fuse.LookupRequest{Header: hdr(idDir), Name: "nope"},
			err: fs.ErrNotExist, calls: []string{"dir.Lookup nope"}},
		{name: "lookup fails", fail: true, req: &fuse.LookupRequest{Header: hdr(rootID), Name: "file"},
			err: errFake, calls: []string{"root.Lookup file"}, after: knows(idFile, 1)},
		{name: "lookup in an unknown node", req: &fuse.LookupRequest{Header: hdr(99), Name: "file"}, err: ErrStale},
	}
}

func attrCases() []dispatchCase {
	return []dispatchCase{
		{name: "getattr by Getattr", req: &fuse.GetattrRequest{Header: hdr(idDir)},
			want: &fuse.GetattrResponse{Attr: fuse.Attr{Inode: 77, Size: 7, Mode: os.ModeDir | 0o700}}, calls: []string{"dir.Getattr"}},
		{name: "getattr by Attr", req: &fuse.GetattrRequest{Header: hdr(idFile)},
			want: &fuse.GetattrResponse{Attr: fileAttr(42)}, calls: []string{"file.Attr"}},
		{name: "getattr with the inode of the lookup", req: &fuse.GetattrRequest{Header: hdr(idBare)},
			want: &fuse.GetattrResponse{Attr: attr(inodeOf("bare"), 0, 0o600)}, calls: []string{"bare.Attr"}},
		{name: "getattr fails", fail: true, req: &fuse.GetattrRequest{Header: hdr(idFile)}, err: errFake, calls: []string{"file.Attr"}},
		{name: "getattr of an unknown node", req: &fuse.GetattrRequest{Header: hdr(99)}, err: ErrStale},
		{name: "getattr panics", req: &fuse.GetattrRequest{Header: hdr(idPanic)}, err: ErrPanic},
		{name: "setattr", req: &fuse.SetattrRequest{Header: hdr(idDir), Valid: fuse.SetattrSize, Size: 3},
			want: &fuse.SetattrResponse{Attr: dirAttr("dir")}, calls: []string{"dir.Setattr size=3", "dir.Attr"}},
		{name: "setattr of a node without Setattr", req: &fuse.SetattrRequest{Header: hdr(idFile)},
			want: &fuse.SetattrResponse{Attr: fileAttr(42)}, calls: []string{"file.Attr"}},
		{name: "setattr fails", fail: true, req: &fuse.SetattrRequest{Header: hdr(idDir)}, err: errFake, calls: []string{"dir.Setattr size=0"}},
		{name: "access", req: &fuse.AccessRequest{Header: hdr(idDir), Mask: 4}, calls: []string{"dir.Access 4"}},
		{name: "access to a node without Access", req: &fuse.AccessRequest{Header: hdr(idFile), Mask: 4}},
		{name: "access fails", fail: true, req: &fuse.AccessRequest{Header: hdr(idDir), Mask: 2}, err: errFake, calls: []string{"dir.Access 2"}},
		{name: "fsync", req: &fuse.FsyncRequest{Header: hdr(idDir), Dir: true}, calls: []string{"dir.Fsync"}},
		{name: "fsync fails", fail: true, req: &fuse.FsyncRequest{Header: hdr(idDir)}, err: errFake, calls: []string{"dir.Fsync"}},
		{name: "fsync unsupported", req: &fuse.FsyncRequest{Header: hdr(idFile)}, err: unsupported("fsync")},
		{name: "fsyncdir unsupported", req: &fuse.FsyncRequest{Header: hdr(idBare), Dir: true}, err: unsupported("fsyncdir")},
		{name: "statfs of a node", req: &fuse.StatfsRequest{Header: hdr(idDir)},
			want: &fuse.StatfsResponse{Blocks: 1}, calls: []string{"dir.Statfs"}},
		{name: "statfs of the FS", req: &fuse.StatfsRequest{Header: hdr(idFile)},
			want: &fuse.StatfsResponse{Blocks: 100}, calls: []string{"fs.Statfs"}},
		{name: "statfs fails", fail: true, req: &fuse.StatfsRequest{Header: hdr(idFile)}, err: errFake, calls: []string{"fs.Statfs"}},
	}
}

func entryCases() []dispatchCase {
	entry := func(id fuse.NodeID, a fuse.Attr) fuse.LookupResponse {
		return fuse.LookupResponse{Node: id, EntryValid: defaultEntryValid, Attr: a}
	}
	return []dispatchCase{
		{name: "create", req: &fuse.CreateRequest{Header: hdr(idDir), Name: "new"},
			want:  &fuse.CreateResponse{LookupResponse: entry(idNext, fileAttr(50)), OpenResponse: fuse.OpenResponse{Handle: hNext}},
			calls: []string{"dir.Create new", "new.Attr"}, after: holds(hNext, true)},
		{name: "create whose attributes fail", req: &fuse.CreateRequest{Header: hdr(idDir), Name: "badattr"},
			err: errFake, calls: []string{"dir.Create badattr", "badattr.Attr", "badattr.Release"}, after: holds(hNext, false)},
		{name: "create fails", fail: true, req: &fuse.CreateRequest{Header: hdr(idDir), Name: "new"}, err: errFake, calls: []string{"dir.Create new"}},
		{name: "create unsupported", req: &fuse.CreateRequest{Header: hdr(idBare), Name: "new"}, err: unsupported("create")},
		{name: "mkdir", req: &fuse.MkdirRequest{Header: hdr(idDir), Name: "m"},
			want: &fuse.MkdirResponse{LookupResponse: entry(idNext, dirAttr("dir", "m"))}, calls: []string{"dir.Mkdir m", "m.Attr", "m.Revive"}},
		{name: "mkdir fails", fail: true, req: &fuse.MkdirRequest{Header: hdr(idDir), Name: "m"}, err: errFake, calls: []string{"dir.Mkdir m"}},
		{name: "mkdir unsupported", req: &fuse.MkdirRequest{Header: hdr(idBare), Name: "m"}, err: unsupported("mkdir")},
		{name: "symlink", req: &fuse.SymlinkRequest{Header: hdr(idDir), NewName: "l", Target: "t"},
			want: &fuse.SymlinkResponse{LookupResponse: entry(idNext, fileAttr(51))}, calls: []string{"dir.Symlink l -> t", "l.Attr"}},
		{name: "symlink fails", fail: true, req: &fuse.SymlinkRequest{Header: hdr(idDir), NewName: "l", Target: "t"},
			err: errFake, calls: []string{"dir.Symlink l -> t"}},
		{name: "symlink unsupported", req: &fuse.SymlinkRequest{Header: hdr(idBare), NewName: "l"}, err: unsupported("symlink")},
		{name: "mknod", req: &fuse.MknodRequest{Header: hdr(idDir), Name: "n"},
			want: ptr(entry(idNext, fileAttr(52))), calls: []string{"dir.Mknod n", "n.Attr"}},
		{name: "mknod fails", fail: true, req: &fuse.MknodRequest{Header: hdr(idDir), Name: "n"}, err: errFake, calls: []string{"dir.Mknod n"}},
		{name: "mknod unsupported", req: &fuse.MknodRequest{Header: hdr(idBare), Name: "n"}, err: unsupported("mknod")},
		{name: "link", req: &fuse.LinkRequest{Header: hdr(idDir), OldNode: idFile, NewName: "h"},
			want: ptr(entry(idFile, fileAttr(42))), calls: []string{"dir.Link h to file", "file.Attr"}, after: knows(idFile, 2)},
		{name: "link fails", fail: true, req: &fuse.LinkRequest{Header: hdr(idDir), OldNode: idFile, NewName: "h"},
			err: errFake, calls: []string{"dir.Link h to file"}},
		{name: "link of an unknown node", req: &fuse.LinkRequest{Header: hdr(idDir), OldNode: 99, NewName: "h"}, err: ErrStale},
		{name: "link unsupported", req: &fuse.LinkRequest{Header: hdr(idBare), OldNode: idFile, NewName: "h"}, err: unsupported("link")},
		{name: "readlink", req: &fuse.ReadlinkRequest{Header: hdr(idFile)}, want: "target", calls: []string{"file.Readlink"}},
		{name: "readlink fails", fail: true, req: &fuse.ReadlinkRequest{Header: hdr(idFile)}, err: errFake, calls: []string{"file.Readlink"}},
		{name: "readlink unsupported", req: &fuse.ReadlinkRequest{Header: hdr(idBare)}, err: unsupported("readlink")},
		{name: "remove", req: &fuse.RemoveRequest{Header: hdr(idDir), Name: "a"}, calls: []string{"dir.Remove a dir=false"}},
		{name: "rmdir fails", fail: true, req: &fuse.RemoveRequest{Header: hdr(idDir), Name: "a", Dir: true},
			err: errFake, calls: []string{"dir.Remove a dir=true"}},
		{name: "remove unsupported", req: &fuse.RemoveRequest{Header: hdr(idBare), Name: "a"}, err: unsupported("remove")},
		{name: "rename", req: &fuse.RenameRequest{Header: hdr(idDir), NewDir: rootID, OldName: "a", NewName: "b"},
			calls: []string{"dir.Rename a to root/b"}},
		{name: "rename fails", fail: true, req: &fuse.RenameRequest{Header: hdr(idDir), NewDir: idDir, OldName: "a", NewName: "b"},
			err: errFake, calls: []string{"dir.Rename a to dir/b"}},
		{name: "rename into an unknown node", req: &fuse.RenameRequest{Header: hdr(idDir), NewDir: 99, OldName: "a", NewName: "b"}, err: ErrStale},
		{name: "rename unsupported", req: &fuse.RenameRequest{Header: hdr(idBare), NewDir: rootID, OldName: "a", NewName: "b"},
			err: unsupported("rename")},
	}
}

func ptr[T any](v T) *T { return &v }

func xattrCases() []dispatchCase {
	return []dispatchCase{
		{name: "getxattr", req: &fuse.GetxattrRequest{Header: hdr(idDir), Name: "user.x"},
			want: &fuse.GetxattrResponse{Xattr: []byte("value")}, calls: []string{"dir.Getxattr user.x"}},
		{name: "getxattr that fits", req: &fuse.GetxattrRequest{Header: hdr(idDir), Name: "user.x", Size: 5},
			want: &fuse.GetxattrResponse{Xattr: []byte("value")}, calls: []string{"dir.Getxattr user.x"}},
		{name: "getxattr too large", req: &fuse.GetxattrRequest{Header: hdr(idDir), Name: "user.x", Size: 4},
			err: ErrXattrTooLarge, calls: []string{"dir.Getxattr user.x"}},
		{name: "getxattr fails", fail: true, req: &fuse.GetxattrRequest{Header: hdr(idDir), Name: "user.x"},
			err: errFake, calls: []string{"dir.Getxattr user.x"}},
		{name: "getxattr unsupported", req: &fuse.GetxattrRequest{Header: hdr(idBare), Name: "user.x"}, err: unsupported("getxattr")},
		{name: "listxattr", req: &fuse.ListxattrRequest{Header: hdr(idDir)},
			want: &fuse.ListxattrResponse{Xattr: []byte("user.a\x00user.b\x00")}, calls: []string{"dir.Listxattr"}},
		{name: "listxattr too large", req: &fuse.ListxattrRequest{Header: hdr(idDir), Size: 13},
			err: ErrXattrTooLarge, calls: []string{"dir.Listxattr"}},
		{name: "listxattr fails", fail: true, req: &fuse.ListxattrRequest{Header: hdr(idDir)}, err: errFake, calls: []string{"dir.Listxattr"}},
		{name: "listxattr unsupported", req: &fuse.ListxattrRequest{Header: hdr(idBare)}, err: unsupported("listxattr")},
		{name: "setxattr", req: &fuse.SetxattrRequest{Header: hdr(idDir), Name: "user.x", Xattr: []byte("v")},
			calls: []string{"dir.Setxattr user.x=v"}},
		{name: "setxattr fails", fail: true, req: &fuse.SetxattrRequest{Header: hdr(idDir), Name: "user.x", Xattr: []byte("v")},
			err: errFake, calls: []string{"dir.Setxattr user.x=v"}},
		{name: "setxattr unsupported", req: &fuse.SetxattrRequest{Header: hdr(idBare), Name: "user.x"}, err: unsupported("setxattr")},
		{name: "removexattr", req: &fuse.RemovexattrRequest{Header: hdr(idDir), Name: "user.x"}, calls: []string{"dir.Removexattr user.x"}},
		{name: "removexattr fails", fail: true, req: &fuse.RemovexattrRequest{Header: hdr(idDir), Name: "user.x"},
			err: errFake, calls: []string{"dir.Removexattr user.x"}},
		{name: "removexattr unsupported", req: &fuse.RemovexattrRequest{Header: hdr(idBare), Name: "user.x"}, err: unsupported("removexattr")},
	}
}

func forgetCases() []dispatchCase {
	lookupFile := &fuse.LookupRequest{Header: hdr(rootID), Name: "file"}
	return []dispatchCase{
		{name: "forget with references left", before: []fuse.Request{lookupFile},
			req: &fuse.ForgetRequest{Header: hdr(idFile), N: 1}, after: knows(idFile, 1)},
		{name: "forget of the last reference", req: &fuse.ForgetRequest{Header: hdr(idDir), N: 1},
			calls: []string{"dir.Forget"}, after: func(t *testing.T, s *Server) {
				knows(idDir, 0)(t, s)
				if _, err := s.dispatch(context.Background(), &fuse.GetattrRequest{Header: hdr(idDir)}); !errors.Is(err, ErrStale) {
					t.Errorf("getattr of a forgotten node: %v, want ErrStale", err)
				}
			}},
		{name: "forget of more than the references", req: &fuse.ForgetRequest{Header: hdr(idDir), N: 5},
			calls: []string{"dir.Forget"}, after: knows(idDir, 0)},
		{name: "forget of an unknown node", req: &fuse.ForgetRequest{Header: hdr(99), N: 1}},
		{name: "forget of the root", req: &fuse.ForgetRequest{Header: hdr(rootID), N: 1}, after: knows(rootID, 1)},
		{name: "batch forget", before: []fuse.Request{lookupFile},
			req:   &fuse.BatchForgetRequest{Forget: []fuse.BatchForgetItem{{NodeID: idDir, N: 1}, {NodeID: idFile, N: 1}, {NodeID: 99, N: 1}}},
			calls: []string{"dir.Forget"}, after: func(t *testing.T, s *Server) {
				knows(idDir, 0)(t, s)
				knows(idFile, 1)(t, s)
			}},
	}
}

func handleCases() []dispatchCase {
	return []dispatchCase{
		{name: "open", req: &fuse.OpenRequest{Header: hdr(idFile)},
			want: &fuse.OpenResponse{Handle: hNext, Flags: fuse.OpenDirectIO}, calls: []string{"file.Open"},
			after: func(t *testing.T, s *Server) {
				if sh, ok := s.handles.get(hNext); !ok || reflect.TypeOf(sh.handle) != reflect.TypeFor[*fakeHandle]() {
					t.Errorf("handle %d is %#v, want the *fakeHandle of Open", hNext, sh)
				}
			}},
		{name: "open of a node that is its handle", req: &fuse.OpenRequest{Header: hdr(idBare)},
			want: &fuse.OpenResponse{Handle: hNext}, after: func(t *testing.T, s *Server) {
				bare, _ := s.nodes.get(idBare)
				if sh, ok := s.handles.get(hNext); !ok || sh.handle != bare.node {
					t.Errorf("handle %d is %#v, want the node", hNext, sh)
				}
			}},
		{name: "open fails", fail: true, req: &fuse.OpenRequest{Header: hdr(idFile)}, err: errFake,
			calls: []string{"file.Open"}, after: holds(hNext, false)},
		{name: "open of an unknown node", req: &fuse.OpenRequest{Header: hdr(99)}, err: ErrStale},
		{name: "write", req: &fuse.WriteRequest{Header: hdr(idFile), Handle: hFile, Data: []byte("hi"), Offset: 3},
			want: &fuse.WriteResponse{Size: 2}, calls: []string{`file.Write "hi" at 3`}},
		{name: "write fails", fail: true, req: &fuse.WriteRequest{Header: hdr(idFile), Handle: hFile, Data: []byte("hi")},
			err: errFake, calls: []string{`file.Write "hi" at 0`}},
		{name: "write to an unknown handle", req: &fuse.WriteRequest{Header: hdr(idFile), Handle: 99}, err: ErrStale},
		{name: "write unsupported", req: &fuse.WriteRequest{Header: hdr(idDir), Handle: hDir}, err: unsupported("write")},
		{name: "flush", req: &fuse.FlushRequest{Header: hdr(idFile), Handle: hFile}, calls: []string{"file.Flush"}},
		{name: "flush fails", fail: true, req: &fuse.FlushRequest{Header: hdr(idFile), Handle: hFile}, err: errFake, calls: []string{"file.Flush"}},
		{name: "flush of a handle without Flush", req: &fuse.FlushRequest{Header: hdr(idDir), Handle: hDir}},
		{name: "flush of an unknown handle", req: &fuse.FlushRequest{Header: hdr(idFile), Handle: 99}, err: ErrStale},
		{name: "release", req: &fuse.ReleaseRequest{Header: hdr(idFile), Handle: hFile},
			calls: []string{"file.Release"}, after: holds(hFile, false)},
		{name: "release fails, and the handle is gone", fail: true, req: &fuse.ReleaseRequest{Header: hdr(idFile), Handle: hFile},
			err: errFake, calls: []string{"file.Release"}, after: holds(hFile, false)},
		{name: "release of a handle without Release", req: &fuse.ReleaseRequest{Header: hdr(idDir), Handle: hDir, Dir: true},
			after: holds(hDir, false)},
		{name: "release of an unknown handle", req: &fuse.ReleaseRequest{Header: hdr(idFile), Handle: 99}, err: ErrStale},
	}
}

// readData checks a READ's response: a *readReply with data want.
func readData(want []byte) func(*testing.T, any) {
	return func(t *testing.T, resp any) {
		t.Helper()
		rr, ok := resp.(*readReply)
		if !ok {
			t.Fatalf("response %#v, want a *readReply", resp)
		}
		if string(rr.Data) != string(want) {
			t.Errorf("read %q, want %q", rr.Data, want)
		}
		if rr.buf == nil || cap(*rr.buf) < len(want) || len(rr.Data) > 0 && &(*rr.buf)[:1][0] != &rr.Data[0] {
			t.Error("the data is not in the buffer respond gives back")
		}
	}
}

func readCases() []dispatchCase {
	nine := fuse.AppendDirent(nil, fuse.Dirent{Inode: 9, Type: fuse.DT_File, Name: "nine"})
	dirents := fuse.AppendDirent(nine, fuse.Dirent{Inode: inodeOf("dir", "sub"), Type: fuse.DT_Dir, Name: "sub"})
	readdir := func(off int) *fuse.ReadRequest {
		return &fuse.ReadRequest{Header: hdr(idDir), Handle: hDir, Dir: true, Offset: int64(off), Size: 4096}
	}
	return []dispatchCase{
		{name: "read", req: &fuse.ReadRequest{Header: hdr(idFile), Handle: hFile, Offset: 6, Size: 64},
			check: readData([]byte("world")), calls: []string{"file.Read 6+64"}},
		{name: "read short of the end", req: &fuse.ReadRequest{Header: hdr(idFile), Handle: hFile, Size: 5},
			check: readData([]byte("hello")), calls: []string{"file.Read 0+5"}},
		{name: "read fails", fail: true, req: &fuse.ReadRequest{Header: hdr(idFile), Handle: hFile, Size: 5},
			err: errFake, calls: []string{"file.Read 0+5"}},
		{name: "read of an unknown handle", req: &fuse.ReadRequest{Header: hdr(idFile), Handle: 99, Size: 5}, err: ErrStale},
		{name: "read unsupported", req: &fuse.ReadRequest{Header: hdr(idDir), Handle: hDir, Size: 5}, err: unsupported("read")},
		{name: "readdir", req: readdir(0), check: readData(dirents), calls: []string{"dir.ReadDirAll"}},
		{name: "readdir goes on from the listing", before: []fuse.Request{readdir(0)},
			req: readdir(len(nine)), check: readData(dirents[len(nine):])},
		{name: "readdir from 0 lists again", before: []fuse.Request{readdir(0)},
			req: readdir(0), check: readData(dirents), calls: []string{"dir.ReadDirAll"}},
		{name: "readdir fails", fail: true, req: readdir(0), err: errFake, calls: []string{"dir.ReadDirAll"}},
		{name: "readdir unsupported", req: &fuse.ReadRequest{Header: hdr(idFile), Handle: hFile, Dir: true, Size: 5},
			err: unsupported("readdir")},
	}
}

func otherCases() []dispatchCase {
	var intr context.Context
	return []dispatchCase{
		// A request is cancelled by an INTERRUPT while its caller is
		// being killed only: a local disk never fails a call with
		// EINTR, and Go programs get signals all the time.
		{name: "interrupt of a dying caller's request", setup: func(s *Server) {
			s.inflight.dying = func(pid uint32) bool { return pid == 666 }
			intr, _ = s.inflight.begin(7, 666)
		}, req: &fuse.InterruptRequest{Header: hdr(0), IntrID: 7}, after: func(t *testing.T, s *Server) {
			if intr.Err() == nil {
				t.Error("the interrupted request's context is not cancelled")
			}
		}},
		{name: "interrupt of a living caller's request", setup: func(s *Server) {
			s.inflight.dying = func(pid uint32) bool { return pid == 666 }
			intr, _ = s.inflight.begin(9, 1234)
		}, req: &fuse.InterruptRequest{Header: hdr(0), IntrID: 9}, after: func(t *testing.T, s *Server) {
			if intr.Err() != nil {
				t.Error("a signal that does not kill the caller cancelled its request")
			}
		}},
		{name: "interrupt of a request not in flight", req: &fuse.InterruptRequest{Header: hdr(0), IntrID: 8}, err: ErrNotInFlight},
		{name: "destroy", req: &fuse.DestroyRequest{}, calls: []string{"fs.Destroy"}},
		{name: "poll", req: &fuse.PollRequest{Header: hdr(idFile)}, err: ErrNotImplemented},
		{name: "fallocate", req: &fuse.FAllocateRequest{Header: hdr(idFile)}, err: ErrNotImplemented},
		{name: "lock", req: &fuse.LockRequest{Header: hdr(idFile)}, err: ErrNotImplemented},
		{name: "an unknown opcode", req: &fuse.UnrecognizedRequest{Header: hdr(idFile), Opcode: 4242}, err: ErrNotImplemented},
	}
}

// opName names operations as the metrics do, directories apart.
func TestOpName(t *testing.T) {
	for _, tt := range []struct {
		req  fuse.Request
		want string
	}{
		{&fuse.LookupRequest{}, "lookup"},
		{&fuse.ReadRequest{}, "read"},
		{&fuse.ReadRequest{Dir: true}, "readdir"},
		{&fuse.OpenRequest{Dir: true}, "opendir"},
		{&fuse.ReleaseRequest{Dir: true}, "releasedir"},
		{&fuse.FsyncRequest{}, "fsync"},
		{&fuse.BatchForgetRequest{}, "batchforget"},
		{&fuse.UnrecognizedRequest{}, "unrecognized"},
	} {
		if got := opName(tt.req); got != tt.want {
			t.Errorf("opName(%T) = %q, want %q", tt.req, got, tt.want)
		}
	}
}
