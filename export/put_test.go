package export

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
	"golang.org/x/sys/unix"
)

// checkAfterFailedPut checks what an interrupted upload must leave:
// old content intact (or no file at all), and no temporary file.
func checkAfterFailedPut(t *testing.T, dir, name, old string) {
	t.Helper()
	eventually(t, "the temporary file to go", func() bool { return len(tempFiles(t, dir)) == 0 })
	b, err := os.ReadFile(filepath.Join(dir, name))
	switch {
	case old == "" && err == nil:
		t.Errorf("%s appeared after a failed upload: %q", name, shortLine(b))
	case old == "" && !os.IsNotExist(err):
		t.Error(err)
	case old != "" && string(b) != old:
		t.Errorf("%s = %q (%v), want the old content %q", name, shortLine(b), err, old)
	}
}

func TestServerPutCut(t *testing.T) {
	for _, old := range []string{"old content", ""} {
		t.Run(fmt.Sprintf("existing=%v", old != ""), func(t *testing.T) {
			dir := t.TempDir()
			if old != "" {
				writeFile(t, dir, "f.txt", old)
			}
			_, addr := testServe(t, Options{Export: dir})
			c := testConnect(t, addr)
			c.send("PUT f.txt 1000\n")
			c.expect("PUT OK")
			c.send(strings.Repeat("x", 500))
			// The temporary file exists from PUT OK on; the cut comes while
			// the server waits for the rest. (It writes a payload whole, or
			// in sendChunk pieces, so the half never shows on disk.)
			eventually(t, "the temporary file", func() bool { return len(tempFiles(t, dir)) == 1 })
			c.nc.Close()
			checkAfterFailedPut(t, dir, "f.txt", old)
		})
	}
}

func TestServerPutStalled(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f.txt", "old content")
	_, addr := testServe(t, Options{Export: dir, IOTimeout: 300 * time.Millisecond})
	c := testConnect(t, addr)
	c.send("PUT f.txt 1000\n")
	c.expect("PUT OK")
	c.send(strings.Repeat("x", 500))
	// The sender stalls: the server cuts it after IOTimeout.
	start := time.Now()
	c.expectEOF()
	if d := time.Since(start); d < 250*time.Millisecond || d > 10*time.Second {
		t.Errorf("stalled upload cut after %v, want about 300ms", d)
	}
	checkAfterFailedPut(t, dir, "f.txt", "old content")
}

// TestServerPutSlowButLive sends a payload in pieces over a time longer
// than IOTimeout, each piece within it: the upload must survive.
func TestServerPutSlowButLive(t *testing.T) {
	dir := t.TempDir()
	// Generous margins: a loaded machine must not make this flaky.
	_, addr := testServe(t, Options{Export: dir, IOTimeout: 1500 * time.Millisecond})
	c := testConnect(t, addr)
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
	_, addr := testServe(t, Options{Export: dir})
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * int64(st.Bsize)
	c := testConnect(t, addr)
	reply := c.roundTrip(fmt.Sprintf("PUT big.bin %d", avail+1))
	var need, have int64
	if _, err := fmt.Sscanf(reply, "PUT FAIL nospace need %d bytes, %d available", &need, &have); err != nil {
		t.Fatalf("reply %q: %v", reply, err)
	}
	if need != avail+1+spaceReserve || have > avail+(64<<20) {
		t.Errorf("reply %q: numbers do not match statfs (avail %d)", reply, avail)
	}
	// Refused before PUT OK: the connection is still in step.
	if got := c.roundTrip("PING"); got != "PONG" {
		t.Errorf("after nospace: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "big.bin")); !os.IsNotExist(err) {
		t.Errorf("big.bin: %v", err)
	}
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

func TestServerPutRefusals(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "d/f.txt", "f")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	for _, tc := range []struct{ req, want string }{
		{"PUT d 1", `PUT FAIL isdir "d" is a directory`},
		{"PUT . 1", `PUT FAIL isdir the export root is a directory`},
		{"PUT nodir/x 1", `PUT FAIL notfound no such directory "nodir"`},
		{"PUT d/f.txt/x 1", `PUT FAIL notdir "d/f.txt" (or one of its parents) is not a directory`},
		{"PUT x", `PUT FAIL invalid usage: PUT <name> <size> [async] [inline] [base=<mtime>|base=none|ver=<token>] [delta=<size> [ranges=<off>:<len>,...]] [stream] [setid]`},
		{"PUT x 1 later", `PUT FAIL invalid usage: PUT <name> <size> [async] [inline] [base=<mtime>|base=none|ver=<token>] [delta=<size> [ranges=<off>:<len>,...]] [stream] [setid]`},
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

// TestServerPutAsyncAndFsync: "PUT <name> <size> async" stores the file
// intact and visible like the seed's PUT (only skipping the wait for the
// disk), and FSYNC answers once the export's filesystem is synced.
func TestServerPutAsyncAndFsync(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "old.txt", "old content")
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
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
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

// TestServerPutConditional: a PUT with base= replaces only the version
// the writer started from; base=none only creates.
func TestServerPutConditional(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "v1")
	fi, err := os.Stat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	base := fi.ModTime().UnixNano()
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)

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
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

// TestServerPutNewNeverReplaces: a PUT with base=none never replaces a
// file, even one a process on the peer makes between the server's last
// check and its rename (the rename itself refuses, RENAME_NOREPLACE): it
// is refused as a conflict, and the local file is left as it was, with
// no temporary file behind. Streamed and inline PUTs alike.
func TestServerPutNewNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	var name atomic.Value // the file the hook makes, "" for none
	name.Store("")
	hook := func() {
		if n := name.Load().(string); n != "" {
			writeFile(t, dir, n, "made on the peer")
		}
	}
	_, addr := testServe(t, Options{Export: dir, installHook: hook})
	c := testConnect(t, addr)
	for _, tc := range []struct{ name, req, body string }{
		{"whole", "PUT a 4 base=none\n", "mine"},
		{"async inline", "PUT b 4 async inline base=none\n", "mine"},
		{"streamed", "PUT c 4 async base=none stream\n", "DATA 4\nmineEND 4\n"},
	} {
		n := tc.req[4:5]
		name.Store(n)
		c.send(tc.req)
		if !strings.Contains(tc.req, " inline") {
			c.expect("PUT OK")
		}
		c.send(tc.body)
		c.expectPrefix(fmt.Sprintf(`PUT FAIL conflict %q was created meanwhile`, n))
		if got, _ := os.ReadFile(filepath.Join(dir, n)); string(got) != "made on the peer" {
			t.Fatalf("%s: %s holds %q, want the peer's own file", tc.name, n, got)
		}
	}
	name.Store("")
	c.send("PUT d 4 base=none\n")
	c.expect("PUT OK")
	c.send("mine")
	c.expectPrefix("PUT DONE 4 ")
	if got, _ := os.ReadFile(filepath.Join(dir, "d")); string(got) != "mine" {
		t.Fatalf("d holds %q", got)
	}
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

// bigFile writes a file of size bytes quickly (a repeated random block).
func bigFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	block := randomBytes(1<<20, 5)
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

// TestServerPutInline: "PUT <name> <size> inline" takes the payload right
// after the line and answers PUT DONE alone; a refusal still reads the
// payload, so the connection stays in step (payloads that look like
// requests included).
func TestServerPutInline(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "old.txt", "old")
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	c.send("PUT x 5 async inline\nhello")
	c.expectPrefix("PUT DONE 5 ")
	if b, _ := os.ReadFile(filepath.Join(dir, "x")); string(b) != "hello" {
		t.Fatalf("x = %q", b)
	}
	c.send("PUT empty 0 inline\n")
	c.expectPrefix("PUT DONE 0 ")

	payload := "PING\nDELETE old.txt\n"
	for _, tc := range []struct{ req, want string }{
		{"PUT d %d inline", `PUT FAIL isdir "d" is a directory`},
		{"PUT nodir/x %d inline", `PUT FAIL notfound no such directory "nodir"`},
		{"PUT ../x %d inline", `PUT FAIL denied path escapes the export: "../x"`},
		{"PUT old.txt %d inline base=none", `PUT FAIL conflict "old.txt" was created meanwhile`},
		{"PUT . %d inline", "PUT FAIL isdir the export root is a directory"},
	} {
		c.send(fmt.Sprintf(tc.req, len(payload)) + "\n" + payload)
		c.expectPrefix(tc.want)
		if got := c.roundTrip("PING"); got != "PONG" {
			t.Fatalf("after %q: %q", tc.req, got)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "old.txt")); string(b) != "old" {
		t.Fatalf("old.txt = %q: a refused payload was read as requests", b)
	}

	// Too many transfers, and a read-only export: refused, payload read.
	ro := testConnect(t, readOnlyAddr(t, dir))
	ro.send("PUT y 3 inline\nabc")
	ro.expect("PUT FAIL readonly export is read-only")
	if got := ro.roundTrip("PING"); got != "PONG" {
		t.Fatalf("read-only, after the refusal: %q", got)
	}

	// A malformed inline PUT has a payload of unknown size: refused, and
	// the connection closed.
	c.send("PUT x -1 inline\nwhatever")
	c.expectPrefix("PUT FAIL invalid")
	c.expectEOF()
}

func readOnlyAddr(t *testing.T, dir string) string {
	t.Helper()
	_, addr := testServe(t, Options{Export: dir, ReadOnly: true})
	return addr
}

// TestClientPutInline: PutWith with Inline stores small and large files
// over TLS and plain TCP; a refusal keeps the connection unless it is
// "invalid", which an older peer would answer to the inline line itself.
func TestClientPutInline(t *testing.T) {
	sc, err := secure.New([]byte("peer-inline-test-cluster-secret!"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tls := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Export: dir}
			copts := peer.ClientOptions{}
			if tls {
				opts.Secure, copts.Secure = sc, sc
			}
			_, addr := testServe(t, opts)
			ctx := context.Background()
			c, err := peer.Dial(ctx, addr, copts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, size := range []int{0, 1, 4 << 10, 32 << 10, 32<<10 + 1, 3 << 20} {
				data := randomBytes(size, uint64(size))
				name := fmt.Sprintf("f%d", size)
				pd, err := c.PutWith(ctx, peerproto.Put{Name: name, Size: int64(size), Async: true, Inline: true, Base: peerproto.BaseNone},
					bytes.NewReader(data), nil)
				if err != nil || pd.Size != int64(size) {
					t.Fatalf("%s: %+v, %v", name, pd, err)
				}
				if b, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(b, data) {
					t.Fatalf("%s: stored %d bytes, not the %d sent", name, len(b), size)
				}
				// The same again is a conflict: refused, still in step.
				_, err = c.PutWith(ctx, peerproto.Put{Name: name, Size: int64(size), Inline: true, Base: peerproto.BaseNone},
					bytes.NewReader(data), nil)
				var fe *peerproto.FailError
				if !errors.As(err, &fe) || fe.Code != peerproto.CodeConflict || c.Broken() {
					t.Fatalf("%s again: %v (broken %v), want a conflict on a usable connection", name, err, c.Broken())
				}
			}
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			// invalid: the connection is given up.
			_, err = c.PutWith(ctx, peerproto.Put{Name: jail.TempPrefix + "x", Size: 3, Inline: true}, strings.NewReader("abc"), nil)
			var fe *peerproto.FailError
			if !errors.As(err, &fe) || fe.Code != peerproto.CodeInvalid || !c.Broken() {
				t.Fatalf("reserved name: %v (broken %v), want invalid and a closed connection", err, c.Broken())
			}
		})
	}
}

// TestClientInlineToOlderPeer: a peer that predates FEATURES (and the
// inline PUT) gets the two-step PUT, so it never reads file content as
// requests. The older peer is played by a script speaking its side of
// the protocol, line for line.
func TestClientInlineToOlderPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(nc)
		io.WriteString(nc, "CONNECT OK\n")
		var seen []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				got <- strings.Join(seen, "|")
				return
			}
			line = strings.TrimSuffix(line, "\n")
			seen = append(seen, line)
			switch {
			case line == "FSYNC":
				io.WriteString(nc, "FSYNC OK\n")
			case line == "FEATURES":
				io.WriteString(nc, "FEATURES FAIL unsupported unknown verb \"FEATURES\"\n")
			case strings.HasPrefix(line, "PUT x 19 async"):
				io.WriteString(nc, "PUT OK\n")
				body := make([]byte, 19)
				if _, err := io.ReadFull(r, body); err != nil {
					got <- err.Error()
					return
				}
				seen = append(seen, "payload:"+string(body))
				io.WriteString(nc, "PUT DONE 19 1700000000000000000\n")
			default:
				io.WriteString(nc, "X FAIL invalid unexpected\n")
			}
		}
	}()
	ctx := context.Background()
	c, err := peer.Dial(ctx, ln.Addr().String(), peer.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	payload := "PING\nDELETE old.txt"
	for range 2 { // the second asks FEATURES no more
		pd, err := c.PutWith(ctx, peerproto.Put{Name: "x", Size: int64(len(payload)), Async: true, Inline: true}, strings.NewReader(payload), nil)
		if err != nil || pd.Size != int64(len(payload)) {
			t.Fatalf("PutWith to an older peer: %+v, %v", pd, err)
		}
	}
	if err := c.FsyncFiles(ctx, []string{"x"}); err != nil {
		t.Fatalf("FsyncFiles to an older peer: %v", err)
	}
	c.Close()
	want := "FEATURES|PUT x 19 async|payload:" + payload + "|PUT x 19 async|payload:" + payload + "|FSYNC|QUIT"
	if s := <-got; s != want {
		t.Errorf("the older peer saw %q, want %q", s, want)
	}
}

// TestServerPutModes: a new file is 0644 whatever the server's umask, a
// replaced one keeps its bits but setuid (see TestSetuidFromClients).
func TestServerPutModes(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dir := t.TempDir()
	writeFile(t, dir, "suid", "x")
	if err := os.Chmod(filepath.Join(dir, "suid"), os.ModeSetuid|0o750); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
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
