package peer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// TestServerTranscript checks the exact bytes a person typing into nc
// sends and sees.
func TestServerTranscript(t *testing.T) {
	dir := t.TempDir()
	hello := srvWriteFile(t, dir, "hello.txt", "hello world\n")
	mt := time.Unix(1700000000, 123456789)
	if err := os.Chtimes(hello, mt, mt); err != nil {
		t.Fatal(err)
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestDial(t, addr)

	c.send("GET hello.txt\n" +
		"PUT new.txt 5\nhello" +
		"LIST\n" +
		"\n" +
		"garbage in\n" +
		"get\n" +
		"PUT x.txt -1\n" +
		"GET nope.txt\n" +
		"GET ../secret\n" +
		"ping\r\n" +
		"QUIT\n")
	c.nc.SetReadDeadline(time.Now().Add(srvTestTimeout))
	got, err := io.ReadAll(c.r)
	if err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(filepath.Join(dir, "new.txt"))
	if err != nil {
		t.Fatal(err)
	}
	newMt := fi.ModTime().UnixNano()
	want := "CONNECT OK\n" +
		"GET OK 12\nhello world\n" +
		"PUT OK\n" +
		fmt.Sprintf("PUT DONE 5 %d\n", newMt) +
		"LIST OK 2\n" +
		fmt.Sprintf("f 0644 12 %d hello.txt\n", mt.UnixNano()) +
		fmt.Sprintf("f 0644 5 %d new.txt\n", newMt) +
		"GARBAGE FAIL unsupported unknown verb \"GARBAGE\" (want PUT, GET, LIST, STAT, DELETE, RENAME, MKDIR, RMDIR, SETATTR, STATFS, FSYNC, PING or QUIT)\n" +
		"GET FAIL invalid usage: GET <name> [[<offset>] <length>]\n" +
		"PUT FAIL invalid size \"-1\" is not a non-negative integer\n" +
		"GET FAIL notfound no such file \"nope.txt\"\n" +
		"GET FAIL denied path escapes the export: \"../secret\"\n" +
		"PONG\n"
	if string(got) != want {
		t.Errorf("transcript:\n got: %q\nwant: %q", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "new.txt")); string(b) != "hello" {
		t.Errorf("new.txt = %q", b)
	}
}

// srvRandom returns n bytes from a fast seeded PRNG.
func srvRandom(n int, seed uint64) []byte {
	b := make([]byte, n+8)
	r := rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

func TestServerPutGetSizes(t *testing.T) {
	dir := t.TempDir()
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	for _, size := range []int{0, 1, 100 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c.t = t
			data := srvRandom(size, uint64(size))
			name := fmt.Sprintf("f%d.bin", size)
			reply := c.put(name, data)
			done, err := peerproto.ParseReply([]byte(reply), peerproto.VerbPut)
			if err != nil {
				t.Fatalf("PUT: %v", err)
			}
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if want := (peerproto.PutDone{Size: int64(size), Mtime: fi.ModTime().UnixNano()}); done != want {
				t.Errorf("PUT reply %+v, want %+v", done, want)
			}
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", fi.Mode())
			}

			// Stream the GET into a hash, not a buffer.
			reply = c.roundTrip("GET " + name)
			if want := fmt.Sprintf("GET OK %d", size); reply != want {
				t.Fatalf("reply %q, want %q", reply, want)
			}
			h := sha256.New()
			c.nc.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := io.CopyN(h, c.r, int64(size)); err != nil {
				t.Fatal(err)
			}
			if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
				t.Errorf("sha256 of GET differs from what was PUT")
			}
			if got := c.roundTrip("PING"); got != "PONG" {
				t.Errorf("after GET: %q", got)
			}
		})
	}
	c.t = t
	if temps := srvTemps(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

func TestServerGetRanges(t *testing.T) {
	dir := t.TempDir()
	data := srvRandom(1000, 7)
	if err := os.WriteFile(filepath.Join(dir, "r.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	for _, tc := range []struct {
		req      string
		from, to int
	}{
		{"GET r.bin", 0, 1000},
		{"GET r.bin 10", 0, 10},     // seed form: length from offset 0
		{"GET r.bin 5000", 0, 1000}, // seed form, longer than the file
		{"GET r.bin 100 50", 100, 150},
		{"GET r.bin 990 50", 990, 1000},
		{"GET r.bin 1000 5", 1000, 1000}, // at EOF
		{"GET r.bin 4000 5", 1000, 1000}, // past EOF
		{"GET r.bin 10 0", 10, 10},
	} {
		if got := c.getRange(tc.req); !bytes.Equal(got, data[tc.from:tc.to]) {
			t.Errorf("%s: got %d bytes, want data[%d:%d]", tc.req, len(got), tc.from, tc.to)
		}
	}
	for req, want := range map[string]string{
		"GET .":          `GET FAIL isdir "." is a directory`,
		"GET r.bin x 1":  `GET FAIL invalid offset "x" is not a non-negative integer`,
		"GET r.bin 1 -1": `GET FAIL invalid length "-1" is not a non-negative integer`,
	} {
		if got := c.roundTrip(req); got != want {
			t.Errorf("%s: %q, want %q", req, got, want)
		}
	}
}

func TestServerNames(t *testing.T) {
	dir := t.TempDir()
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	names := []string{"with space.txt", "100%.txt", "new\nline", "ünïcødé ☃.txt", "tab\there", "%41"}
	for i, name := range names {
		data := []byte(fmt.Sprintf("content %d of %q", i, name))
		if r := c.put(name, data); !strings.HasPrefix(r, "PUT DONE ") {
			t.Fatalf("PUT %q: %q", name, r)
		}
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(b, data) {
			t.Errorf("on disk %q: %q, %v", name, b, err)
		}
		if got := c.get(name); !bytes.Equal(got, data) {
			t.Errorf("GET %q = %q", name, got)
		}
	}
	got := srvNames(c.list(""))
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("LIST names %q, want %q", got, want)
	}
	// Raw UTF-8 typed by a person is accepted too.
	if r := c.roundTrip("STAT ünïcødé%20☃.txt"); !strings.HasPrefix(r, "STAT OK f 0644 ") {
		t.Errorf("STAT raw UTF-8: %q", r)
	}
}

func TestServerListAttributes(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, "b.txt", "bbb")
	srvWriteFile(t, dir, "a/inner.txt", "x")
	if err := os.Chmod(filepath.Join(dir, "a"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b.txt", filepath.Join(dir, "link-to-b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	c := srvTestConnect(t, addr)
	// A temporary file appearing while serving (an upload in flight) stays hidden.
	srvWriteFile(t, dir, jailTempPrefix+"inflight", "zzz")

	es := c.list("")
	if got, want := srvNames(es), []string{"a", "b.txt", "link-to-b"}; !slices.Equal(got, want) {
		t.Fatalf("LIST %q, want %q", got, want)
	}
	if e := es[0]; e.Type != peerproto.TypeDir || e.Mode != 0o750 {
		t.Errorf("a: %+v", e)
	}
	fi, _ := os.Stat(filepath.Join(dir, "b.txt"))
	for _, e := range es[1:] {
		if e.Type != peerproto.TypeFile || e.Mode != 0o644 || e.Size != 3 || e.Mtime != fi.ModTime().UnixNano() {
			t.Errorf("%s: %+v, want the attributes of b.txt", e.Name, e)
		}
	}
	if got := srvNames(c.list("a")); !slices.Equal(got, []string{"inner.txt"}) {
		t.Errorf("LIST a: %q", got)
	}
	for req, want := range map[string]string{
		"LIST nope":  `LIST FAIL notfound no such file or directory "nope"`,
		"LIST b.txt": `LIST FAIL notdir "b.txt" (or one of its parents) is not a directory`,
		"LIST a b":   `LIST FAIL invalid usage: LIST [<dir>]`,
	} {
		if got := c.roundTrip(req); got != want {
			t.Errorf("%s: %q, want %q", req, got, want)
		}
	}
	if got := c.roundTrip("STAT ."); !strings.HasPrefix(got, "STAT OK d ") {
		t.Errorf("STAT .: %q", got)
	}
	if got, want := c.roundTrip("STAT b.txt"), fmt.Sprintf("STAT OK f 0644 3 %d", fi.ModTime().UnixNano()); got != want {
		t.Errorf("STAT b.txt: %q, want %q", got, want)
	}
	if got, want := c.roundTrip("STAT dangling"), `STAT FAIL notfound no such file or directory "dangling"`; got != want {
		t.Errorf("STAT dangling: %q, want %q", got, want)
	}
}

func TestServerRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	srvWriteFile(t, dir, jailTempPrefix+"crashed", "partial")
	srvWriteFile(t, dir, "sub/deeper/"+jailTempPrefix+"x", "partial")
	srvWriteFile(t, dir, "sub/keep.txt", "keep")
	srvTestServe(t, ServerOptions{Export: dir})
	if temps := srvTemps(t, dir); len(temps) > 0 {
		t.Errorf("stale temporary files left: %v", temps)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub/keep.txt")); err != nil {
		t.Error(err)
	}
}

func TestServerLongLineCloses(t *testing.T) {
	_, addr := srvTestServe(t, ServerOptions{})
	c := srvTestConnect(t, addr)
	// Written from a goroutine: the server may close before reading it all.
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.write([]byte("GET " + strings.Repeat("a", peerproto.MaxLine+10) + "\n"))
	}()
	c.expectEOF()
	<-done
}

func TestServerIdleTimeout(t *testing.T) {
	_, addr := srvTestServe(t, ServerOptions{IdleTimeout: 200 * time.Millisecond})
	c := srvTestConnect(t, addr)
	if got := c.roundTrip("PING"); got != "PONG" {
		t.Fatal(got)
	}
	start := time.Now()
	c.expectEOF()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle connection closed after %v", d)
	}
}

func TestServerMaxConns(t *testing.T) {
	_, addr := srvTestServe(t, ServerOptions{MaxConns: 2})
	c1 := srvTestConnect(t, addr)
	srvTestConnect(t, addr)
	c3 := srvTestDial(t, addr)
	c3.expect("CONNECT FAIL busy too many connections (2)")
	c3.expectEOF()

	c1.send("QUIT\n")
	c1.expectEOF()
	// The slot frees once the server has finished with c1.
	srvEventually(t, "a free connection slot", func() bool {
		c := srvTestDial(t, addr)
		defer c.nc.Close()
		return c.line() == "CONNECT OK"
	})
}

func TestServerConcurrentClients(t *testing.T) {
	dir := t.TempDir()
	_, addr := srvTestServe(t, ServerOptions{Export: dir})
	const clients, rounds = 16, 4
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			if err := srvConcurrentClient(addr, i, rounds); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if temps := srvTemps(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
	// Every client also wrote "shared.bin": whichever won, it is whole.
	b, err := os.ReadFile(filepath.Join(dir, "shared.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for i := range clients {
		ok = ok || bytes.Equal(b, srvRandom(64<<10, uint64(1000+i)))
	}
	if !ok {
		t.Error("shared.bin is not any one client's content")
	}
}

// srvConcurrentClient uploads and downloads its own files over one
// connection, reporting failures as errors (it runs off the test goroutine).
func srvConcurrentClient(addr string, id, rounds int) error {
	nc, err := net.DialTimeout("tcp", addr, srvTestTimeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(nc)
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		return strings.TrimSuffix(s, "\n"), err
	}
	if l, err := line(); l != "CONNECT OK" {
		return fmt.Errorf("client %d: greeting %q, %v", id, l, err)
	}
	put := func(name string, data []byte) error {
		if _, err := fmt.Fprintf(nc, "PUT %s %d\n", name, len(data)); err != nil {
			return err
		}
		if l, err := line(); l != "PUT OK" {
			return fmt.Errorf("client %d: PUT %s: %q, %v", id, name, l, err)
		}
		if _, err := nc.Write(data); err != nil {
			return err
		}
		if l, err := line(); !strings.HasPrefix(l, "PUT DONE ") {
			return fmt.Errorf("client %d: PUT %s: %q, %v", id, name, l, err)
		}
		return nil
	}
	for round := range rounds {
		name := fmt.Sprintf("c%d-r%d.bin", id, round)
		data := srvRandom(1+(id*7919+round*104729)%(1<<20), uint64(id*100+round))
		if err := put(name, data); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(nc, "GET %s\n", name); err != nil {
			return err
		}
		if l, err := line(); l != fmt.Sprintf("GET OK %d", len(data)) {
			return fmt.Errorf("client %d: GET %s: %q, %v", id, name, l, err)
		}
		got := make([]byte, len(data))
		if _, err := io.ReadFull(r, got); err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return fmt.Errorf("client %d: GET %s: content differs", id, name)
		}
	}
	return put("shared.bin", srvRandom(64<<10, uint64(1000+id)))
}
