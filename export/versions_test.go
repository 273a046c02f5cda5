package export

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
)

// verOf returns the ver= word's token of a reply or entry line, failing
// the test if it has none.
func verOf(t *testing.T, line string) string {
	t.Helper()
	for _, w := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(w, "ver="); ok {
			return v
		}
	}
	t.Fatalf("no version token in %q", line)
	return ""
}

// putVer uploads data to name with extra PUT options and returns the reply
// line after the payload (PUT DONE ... or PUT FAIL ...).
func (c *testClient) putVer(name, opts string, data []byte) string {
	c.t.Helper()
	c.send("PUT " + name + " " + strconv.Itoa(len(data)) + " async inline " + opts + "\n")
	if err := c.write(data); err != nil {
		c.t.Fatal(err)
	}
	return c.line()
}

// TestVersionTokensCoarseTimes: on a filesystem with whole-second
// timestamps, two uploads of the same size within one second have the
// same mtime; their version tokens still differ, so a conditional PUT
// that names the older one is refused (an mtime base would let it
// through: the lost update this replaces).
func TestVersionTokensCoarseTimes(t *testing.T) {
	export := testfs.Coarse(t, 32)
	_, addr := testServe(t, Options{Export: export})
	c := testConnect(t, addr)
	c.send("FEATURES attrs\n")
	c.expectPrefix("FEATURES OK")

	sameMtime, mtimeAccepted := 0, 0
	for round := range 100 {
		testfs.SameSecond(200 * time.Millisecond)
		done := c.putVer("f", "", []byte("aaaa"))
		v1 := verOf(t, done)
		mt1 := strings.Fields(done)[3]
		done = c.putVer("f", "ver="+v1, []byte("bbbb"))
		if !strings.HasPrefix(done, "PUT DONE") {
			t.Fatalf("round %d: PUT on the current version: %q", round, done)
		}
		v2 := verOf(t, done)
		mt2 := strings.Fields(done)[3]
		if v1 == v2 {
			t.Fatalf("round %d: two contents share version %s", round, v1)
		}
		// A writer that started from the first version lost the race.
		if got := c.putVer("f", "ver="+v1, []byte("cccc")); !strings.HasPrefix(got, "PUT FAIL conflict") {
			t.Fatalf("round %d: stale conditional PUT: %q, want a conflict", round, got)
		}
		if mt1 == mt2 {
			sameMtime++
			// The same race judged by mtime: accepted, and bbbb is lost.
			if got := c.putVer("f", "base="+mt1, []byte("dddd")); strings.HasPrefix(got, "PUT DONE") {
				mtimeAccepted++
			}
		}
		if got := string(c.get("f")); got != "bbbb" && got != "dddd" {
			t.Fatalf("round %d: content %q", round, got)
		}
	}
	if sameMtime == 0 {
		t.Fatal("no round had two uploads in one second: the test did not exercise coarse timestamps")
	}
	t.Logf("%d of 100 rounds had equal mtimes; an mtime condition let %d stale uploads through", sameMtime, mtimeAccepted)
}

// TestVersionTokenLifecycle: a token is carried by STAT, LIST, SETATTR
// and PUT DONE (only to a client that asked for attribute words); it
// survives a restart of the server and changes of mode and mtime, and
// changes with the content, whoever changes it.
func TestVersionTokenLifecycle(t *testing.T) {
	export := t.TempDir()
	_, addr := testServe(t, Options{Export: export})
	plain := testConnect(t, addr)
	if got := plain.roundTrip("PUT f 0\n"); got != "PUT OK" {
		t.Fatal(got)
	}
	if line := plain.line(); strings.Contains(line, "ver=") {
		t.Errorf("PUT DONE without FEATURES attrs: %q", line)
	}
	if got := plain.roundTrip("STAT f\n"); strings.Contains(got, "ver=") {
		t.Errorf("STAT without FEATURES attrs: %q", got)
	}

	c := testConnect(t, addr)
	c.send("FEATURES attrs\n")
	c.expectPrefix("FEATURES OK")
	v := verOf(t, c.putVer("f", "", []byte("hello")))
	stat := func() string { return verOf(t, c.roundTrip("STAT f\n")) }
	if got := stat(); got != v {
		t.Fatalf("STAT token %s, PUT DONE said %s", got, v)
	}
	c.send("LIST\n")
	c.expectPrefix("LIST OK 1")
	if got := verOf(t, c.line()); got != v {
		t.Errorf("LIST token %s, want %s", got, v)
	}
	if got := verOf(t, c.roundTrip("SETATTR f mode=0600\n")); got != v {
		t.Errorf("after chmod: %s, want %s", got, v)
	}
	if got := verOf(t, c.roundTrip("SETATTR f mtime=1000000000000000000\n")); got != v {
		t.Errorf("after a new mtime: %s, want %s", got, v)
	}
	if got := c.roundTrip("RENAME f g\n"); got != "RENAME OK" {
		t.Fatal(got)
	}
	if got := verOf(t, c.roundTrip("STAT g\n")); got != v {
		t.Errorf("after a rename: %s, want %s", got, v)
	}

	// A new server on the export (the peer restarted) knows it from the
	// file's extended attribute.
	s2, addr2 := testServe(t, Options{Export: export})
	if s2.vers.noXattr.Load() {
		t.Skip("the temporary directory's filesystem has no user extended attributes")
	}
	c2 := testConnect(t, addr2)
	c2.send("FEATURES attrs\n")
	c2.expectPrefix("FEATURES OK")
	if got := verOf(t, c2.roundTrip("STAT g\n")); got != v {
		t.Errorf("after a restart: %s, want %s", got, v)
	}

	// The content changed through the protocol: a new token.
	if got := verOf(t, c2.roundTrip("SETATTR g size=2\n")); got == v {
		t.Error("truncation kept the token")
	}
	v = verOf(t, c2.roundTrip("STAT g\n"))
	// Changed behind the server's back: a new token too.
	if err := os.WriteFile(filepath.Join(export, "g"), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := verOf(t, c2.roundTrip("STAT g\n")); got == v {
		t.Error("a write behind the server's back kept the token")
	}
}

// TestVersionTokensWithoutXattrs: where the export's filesystem keeps no
// extended attributes, tokens live in memory; uploads still get distinct
// ones, and a file whose ctime moved without the server's doing (maybe a
// new file on a reused inode number) gets a new one.
func TestVersionTokensWithoutXattrs(t *testing.T) {
	export := t.TempDir()
	s, addr := testServe(t, Options{Export: export})
	s.vers.noXattr.Store(true)
	c := testConnect(t, addr)
	c.send("FEATURES attrs\n")
	c.expectPrefix("FEATURES OK")
	v1 := verOf(t, c.putVer("f", "", []byte("aaaa")))
	v2 := verOf(t, c.putVer("f", "ver="+v1, []byte("bbbb")))
	if v1 == v2 {
		t.Fatal("two uploads share a token")
	}
	if got := verOf(t, c.roundTrip("STAT f\n")); got != v2 {
		t.Fatalf("STAT %s, want %s", got, v2)
	}
	if _, err := os.Stat(filepath.Join(export, "f")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a ctime of its own
	if err := os.Chmod(filepath.Join(export, "f"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := verOf(t, c.roundTrip("STAT f\n")); got == v2 {
		t.Error("an unexplained ctime change kept an unconfirmable token")
	}
}

// TestVersionTokenKeptByRenameWithoutXattrs: where the export's
// filesystem keeps no extended attributes (FAT, exFAT, many NAS shares),
// a RENAME through the protocol keeps the token too, also once the
// server has seen the file's ctime before it: a writer that uploaded the
// file and renamed it (an editor's save) can replace it on that version.
func TestVersionTokenKeptByRenameWithoutXattrs(t *testing.T) {
	s, addr := testServe(t, Options{Export: t.TempDir()})
	s.vers.noXattr.Store(true)
	c := testConnect(t, addr)
	c.send("FEATURES attrs\n")
	c.expectPrefix("FEATURES OK")
	v := verOf(t, c.putVer("tmp", "", []byte("aaaa")))
	if got := verOf(t, c.roundTrip("STAT tmp\n")); got != v {
		t.Fatalf("STAT %s, want %s", got, v)
	}
	time.Sleep(10 * time.Millisecond) // a ctime of its own for the rename
	if got := c.roundTrip("RENAME tmp f\n"); got != "RENAME OK" {
		t.Fatal(got)
	}
	if got := verOf(t, c.roundTrip("STAT f\n")); got != v {
		t.Errorf("after a rename: %s, want %s", got, v)
	}
	if got := c.putVer("f", "ver="+v, []byte("bbbb")); !strings.HasPrefix(got, "PUT DONE") {
		t.Errorf("PUT on the renamed file's version: %q", got)
	}
}

// TestDerivedTokenKeptByRename: a file the peer's owner put in the
// export (its token derived from its attributes, ctime among them) keeps
// its token across a RENAME through the protocol, which moves the ctime
// only: a client that renamed it (an editor's save, written behind) can
// replace it on the version it knew.
func TestDerivedTokenKeptByRename(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("the owner's"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := testConnect(t, addr)
	c.send("FEATURES attrs\n")
	c.expectPrefix("FEATURES OK")
	v := verOf(t, c.roundTrip("STAT a\n"))
	time.Sleep(10 * time.Millisecond) // a ctime of its own for the rename
	if got := c.roundTrip("RENAME a b\n"); got != "RENAME OK" {
		t.Fatal(got)
	}
	if got := verOf(t, c.roundTrip("STAT b\n")); got != v {
		t.Fatalf("after a rename: %s, want %s", got, v)
	}
	if got := c.putVer("b", "ver="+v, []byte("replaced")); !strings.HasPrefix(got, "PUT DONE") {
		t.Errorf("PUT on the renamed file's version: %q", got)
	}
}

// TestPutVerConditions: a conditional PUT on a version token refuses a
// file that was removed, and the token must be well formed.
func TestPutVerConditions(t *testing.T) {
	_, addr := testServe(t, Options{})
	c := testConnect(t, addr)
	if got := c.putVer("gone", "ver=0123456789abcdef", []byte("x")); !strings.HasPrefix(got, "PUT FAIL conflict") {
		t.Errorf("ver= on a missing file: %q", got)
	}
	c.send("PUT x 1 ver=XYZ\n")
	c.expectPrefix("PUT FAIL invalid")
	if _, err := peerproto.ParseEntry([]byte("f 0644 1 1 x ver=zz")); err == nil {
		t.Error("a bad token parsed")
	}
}
