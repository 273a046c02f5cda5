package peer

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// srvCheckAfterFailedPut checks what an interrupted upload must leave:
// old content intact (or no file at all), and no temporary file.
func srvCheckAfterFailedPut(t *testing.T, dir, name, old string) {
	t.Helper()
	srvEventually(t, "the temporary file to go", func() bool { return len(srvTemps(t, dir)) == 0 })
	b, err := os.ReadFile(filepath.Join(dir, name))
	switch {
	case old == "" && err == nil:
		t.Errorf("%s appeared after a failed upload: %q", name, srvShort(b))
	case old == "" && !os.IsNotExist(err):
		t.Error(err)
	case old != "" && string(b) != old:
		t.Errorf("%s = %q (%v), want the old content %q", name, srvShort(b), err, old)
	}
}

func TestServerPutCut(t *testing.T) {
	for _, old := range []string{"old content", ""} {
		t.Run(fmt.Sprintf("existing=%v", old != ""), func(t *testing.T) {
			dir := t.TempDir()
			if old != "" {
				srvWriteFile(t, dir, "f.txt", old)
			}
			_, addr := srvTestServe(t, ServerOptions{Export: dir})
			c := srvTestConnect(t, addr)
			c.send("PUT f.txt 1000\n")
			c.expect("PUT OK")
			c.send(strings.Repeat("x", 500))
			// The temporary file exists from PUT OK on; the cut comes while
			// the server waits for the rest. (It writes a payload whole, or
			// in srvSendChunk pieces, so the half never shows on disk.)
			srvEventually(t, "the temporary file", func() bool { return len(srvTemps(t, dir)) == 1 })
			c.nc.Close()
			srvCheckAfterFailedPut(t, dir, "f.txt", old)
		})
	}
}

func TestServerPutStalled(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "f.txt", "old content")
	_, addr := srvTestServe(t, ServerOptions{Export: dir, IOTimeout: 300 * time.Millisecond})
	c := srvTestConnect(t, addr)
	c.send("PUT f.txt 1000\n")
	c.expect("PUT OK")
	c.send(strings.Repeat("x", 500))
	// The sender stalls: the server cuts it after IOTimeout.
	start := time.Now()
	c.expectEOF()
	if d := time.Since(start); d < 250*time.Millisecond || d > 10*time.Second {
		t.Errorf("stalled upload cut after %v, want about 300ms", d)
	}
	srvCheckAfterFailedPut(t, dir, "f.txt", "old content")
}

// TestServerPutSlowButLive sends a payload in pieces over a time longer
// than IOTimeout, each piece within it: the upload must survive.
func TestServerPutSlowButLive(t *testing.T) {
	dir := t.TempDir()
	// Generous margins: a loaded machine must not make this flaky.
	_, addr := srvTestServe(t, ServerOptions{Export: dir, IOTimeout: 1500 * time.Millisecond})
	c := srvTestConnect(t, addr)
	c.send("PUT slow.txt 600\n")
	c.expect("PUT OK")
	for range 6 {
		c.send(strings.Repeat("s", 100))
		time.Sleep(500 * time.Millisecond)
	}
	c.expectPrefix("PUT DONE 600 ")
}

func TestServerPutNoSpace(t *testing.T) {
	dir := t.TempDir()
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * int64(st.Bsize)
	c := srvTestConnect(t, addr)
	reply := c.roundTrip(fmt.Sprintf("PUT big.bin %d", avail+1))
	var need, have int64
	if _, err := fmt.Sscanf(reply, "PUT FAIL nospace need %d bytes, %d available", &need, &have); err != nil {
		t.Fatalf("reply %q: %v", reply, err)
	}
	if need != avail+1+srvSpaceReserve || have > avail+(64<<20) {
		t.Errorf("reply %q: numbers do not match statfs (avail %d)", reply, avail)
	}
	// Refused before PUT OK: the connection is still in step.
	if got := c.roundTrip("PING"); got != "PONG" {
		t.Errorf("after nospace: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "big.bin")); !os.IsNotExist(err) {
		t.Errorf("big.bin: %v", err)
	}
	if temps := srvTemps(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

func TestServerPutRefusals(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "d/f.txt", "f")
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"PUT d 1", `PUT FAIL isdir "d" is a directory`},
		{"PUT . 1", `PUT FAIL isdir the export root is a directory`},
		{"PUT nodir/x 1", `PUT FAIL notfound no such directory "nodir"`},
		{"PUT d/f.txt/x 1", `PUT FAIL notdir "d/f.txt" (or one of its parents) is not a directory`},
		{"PUT x", `PUT FAIL invalid usage: PUT <name> <size> [async] [inline] [base=<mtime>|base=none|ver=<token>]`},
		{"PUT x 1 later", `PUT FAIL invalid usage: PUT <name> <size> [async] [inline] [base=<mtime>|base=none|ver=<token>]`},
		{"PUT x 99999999999999999999", `PUT FAIL invalid size "99999999999999999999" is not a non-negative integer`},
	} {
		if got := c.roundTrip(tc.req); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.want)
		}
	}
	// A PUT over an existing file keeps its permission bits.
	if err := os.Chmod(filepath.Join(dir, "d/f.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.put("d/f.txt", []byte("new"))
	if fi, err := os.Stat(filepath.Join(dir, "d/f.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after PUT: %v, %v", fi.Mode(), err)
	}
}

func TestServerCloseDuringTransfer(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "f.txt", "old content")
	srvBigFile(t, dir, "big.bin", 64<<20)
	s, addr := srvTestServe(t, ServerOptions{Export: dir})

	up := srvTestConnect(t, addr)
	up.send("PUT f.txt 1000000\n")
	up.expect("PUT OK")
	up.send(strings.Repeat("x", 1000))
	// A download the client does not read: the server blocks sending it.
	down := srvTestConnect(t, addr)
	if got, want := down.roundTrip("GET big.bin"), fmt.Sprintf("GET OK %d", 64<<20); got != want {
		t.Fatalf("%q, want %q", got, want)
	}

	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while transfers were running")
	}
	srvCheckAfterFailedPut(t, dir, "f.txt", "old content")
	up.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
	if b, err := io.ReadAll(up.r); len(b) > 0 {
		t.Errorf("uploader got %q, %v after Close", b, err)
	}
}

func TestServerGetFileShrinks(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	p := srvBigFile(t, dir, "big.bin", size)
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	if got, want := c.roundTrip("GET big.bin"), fmt.Sprintf("GET OK %d", size); got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	c.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
	first := make([]byte, 1)
	if _, err := io.ReadFull(c.r, first); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	// The server cannot send what it announced: it must close rather
	// than leave the client waiting, or send other bytes.
	n, err := io.Copy(io.Discard, c.r)
	if srvIsTimeout(err) {
		t.Errorf("connection still open after the file shrank: %v", err)
	}
	if n+1 >= size {
		t.Errorf("received all %d bytes of a file truncated to 0", size)
	}
}

// srvBigFile writes a file of size bytes quickly (a repeated random block).
func srvBigFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	block := srvRandom(1<<20, 5)
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for done := 0; done < size; done += len(block) {
		if _, err := f.Write(block[:min(len(block), size-done)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServerPutAsyncAndFsync: "PUT <name> <size> async" stores the file
// intact and visible like the seed's PUT (only skipping the wait for the
// disk), and FSYNC answers once the export's filesystem is synced.
func TestServerPutAsyncAndFsync(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "old.txt", "old content")
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	c.send("PUT old.txt 5 async\n")
	c.expect("PUT OK")
	c.send("hello")
	c.expectPrefix("PUT DONE 5 ")
	if got, err := os.ReadFile(filepath.Join(dir, "old.txt")); err != nil || string(got) != "hello" {
		t.Fatalf("after an async PUT: %q %v", got, err)
	}
	c.send("fsync\n")
	c.expect("FSYNC OK")
	c.send("FSYNC now\n") // a name, gone: the whole filesystem is synced
	c.expect("FSYNC OK")
	c.send("FSYNC %zz\n")
	c.expectPrefix("FSYNC FAIL invalid")
	if temps := srvTemps(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

// TestServerPutConditional: a PUT with base= replaces only the version
// the writer started from; base=none only creates.
func TestServerPutConditional(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "f", "v1")
	fi, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	base := fi.ModTime().UnixNano()
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)

	c.send("PUT f 2 base=none\n")
	c.expectPrefix(`PUT FAIL conflict "f" was created meanwhile`)
	c.send(fmt.Sprintf("PUT f 2 base=%d\n", base+1))
	c.expectPrefix(`PUT FAIL conflict "f" changed meanwhile`)
	c.send(fmt.Sprintf("PUT new 2 base=%d\n", base))
	c.expectPrefix(`PUT FAIL conflict "new" was removed meanwhile`)

	// The right base wins once; a second writer from the same base loses,
	// even after its payload was sent.
	c.send(fmt.Sprintf("PUT f 2 async base=%d\n", base))
	c.expect("PUT OK")
	c.send("v2")
	c.expectPrefix("PUT DONE 2 ")
	c.send(fmt.Sprintf("PUT f 2 base=%d\n", base))
	c.expectPrefix(`PUT FAIL conflict "f" changed meanwhile`)
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "v2" {
		t.Fatalf("f = %q, want v2", got)
	}
	c.send("PUT g 1 base=none\n")
	c.expect("PUT OK")
	c.send("g")
	c.expectPrefix("PUT DONE 1 ")
	c.send("PUT f 1 base=x\n")
	c.expectPrefix("PUT FAIL invalid")
	c.send("PING\n")
	c.expect("PONG")
	if temps := srvTemps(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}
