package export

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

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
)

// TestServerWithoutOpenat2 runs the jail's and the requests' tests with
// paths resolved by os.Root, as on kernels without openat2: the same
// answers, the same refusals.
func TestServerWithoutOpenat2(t *testing.T) {
	testNoOpenat2 = true
	t.Cleanup(func() { testNoOpenat2 = false })
	if s, _ := testServe(t, Options{}); s.jail.Beneath() {
		t.Fatal("Options.noOpenat2 is ignored")
	}
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
		"PosixNoFollow":       TestServerPosixNoFollow,
		"PosixList":           TestServerPosixList,
		"PosixDelete":         TestServerPosixDelete,
		"Symlink":             TestServerSymlink,
		"HardLink":            TestServerHardLink,
		"Mknod":               TestServerMknod,
		"SetattrTimes":        TestServerSetattrTimes,
		"SetattrOwners":       TestServerSetattrOwners,
		"MkdirExactMode":      TestServerMkdirExactMode,
		"DeepPaths":           TestServerDeepPaths,
	} {
		t.Run(name, test)
	}
}

// TestServerTranscript checks the exact bytes a person typing into nc
// sends and sees.
func TestServerTranscript(t *testing.T) {
	dir := t.TempDir()
	hello := writeFile(t, dir, "hello.txt", "hello world\n")
	mt := time.Unix(1700000000, 123456789)
	if err := os.Chtimes(hello, mt, mt); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testDial(t, addr)

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
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
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
		"GARBAGE FAIL unsupported unknown verb \"GARBAGE\" (want PUT, GET, LIST, STAT, DELETE, RENAME, MKDIR, RMDIR, SETATTR, STATFS, FSYNC, FEATURES, SYMLINK, READLINK, LINK, MKNOD, PING or QUIT)\n" +
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

// randomBytes returns n bytes from a fast seeded PRNG.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n+8)
	r := rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

func TestServerPutGetSizes(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	for _, size := range []int{0, 1, 100 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c.t = t
			data := randomBytes(size, uint64(size))
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
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

func TestServerNames(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
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
	got := entryNames(c.list(""))
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

func TestServerRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, jail.TempPrefix+"crashed", "partial")
	writeFile(t, dir, "sub/deeper/"+jail.TempPrefix+"x", "partial")
	writeFile(t, dir, "sub/keep.txt", "keep")
	testServe(t, Options{Export: dir})
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("stale temporary files left: %v", temps)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub/keep.txt")); err != nil {
		t.Error(err)
	}
}

func TestServerLongLineCloses(t *testing.T) {
	_, addr := testServe(t, Options{})
	c := testConnect(t, addr)
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
	_, addr := testServe(t, Options{IdleTimeout: 200 * time.Millisecond})
	c := testConnect(t, addr)
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
	_, addr := testServe(t, Options{MaxConns: 2})
	c1 := testConnect(t, addr)
	testConnect(t, addr)
	c3 := testDial(t, addr)
	c3.expect("CONNECT FAIL busy too many connections (2)")
	c3.expectEOF()

	c1.send("QUIT\n")
	c1.expectEOF()
	// The slot frees once the server has finished with c1.
	eventually(t, "a free connection slot", func() bool {
		c := testDial(t, addr)
		defer c.nc.Close()
		return c.line() == "CONNECT OK"
	})
}

func TestServerConcurrentClients(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	const clients, rounds = 16, 4
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			if err := concurrentClient(addr, i, rounds); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if temps := tempFiles(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
	// Every client also wrote "shared.bin": whichever won, it is whole.
	b, err := os.ReadFile(filepath.Join(dir, "shared.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for i := range clients {
		ok = ok || bytes.Equal(b, randomBytes(64<<10, uint64(1000+i)))
	}
	if !ok {
		t.Error("shared.bin is not any one client's content")
	}
}

// concurrentClient uploads and downloads its own files over one
// connection, reporting failures as errors (it runs off the test goroutine).
func concurrentClient(addr string, id, rounds int) error {
	nc, err := net.DialTimeout("tcp", addr, testTimeout)
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
		data := randomBytes(1+(id*7919+round*104729)%(1<<20), uint64(id*100+round))
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
	return put("shared.bin", randomBytes(64<<10, uint64(1000+id)))
}

func TestServerCloseDuringTransfer(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f.txt", "old content")
	bigFile(t, dir, "big.bin", 64<<20)
	s, addr := testServe(t, Options{Export: dir})

	up := testConnect(t, addr)
	up.send("PUT f.txt 1000000\n")
	up.expect("PUT OK")
	up.send(strings.Repeat("x", 1000))
	// A download the client does not read: the server blocks sending it.
	down := testConnect(t, addr)
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
	checkAfterFailedPut(t, dir, "f.txt", "old content")
	up.nc.SetReadDeadline(time.Now().Add(testTimeout))
	if b, err := io.ReadAll(up.r); len(b) > 0 {
		t.Errorf("uploader got %q, %v after Close", b, err)
	}
}

func TestNewServerErrors(t *testing.T) {
	if _, err := NewServer(Options{}); err == nil {
		t.Error("NewServer without an export succeeded")
	}
	if _, err := NewServer(Options{Export: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("NewServer on a missing directory succeeded")
	}
	f := writeFile(t, t.TempDir(), "file", "x")
	if _, err := NewServer(Options{Export: f}); err == nil {
		t.Error("NewServer on a file succeeded")
	}
	s, err := NewServer(Options{Export: "."})
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

// TestServerFeatures: FEATURES names the inline PUT; words it is sent
// must be lower-case.
func TestServerFeatures(t *testing.T) {
	_, addr := testServe(t, Options{Export: t.TempDir()})
	c := testConnect(t, addr)
	c.send("FEATURES\n")
	c.expectPrefix("FEATURES OK inline fsync-files attrs")
	c.send("FEATURES Now\n")
	c.expectPrefix("FEATURES FAIL invalid")
	c.send("FEATURES later\n") // a word it does not know: nothing turned on
	c.expectPrefix("FEATURES OK inline")
}

// TestServerDeepPaths: a path far deeper than PATH_MAX below the export
// root (the kernel's limit is per system call, not per depth) works for
// every request, on both kinds of connection; an element over 255 bytes
// and a path over MaxName are nametoolong.
func TestServerDeepPaths(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	for _, posix := range []bool{false, true} {
		c := testConnect(t, addr)
		if posix {
			c = testConnectPosix(t, addr)
		}
		// 41 elements of 200 bytes: 8240 bytes, two PATH_MAXes.
		var elems []string
		for i := range 41 {
			elems = append(elems, fmt.Sprintf("%03d-%v-", i, posix)+strings.Repeat("d", 200-len(fmt.Sprintf("%03d-%v-", i, posix))))
		}
		deep := strings.Join(elems, "/")
		for i := range elems {
			if got := c.roundTrip("MKDIR " + strings.Join(elems[:i+1], "/") + " 0750"); got != "MKDIR OK" {
				t.Fatalf("posix %v: MKDIR level %d: %q", posix, i+1, got)
			}
		}
		file := deep + "/file.txt"
		data := []byte("at the bottom")
		if r := c.put(file, data); !strings.HasPrefix(r, fmt.Sprintf("PUT DONE %d ", len(data))) {
			t.Fatalf("posix %v: PUT: %q", posix, shortLine([]byte(r)))
		}
		c.send("PUT " + deep + "/inline.txt 2 async inline\nhi")
		c.expectPrefix("PUT DONE 2 ")
		if got := c.get(file); !bytes.Equal(got, data) {
			t.Errorf("posix %v: GET: %q", posix, got)
		}
		if e := c.stat(file); e.Size != int64(len(data)) || e.Type != peerproto.TypeFile {
			t.Errorf("posix %v: STAT: %+v", posix, e)
		}
		if e := c.stat(deep); e.Type != peerproto.TypeDir || e.Mode != 0o750 {
			t.Errorf("posix %v: STAT of the deepest directory: %+v", posix, e)
		}
		if got := entryNames(c.list(deep)); !slices.Equal(got, []string{"file.txt", "inline.txt"}) {
			t.Errorf("posix %v: LIST: %q", posix, got)
		}
		for _, tc := range []struct{ req, want string }{
			{"SETATTR " + file + " mode=0600", "SETATTR OK f 0600 "},
			{"RENAME " + file + " " + deep + "/moved.txt", "RENAME OK"},
			{"RENAME " + deep + "/moved.txt " + elems[0] + "/up.txt", "RENAME OK"},
			{"RENAME " + elems[0] + "/up.txt " + deep + "/down.txt", "RENAME OK"},
			{"FSYNC " + deep + "/down.txt", "FSYNC OK"},
			{"DELETE " + deep + "/down.txt", "DELETE OK"},
			{"DELETE " + deep + "/inline.txt", "DELETE OK"},
			{"MKDIR " + deep + "/" + strings.Repeat("x", 256), "MKDIR FAIL nametoolong name too long (limit 16384 bytes, 255 per element)"},
		} {
			if got := c.roundTrip(tc.req); got != tc.want && !(strings.HasSuffix(tc.want, " ") && strings.HasPrefix(got, tc.want)) {
				t.Errorf("posix %v: %s:\n got %q\nwant %q", posix, shortLine([]byte(tc.req)), got, tc.want)
			}
		}
		if posix {
			for _, tc := range []struct{ req, want string }{
				{"SYMLINK " + deep + "/l target", "SYMLINK OK"},
				{"READLINK " + deep + "/l", "READLINK OK target"},
				{"LINK " + deep + "/l " + deep + "/l2", "LINK OK"},
				{"MKNOD " + deep + "/p p 0600", "MKNOD OK"},
				{"DELETE " + deep + "/l", "DELETE OK"},
				{"DELETE " + deep + "/l2", "DELETE OK"},
				{"DELETE " + deep + "/p", "DELETE OK"},
			} {
				if got := c.roundTrip(tc.req); got != tc.want {
					t.Errorf("%s:\n got %q\nwant %q", shortLine([]byte(tc.req)), got, tc.want)
				}
			}
		}
		for i := len(elems); i > 0; i-- {
			if got := c.roundTrip("RMDIR " + strings.Join(elems[:i], "/")); got != "RMDIR OK" {
				t.Fatalf("posix %v: RMDIR level %d: %q", posix, i, got)
			}
		}
		// Deeper than MaxName: refused, and the mount says ENAMETOOLONG.
		tooDeep := strings.Repeat(strings.Repeat("e", 200)+"/", peerproto.MaxName/201+1)
		if got, want := c.roundTrip("STAT "+tooDeep), "STAT FAIL nametoolong name longer than 16384 bytes"; got != want {
			t.Errorf("posix %v: STAT of %d bytes: %q, want %q", posix, len(tooDeep), got, want)
		}
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("left in the export: %v", es)
	}
}
