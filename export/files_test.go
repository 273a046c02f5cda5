package export

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peer"
	"golang.org/x/sys/unix"
)

// TestServerReadsSeeEveryChange: GETs reuse open descriptors, yet every
// change is seen by the next GET: writes through this server (PUT,
// SETATTR, DELETE, RENAME, RMDIR), and changes made directly in the export
// in place or by replacing or deleting the file.
func TestServerReadsSeeEveryChange(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f.txt", "one")
	writeFile(t, dir, "d/g.txt", "in d")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	expect := func(name, want string) {
		t.Helper()
		got := c.roundTrip("GET " + name)
		if !strings.HasPrefix(want, "GET FAIL") {
			if got != fmt.Sprintf("GET OK %d", len(want)) {
				t.Fatalf("GET %s: %q, want %d bytes", name, got, len(want))
			}
			b := make([]byte, len(want))
			c.nc.SetReadDeadline(time.Now().Add(testTimeout))
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
	writeFile(t, dir, "new.tmp", "four")
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
	writeFile(t, dir, "f.txt", "five")
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
// fileEntries descriptors, and Close releases every one of them.
func TestServerOpenFilesBounded(t *testing.T) {
	dir := t.TempDir()
	before := openFDs(t)
	s, addr := testServe(t, Options{Export: dir})
	const n = 3 * fileEntries
	for i := range n {
		writeFile(t, dir, fmt.Sprintf("f%03d", i), fmt.Sprint(i))
	}
	c, err := peer.Dial(context.Background(), addr, peer.ClientOptions{})
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
	if held > fileEntries {
		t.Fatalf("%d descriptors cached, limit %d", held, fileEntries)
	}
	// Entries expire on their own: a file deleted behind the server's
	// back does not keep its space.
	eventually(t, "the cache to empty", func() bool {
		s.files.mu.Lock()
		defer s.files.mu.Unlock()
		return len(s.files.m) == 0
	})
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after > before {
		t.Fatalf("%d descriptors open after Close, %d before the server", after, before)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(es)
}

// A descriptor opened before a write request's invalidation (a GET racing
// with the write) is used once and not cached: the next GET opens anew.
func TestServerFilesRaceWithInvalidate(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "old")
	var c openFiles
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
	f := c.add("f", fd, false, now, gen)
	c.release(f)
	if got := c.get("f", false, now); got != nil {
		c.release(got)
		t.Fatal("a descriptor opened before an invalidation was cached")
	}
	f = c.add("f", open(), false, now, c.generation())
	c.release(f)
	if got := c.get("f", false, now); got == nil {
		t.Fatal("a descriptor opened after the last invalidation was not cached")
	} else {
		c.release(got)
	}
}
