package peer

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
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
)

// TestServerPutInline: "PUT <name> <size> inline" takes the payload right
// after the line and answers PUT DONE alone; a refusal still reads the
// payload, so the connection stays in step (payloads that look like
// requests included).
func TestServerPutInline(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "old.txt", "old")
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
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
	ro := srvTestConnect(t, srvReadOnlyAddr(t, dir))
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

func srvReadOnlyAddr(t *testing.T, dir string) string {
	t.Helper()
	_, addr := srvTestServe(t, ServerOptions{Export: dir, ReadOnly: true})
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
			opts := ServerOptions{Export: dir}
			copts := ClientOptions{}
			if tls {
				opts.Secure, copts.Secure = sc, sc
			}
			_, addr := srvTestServe(t, opts)
			ctx := context.Background()
			c, err := Dial(ctx, addr, copts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, size := range []int{0, 1, 4 << 10, 32 << 10, 32<<10 + 1, 3 << 20} {
				data := srvRandom(size, uint64(size))
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
			_, err = c.PutWith(ctx, peerproto.Put{Name: jailTempPrefix + "x", Size: 3, Inline: true}, strings.NewReader("abc"), nil)
			var fe *peerproto.FailError
			if !errors.As(err, &fe) || fe.Code != peerproto.CodeInvalid || !c.Broken() {
				t.Fatalf("reserved name: %v (broken %v), want invalid and a closed connection", err, c.Broken())
			}
		})
	}
}

// TestServerFeatures: FEATURES names the inline PUT; words it is sent
// must be lower-case.
func TestServerFeatures(t *testing.T) {
	_, addr := srvTestServe(t, ServerOptions{Export: t.TempDir()})
	c := srvTestConnect(t, addr)
	c.send("FEATURES\n")
	c.expectPrefix("FEATURES OK inline fsync-files attrs")
	c.send("FEATURES Now\n")
	c.expectPrefix("FEATURES FAIL invalid")
	c.send("FEATURES later\n") // a word it does not know: nothing turned on
	c.expectPrefix("FEATURES OK inline")
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
	c, err := Dial(ctx, ln.Addr().String(), ClientOptions{})
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

// TestServerFsyncFiles: FSYNC with names syncs those files; a name gone
// since (renamed, removed) falls back to the whole filesystem; a name
// outside the export is refused.
func TestServerFsyncFiles(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "a", "a")
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	srvWriteFile(t, dir, "d/b c", "b")
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	c.send("FSYNC a d/b%20c\n")
	c.expectPrefix("FSYNC OK")
	c.send("FSYNC gone\n")
	c.expectPrefix("FSYNC OK")
	c.send("FSYNC ../x\n")
	c.expectPrefix("FSYNC FAIL denied")
	c.send("FSYNC\n")
	c.expectPrefix("FSYNC OK")

	cl, err := Dial(context.Background(), addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.FsyncFiles(context.Background(), []string{"a", "d/b c"}); err != nil {
		t.Fatal(err)
	}
}

// TestServerFsyncUnopenable: FSYNC naming something the server cannot
// open (a socket here; a write-only file for a non-root peer) still
// succeeds, by syncing the whole filesystem, as the plain FSYNC would.
func TestServerFsyncUnopenable(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if os.Getuid() != 0 {
		if err := os.WriteFile(filepath.Join(dir, "w"), []byte("x"), 0o200); err != nil {
			t.Fatal(err)
		}
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	c.send("FSYNC sock\n")
	c.expect("FSYNC OK")
	if os.Getuid() != 0 {
		c.send("FSYNC w\n")
		c.expect("FSYNC OK")
	}
}

// TestServerFsyncOddNames: FSYNC naming a symbolic link (a PUT through it
// stored the file in the target's directory) or a FIFO falls back to
// syncing everything and succeeds.
func TestServerFsyncOddNames(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	srvWriteFile(t, dir, "real/f", "x")
	if err := os.Symlink("real/f", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	c.send("FSYNC alias\n")
	c.expect("FSYNC OK")
	c.send("FSYNC fifo\n")
	c.expect("FSYNC OK")
}
