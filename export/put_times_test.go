package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

// TestPutDoneTimes: on a posix connection, PUT DONE gives the stored
// file's attributes as they are under its name afterwards (the rename
// into place and the version token's record moved its ctime), and its
// directory's times, which a new file or content renamed over the file
// moved: a client shows what later STATs will say. A plain connection
// gets the seed's reply (and ver=) only.
func TestPutDoneTimes(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "d/linked", "old")
	if err := os.Link(filepath.Join(dir, "d/linked"), filepath.Join(dir, "d/other-name")); err != nil {
		t.Fatal(err)
	}
	before := lstatT(t, filepath.Join(dir, "d"))
	for _, tc := range []struct{ what, name, req string }{
		{"a new file", "d/new", "PUT d/new 5\n"},
		{"new content renamed over a file", "d/new", "PUT d/new 5\n"},
		{"inline and async", "d/new", "PUT d/new 5 async inline\n"},
		{"in place (the file has another name)", "d/linked", "PUT d/linked 5\n"},
	} {
		c.send(tc.req)
		if !strings.Contains(tc.req, "inline") {
			c.expect("PUT OK")
		}
		if err := c.write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		line := c.line()
		reply, err := peerproto.ParseReply([]byte(line), peerproto.VerbPut)
		if err != nil {
			t.Fatalf("%s: %q: %v", tc.what, line, err)
		}
		done := reply.(peerproto.PutDone)
		st, dst := lstatT(t, filepath.Join(dir, tc.name)), lstatT(t, filepath.Join(dir, "d"))
		a := done.Attrs
		if a.Has&(peerproto.AttrIno|peerproto.AttrCtime|peerproto.AttrNlink) != peerproto.AttrIno|peerproto.AttrCtime|peerproto.AttrNlink {
			t.Fatalf("%s: PUT DONE without the file's attributes: %q", tc.what, line)
		}
		if a.Ino != st.Ino || a.Ctime != st.Ctim.Nano() || a.Nlink != uint64(st.Nlink) || done.Mtime != st.Mtim.Nano() {
			t.Errorf("%s: PUT DONE says ino %d ctime %d nlink %d mtime %d; the file has %d %d %d %d",
				tc.what, a.Ino, a.Ctime, a.Nlink, done.Mtime, st.Ino, st.Ctim.Nano(), st.Nlink, st.Mtim.Nano())
		}
		if !done.DirTimes || done.DirMtime != dst.Mtim.Nano() || done.DirCtime != dst.Ctim.Nano() {
			t.Errorf("%s: PUT DONE says the directory's times are %v %d %d; it has %d %d",
				tc.what, done.DirTimes, done.DirMtime, done.DirCtime, dst.Mtim.Nano(), dst.Ctim.Nano())
		}
		if !done.PreDirTimes || done.PreDirMtime != before.Mtim.Nano() || done.PreDirCtime != before.Ctim.Nano() {
			t.Errorf("%s: PUT DONE says the directory's times before it were %v %d %d; they were %d %d",
				tc.what, done.PreDirTimes, done.PreDirMtime, done.PreDirCtime, before.Mtim.Nano(), before.Ctim.Nano())
		}
		before = dst
	}

	plain := testConnect(t, addr)
	line := plain.put("d/plain", []byte("x"))
	if !strings.HasPrefix(line, "PUT DONE 1 ") || strings.Contains(line, "=") {
		t.Errorf("PUT on a plain connection: %q, want the seed's PUT DONE <size> <mtime>", line)
	}
}

// TestSetattrReplyCtimeFinal: a SETATTR's reply gives the ctime the file
// keeps, after the version token's record (an extended attribute) that
// follows a new mtime or size.
func TestSetattrReplyCtimeFinal(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	writeFile(t, dir, "f", "content")
	for _, req := range []string{"SETATTR f mtime=1600000000000000000", "SETATTR f size=2", "SETATTR f mode=0600"} {
		line := c.roundTrip(req)
		reply, err := peerproto.ParseReply([]byte(line), peerproto.VerbSetattr)
		if err != nil {
			t.Fatalf("%s: %q: %v", req, line, err)
		}
		e := reply.(peerproto.SetattrOK).Entry
		if st := lstatT(t, filepath.Join(dir, "f")); e.Ctime != st.Ctim.Nano() {
			t.Errorf("%s: the reply's ctime %d, the file's %d", req, e.Ctime, st.Ctim.Nano())
		}
	}
}
