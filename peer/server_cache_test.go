package peer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestServerWithoutOpenat2 runs the jail's and the requests' tests with
// paths resolved by os.Root, as on kernels without openat2: the same
// answers, the same refusals.
func TestServerWithoutOpenat2(t *testing.T) {
	jailNoOpenat2 = true
	t.Cleanup(func() { jailNoOpenat2 = false })
	j, err := jailOpen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if j.beneath {
		t.Fatal("jailNoOpenat2 is ignored")
	}
	j.close()
	for name, test := range map[string]func(*testing.T){
		"JailEscapes":         TestServerJailEscapes,
		"JailSymlinksInside":  TestServerJailSymlinksInside,
		"SpecialFiles":        TestServerSpecialFiles,
		"NamespaceOps":        TestServerNamespaceOps,
		"Transcript":          TestServerTranscript,
		"PutGetSizes":         TestServerPutGetSizes,
		"GetRanges":           TestServerGetRanges,
		"PutRefusals":         TestServerPutRefusals,
		"PutConditional":      TestServerPutConditional,
		"SetattrUnreadable":   TestServerSetattrUnreadable,
		"ReadsSeeEveryChange": TestServerReadsSeeEveryChange,
	} {
		t.Run(name, test)
	}
}

// TestJailOpenat2 checks that this machine takes the openat2 path, so the
// other tests cover it (a kernel without it, or a seccomp filter, would
// silently test os.Root twice).
func TestJailOpenat2(t *testing.T) {
	j, err := jailOpen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if !j.beneath {
		t.Skip("openat2(RESOLVE_BENEATH) is not available here: only the os.Root path is tested")
	}
}

// TestServerReadsSeeEveryChange: GETs reuse open descriptors, yet every
// change is seen by the next GET: writes through this server (PUT,
// SETATTR, DELETE, RENAME, RMDIR), and changes made directly in the export
// in place or by replacing or deleting the file.
func TestServerReadsSeeEveryChange(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "f.txt", "one")
	srvWriteFile(t, dir, "d/g.txt", "in d")
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	expect := func(name, want string) {
		t.Helper()
		got := c.roundTrip("GET " + name)
		if !strings.HasPrefix(want, "GET FAIL") {
			if got != fmt.Sprintf("GET OK %d", len(want)) {
				t.Fatalf("GET %s: %q, want %d bytes", name, got, len(want))
			}
			b := make([]byte, len(want))
			c.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
			if _, err := c.r.Read(b); err != nil && len(want) > 0 {
				t.Fatal(err)
			}
			got = string(b)
		}
		if got != want {
			t.Fatalf("GET %s: %q, want %q", name, got, want)
		}
	}
	p := filepath.Join(dir, "f.txt")
	expect("f.txt", "one")
	if r := c.put("f.txt", []byte("two!")); !strings.HasPrefix(r, "PUT DONE 4 ") {
		t.Fatal(r)
	}
	expect("f.txt", "two!")
	// In place, behind the server's back: seen through the same descriptor.
	if err := os.WriteFile(p, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect("f.txt", "three")
	// Replaced by a rename behind the server's back: the old file has no
	// name left, so the path is opened again.
	srvWriteFile(t, dir, "new.tmp", "four")
	if err := os.Rename(filepath.Join(dir, "new.tmp"), p); err != nil {
		t.Fatal(err)
	}
	expect("f.txt", "four")
	if got := c.roundTrip("SETATTR f.txt size=2"); !strings.HasPrefix(got, "SETATTR OK f 0644 2 ") {
		t.Fatal(got)
	}
	expect("f.txt", "fo")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expect("f.txt", `GET FAIL notfound no such file "f.txt"`)
	srvWriteFile(t, dir, "f.txt", "five")
	expect("f.txt", "five")
	if got := c.roundTrip("DELETE f.txt"); got != "DELETE OK" {
		t.Fatal(got)
	}
	expect("f.txt", `GET FAIL notfound no such file "f.txt"`)

	// A directory renamed or removed through the server takes the files
	// under it along at once.
	expect("d/g.txt", "in d")
	if got := c.roundTrip("RENAME d e"); got != "RENAME OK" {
		t.Fatal(got)
	}
	expect("d/g.txt", `GET FAIL notfound no such file "d/g.txt"`)
	expect("e/g.txt", "in d")
	if got := c.roundTrip("RENAME e/g.txt top.txt"); got != "RENAME OK" {
		t.Fatal(got)
	}
	expect("e/g.txt", `GET FAIL notfound no such file "e/g.txt"`)
	if got := c.roundTrip("RMDIR e"); got != "RMDIR OK" {
		t.Fatal(got)
	}
	expect("top.txt", "in d")
}

// TestServerOpenFilesBounded: reading many files holds at most
// srvFileEntries descriptors, and Close releases every one of them.
func TestServerOpenFilesBounded(t *testing.T) {
	dir := t.TempDir()
	before := srvOpenFDs(t)
	s, addr := srvTestServe(t, ServerOptions{Export: dir})
	const n = 3 * srvFileEntries
	for i := range n {
		srvWriteFile(t, dir, fmt.Sprintf("f%03d", i), fmt.Sprint(i))
	}
	c, err := Dial(context.Background(), addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		var buf bytes.Buffer
		if _, err := c.Get(context.Background(), fmt.Sprintf("f%03d", i), 0, -1, &buf, nil); err != nil || buf.String() != fmt.Sprint(i) {
			t.Fatalf("GET f%03d: %q, %v", i, buf.String(), err)
		}
	}
	s.files.mu.Lock()
	held := len(s.files.m)
	s.files.mu.Unlock()
	if held > srvFileEntries {
		t.Fatalf("%d descriptors cached, limit %d", held, srvFileEntries)
	}
	// Entries expire on their own: a file deleted behind the server's
	// back does not keep its space.
	srvEventually(t, "the cache to empty", func() bool {
		s.files.mu.Lock()
		defer s.files.mu.Unlock()
		return len(s.files.m) == 0
	})
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := srvOpenFDs(t); after > before {
		t.Fatalf("%d descriptors open after Close, %d before the server", after, before)
	}
}

// srvOpenFDs counts this process's open file descriptors.
func srvOpenFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(es)
}

// TestServerSetattrUnreadable: SETATTR works on a file the server cannot
// open (mode 0), so a mode taken away can be given back.
func TestServerSetattrUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root opens anything")
	}
	dir := t.TempDir()
	srvWriteFile(t, dir, "f.txt", "data")
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	if got := c.roundTrip("SETATTR f.txt mode=0"); !strings.HasPrefix(got, "SETATTR OK f 00 4 ") {
		t.Fatal(got)
	}
	if got := c.roundTrip("SETATTR f.txt mode=0640 mtime=1000000000"); got != "SETATTR OK f 0640 4 1000000000" {
		t.Fatal(got)
	}
	if got := string(c.get("f.txt")); got != "data" {
		t.Fatalf("GET: %q", got)
	}
}

// TestServerSetattrThroughLink: SETATTR on a link inside the export
// changes its target, once, through one descriptor; the link stays.
func TestServerSetattrThroughLink(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "f.txt", "0123456789")
	if err := os.Symlink("f.txt", filepath.Join(dir, "ln")); err != nil {
		t.Fatal(err)
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	if got := c.roundTrip("SETATTR ln size=3 mode=0600 mtime=2000000000"); got != "SETATTR OK f 0600 3 2000000000" {
		t.Fatal(got)
	}
	fi, err := os.Stat(filepath.Join(dir, "f.txt"))
	if err != nil || fi.Size() != 3 || fi.Mode().Perm() != 0o600 || fi.ModTime().UnixNano() != 2000000000 {
		t.Fatalf("f.txt: %v, %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "ln")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("ln: %v, %v", fi, err)
	}
	if got := c.roundTrip("SETATTR d size=0"); got != `SETATTR FAIL notfound no such file or directory "d"` {
		t.Fatal(got)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := c.roundTrip("SETATTR d size=0"); got != `SETATTR FAIL isdir cannot set the size of directory "d"` {
		t.Fatal(got)
	}
	if got := c.roundTrip("SETATTR d mode=0700"); !strings.HasPrefix(got, "SETATTR OK d 0700 ") {
		t.Fatal(got)
	}
	if got := c.roundTrip("SETATTR . mtime=3000000000"); !strings.HasPrefix(got, "SETATTR OK d ") || !strings.HasSuffix(got, " 3000000000") {
		t.Fatal(got)
	}
}

// TestServerPutModes: a new file is 0644 whatever the server's umask, a
// replaced one keeps its bits but setuid (see TestSetuidFromClients).
func TestServerPutModes(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dir := t.TempDir()
	srvWriteFile(t, dir, "suid", "x")
	if err := os.Chmod(filepath.Join(dir, "suid"), os.ModeSetuid|0o750); err != nil {
		t.Fatal(err)
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	for name, want := range map[string]os.FileMode{"new": 0o644, "suid": 0o750} {
		if r := c.put(name, []byte("data")); !strings.HasPrefix(r, "PUT DONE 4 ") {
			t.Fatal(r)
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}
}

// TestServerDeleteKinds: DELETE removes files and links (not what they
// name) and refuses directories, special files and escaping links.
func TestServerDeleteKinds(t *testing.T) {
	export, outside := srvJailFixture(t)
	_, addr := srvTestServe(t, ServerOptions{Export: export})
	c := srvTestConnect(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"DELETE sub", `DELETE FAIL isdir "sub" is a directory (use RMDIR)`},
		{"DELETE indir", `DELETE FAIL isdir "indir" is a directory (use RMDIR)`},
		{"DELETE .", `DELETE FAIL isdir "." is a directory (use RMDIR)`},
		{"DELETE nothere", `DELETE FAIL notfound no such file or directory "nothere"`},
		{"DELETE nodir/x", `DELETE FAIL notfound no such file or directory "nodir/x"`},
		{"DELETE hello.txt/x", `DELETE FAIL notdir "hello.txt/x" (or one of its parents) is not a directory`},
		{"DELETE outdir/secret.txt", `DELETE FAIL denied path escapes the export: "outdir/secret.txt" leads outside through a symbolic link`},
		{"DELETE sub/sneaky", `DELETE FAIL denied path escapes the export: "sub/sneaky" leads outside through a symbolic link`},
		{"DELETE in", "DELETE OK"},
		{"DELETE indir/inner.txt", "DELETE OK"},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(export, "hello.txt")); err != nil {
		t.Errorf("the link's target went with it: %v", err)
	}
	if _, err := os.Stat(filepath.Join(export, "sub/inner.txt")); !os.IsNotExist(err) {
		t.Errorf("sub/inner.txt: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret.txt")); err != nil {
		t.Errorf("outside: %v", err)
	}
}

// A descriptor opened before a write request's invalidation (a GET racing
// with the write) is used once and not cached: the next GET opens anew.
func TestServerFilesRaceWithInvalidate(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "f", "old")
	var c srvFiles
	defer c.close()
	open := func() int {
		fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	now := time.Now()
	gen := c.generation()
	fd := open()
	c.invalidate("f") // a write finished between the open and add
	f := c.add("f", fd, now, gen)
	c.release(f)
	if got := c.get("f", now); got != nil {
		c.release(got)
		t.Fatal("a descriptor opened before an invalidation was cached")
	}
	f = c.add("f", open(), now, c.generation())
	c.release(f)
	if got := c.get("f", now); got == nil {
		t.Fatal("a descriptor opened after the last invalidation was not cached")
	} else {
		c.release(got)
	}
}
