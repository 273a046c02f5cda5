package peer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

func TestServerNamespaceOps(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "a.txt", "aaa")
	srvWriteFile(t, dir, "b.txt", "bbbbbb")
	srvWriteFile(t, dir, "full/x.txt", "x")
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	mtime := time.Unix(1600000000, 5).UnixNano()
	for _, tc := range []struct{ req, want string }{
		// RENAME replaces an existing target atomically.
		{"RENAME a.txt b.txt", "RENAME OK"},
		{"RENAME a.txt c.txt", `RENAME FAIL notfound cannot rename "a.txt" to "c.txt": no such file or directory`},
		{"RENAME b.txt nodir/c.txt", `RENAME FAIL notfound cannot rename "b.txt" to "nodir/c.txt": no such file or directory`},
		{"RENAME . x", `RENAME FAIL denied cannot rename the export root`},
		{"RENAME b.txt", `RENAME FAIL invalid usage: RENAME <from> <to>`},
		// MKDIR
		{"MKDIR d", "MKDIR OK"},
		{"MKDIR d", `MKDIR FAIL exists "d" already exists`},
		{"MKDIR private 0700", "MKDIR OK"},
		{"MKDIR nodir/d", `MKDIR FAIL notfound no such file or directory "nodir/d"`},
		{"MKDIR . ", `MKDIR FAIL exists the export root already exists`},
		{"MKDIR e 9999", `MKDIR FAIL invalid mode "9999" is not an octal permission (0000-7777)`},
		// RENAME refuses as rename(2) does.
		{"RENAME d full", `RENAME FAIL notempty cannot rename "d" to "full": directory not empty`},
		{"RENAME b.txt d", `RENAME FAIL isdir cannot rename "b.txt" to "d": is a directory`},
		{"RENAME d b.txt", `RENAME FAIL notdir cannot rename "d" to "b.txt": not a directory`},
		{"RENAME d d/sub", `RENAME FAIL invalid cannot rename "d" to "d/sub": invalid argument`},
		// RMDIR
		{"RMDIR full", `RMDIR FAIL notempty directory "full" is not empty`},
		{"RMDIR b.txt", `RMDIR FAIL notdir "b.txt" is not a directory (use DELETE)`},
		{"RMDIR nope", `RMDIR FAIL notfound no such file or directory "nope"`},
		{"RMDIR .", `RMDIR FAIL denied cannot remove the export root`},
		{"RMDIR d", "RMDIR OK"},
		// DELETE
		{"DELETE full", `DELETE FAIL isdir "full" is a directory (use RMDIR)`},
		{"DELETE nope", `DELETE FAIL notfound no such file or directory "nope"`},
		{"DELETE full/x.txt", "DELETE OK"},
		{"RMDIR full", "RMDIR OK"},
		// SETATTR
		{fmt.Sprintf("SETATTR b.txt size=2 mode=0600 mtime=%d", mtime), fmt.Sprintf("SETATTR OK f 0600 2 %d", mtime)},
		{"SETATTR b.txt size=10", "SETATTR OK f 0600 10 "}, // a want ending in a space is a prefix
		{"SETATTR private size=1", `SETATTR FAIL isdir cannot set the size of directory "private"`},
		{"SETATTR nope mode=0644", `SETATTR FAIL notfound no such file or directory "nope"`},
		{"SETATTR b.txt colour=red", `SETATTR FAIL invalid unknown attribute "colour" (want size, mode or mtime)`},
		{"STAT gone", `STAT FAIL notfound no such file or directory "gone"`},
		{"STATFS x", `STATFS FAIL invalid usage: STATFS`},
	} {
		got := c.roundTrip(tc.req)
		if got != tc.want && !(strings.HasSuffix(tc.want, " ") && strings.HasPrefix(got, tc.want)) {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "b.txt")); string(b) != "aa\x00\x00\x00\x00\x00\x00\x00\x00" {
		t.Errorf("b.txt = %q, want a.txt's content truncated to 2, extended to 10", b)
	}
	for name, want := range map[string]os.FileMode{"private": 0o700 | os.ModeDir, "b.txt": 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}
	for _, name := range []string{"a.txt", "d", "full"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s still exists: %v", name, err)
		}
	}

	reply, err := peerproto.ParseReply([]byte(c.roundTrip("STATFS")), peerproto.VerbStatfs)
	if err != nil {
		t.Fatal(err)
	}
	sf := reply.(peerproto.StatfsOK)
	if sf.Total <= 0 || sf.Free > sf.Total || sf.Avail > sf.Free {
		t.Errorf("STATFS %+v: want total >= free >= avail, total > 0", sf)
	}
}

func TestServerReadOnly(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "f.txt", "content")
	srvWriteFile(t, dir, "d/g.txt", "g")
	_, addr := srvTestServe(t, ServerOptions{Export: dir, ReadOnly: true})
	c := srvTestConnect(t, addr)
	for _, req := range []string{
		"PUT new.txt 1", "PUT f.txt 1", "DELETE f.txt", "RENAME f.txt g.txt", "MKDIR m",
		"RMDIR d", "SETATTR f.txt mode=0777", "SETATTR f.txt size=0",
	} {
		verb, _, _ := strings.Cut(req, " ")
		if got, want := c.roundTrip(req), verb+" FAIL readonly export is read-only"; got != want {
			t.Errorf("%s: %q, want %q", req, got, want)
		}
	}
	if got := string(c.get("f.txt")); got != "content" {
		t.Errorf("GET on a read-only export: %q", got)
	}
	if got := srvNames(c.list("")); len(got) != 2 {
		t.Errorf("LIST: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f.txt")); string(b) != "content" {
		t.Errorf("f.txt changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.txt")); !os.IsNotExist(err) {
		t.Errorf("new.txt: %v", err)
	}
}

func TestNewServerErrors(t *testing.T) {
	if _, err := NewServer(ServerOptions{}); err == nil {
		t.Error("NewServer without an export succeeded")
	}
	if _, err := NewServer(ServerOptions{Export: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("NewServer on a missing directory succeeded")
	}
	f := srvWriteFile(t, t.TempDir(), "file", "x")
	if _, err := NewServer(ServerOptions{Export: f}); err == nil {
		t.Error("NewServer on a file succeeded")
	}
	s, err := NewServer(ServerOptions{Export: "."})
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(s.Export()) {
		t.Errorf("Export() = %q, want an absolute path", s.Export())
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}
