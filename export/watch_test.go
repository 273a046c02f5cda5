package export

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// eventClient is a test client turned into an event connection.
type eventClient struct{ *testClient }

// watchClient connects in whole-filesystem mode, checks that the server
// offers watching, and watches dirs.
func watchClient(t *testing.T, addr string, dirs ...string) eventClient {
	t.Helper()
	c := testConnect(t, addr)
	if r := c.roundTrip("FEATURES posix"); !strings.Contains(r+" ", " "+peerproto.FeatureWatch+" ") {
		t.Fatalf("FEATURES: %q, want %q in it", r, peerproto.FeatureWatch)
	}
	ec := eventClient{c}
	for _, d := range dirs {
		c.send("WATCH " + peerproto.EncodeName(d) + "\n")
		if got, want := ec.next(), "WATCH OK "+peerproto.EncodeName(d); got != want {
			t.Fatalf("reply %q, want %q", got, want)
		}
	}
	return ec
}

// next returns the next line that is not a TICK, within 5 s.
func (ec eventClient) next() string {
	ec.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if l := ec.line(); l != "TICK" {
			return l
		}
	}
	ec.t.Fatal("nothing but TICKs for 5 s")

	return ""
}

// events reads lines until it has seen each of want (in any order: a
// line itself, or the start of one if it ends with a space) and returns
// the lines read, TICKs left out.
func (ec eventClient) events(want ...string) []string {
	ec.t.Helper()
	var got []string
	left := slices.Clone(want)
	deadline := time.Now().Add(5 * time.Second)
	for len(left) > 0 {
		if time.Now().After(deadline) {
			ec.t.Fatalf("events %q so far; still waiting for %q", got, left)
		}
		l := ec.line()
		if l == "TICK" {
			continue
		}
		got = append(got, l)
		for i, w := range left {
			if l == w || strings.HasSuffix(w, " ") && strings.HasPrefix(l, w) {
				left = slices.Delete(left, i, i+1)
				break
			}
		}
	}
	return got
}

// changedNames reads events until CHANGED has come for each of names
// (got: those read already).
func (ec eventClient) changedNames(got []string, names ...string) {
	ec.t.Helper()
	seen := map[string]bool{}
	note := func(l string) {
		if f := strings.Fields(l); len(f) > 5 && f[0] == "CHANGED" {
			seen[f[5]] = true
		}
	}
	for _, l := range got {
		note(l)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range names {
		for !seen[n] {
			if time.Now().After(deadline) {
				ec.t.Fatalf("no CHANGED for %s (events %q)", n, got)
			}
			l := ec.next()
			got = append(got, l)
			note(l)
		}
	}
}

// quiet checks that nothing but TICKs comes for a while.
func (ec eventClient) quiet(d time.Duration) {
	ec.t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if l := ec.line(); l != "TICK" {
			ec.t.Fatalf("event %q, want none", l)
		}
	}
}

// TestServerWatchReportsChanges: a watched directory's changes are
// reported whoever makes them (here, a process on the peer), each as the
// entry is then: made, written, chmodded, renamed, removed; a watched
// directory's own attributes; nothing of temporary files.
func TestServerWatchReportsChanges(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	ec := watchClient(t, addr, ".", "sub")

	write := func(p, s string, flag int) {
		f, err := os.OpenFile(filepath.Join(dir, p), flag|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "hello", os.O_CREATE|os.O_EXCL)
	got := ec.events("CHANGED f 0644 5 ")
	if l := got[len(got)-1]; !strings.Contains(l, " a ") && !strings.HasSuffix(l, " a") {
		t.Fatalf("event %q does not name a", l)
	}
	write("sub/b", "x", os.O_CREATE|os.O_EXCL)
	ec.events("CHANGED f 0644 1 ")
	write("sub/b", "yz", os.O_APPEND)
	if l := ec.events("CHANGED f 0644 3 "); !strings.Contains(l[len(l)-1], " sub/b ") {
		t.Fatalf("events %q: the append to sub/b not reported as sub/b", l)
	}
	if err := os.Chmod(filepath.Join(dir, "sub/b"), 0o600); err != nil {
		t.Fatal(err)
	}
	ec.events("CHANGED f 0600 3 ")
	if err := os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	ec.events("GONE a", "CHANGED f 0644 5 ")
	if err := os.Remove(filepath.Join(dir, "sub/b")); err != nil {
		t.Fatal(err)
	}
	ec.events("GONE sub/b")
	if err := os.Chmod(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	ec.events("CHANGED d 0700 ") // sub itself, to the watchers of it and of its parent
	// A temporary file (an upload's, an undo record) is never reported.
	write(".peerfs-tmp-upload", "zzz", os.O_CREATE|os.O_EXCL)
	write("sentinel", "s", os.O_CREATE|os.O_EXCL)
	for _, l := range ec.events("CHANGED f 0644 1 ") {
		if strings.Contains(l, "peerfs-tmp") {
			t.Fatalf("a temporary file was reported: %q", l)
		}
	}
}

// TestServerWatchOwnUploads: a PUT through the server is reported as the
// entry it stored, with the version token PUT DONE gave: a client that
// made the change can tell it knows it already.
func TestServerWatchOwnUploads(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	ec := watchClient(t, addr, ".")
	c := attrsClient(t, addr)
	ver := doneVer(t, c.put("f", []byte("content")))
	for _, l := range ec.events("CHANGED f 0644 7 ") {
		if strings.HasPrefix(l, "CHANGED f 0644 7 ") && !strings.Contains(l, "ver="+ver) {
			t.Fatalf("event %q, want the version PUT DONE gave, %s", l, ver)
		}
	}
}

// TestServerWatchMovedDirectory: a watched directory moved (or one above
// it) is no longer watched: its path leads elsewhere now. Its watchers
// hear UNWATCHED for it and for every watched directory under it, and
// the move itself from the watched parent.
func TestServerWatchMovedDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a/deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	ec := watchClient(t, addr, ".", "a", "a/deep")
	if err := os.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	// b, and the root itself (its times changed).
	ec.changedNames(ec.events("UNWATCHED a", "UNWATCHED a/deep", "GONE a"), "b", ".")
	// Changes under the moved directory are not reported as a's.
	if err := os.WriteFile(filepath.Join(dir, "b/deep/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ec.quiet(2 * peerproto.TickEvery)
	// Watched again under its new name, it reports again.
	ec.send("WATCH b/deep\n")
	if got := ec.next(); got != "WATCH OK b/deep" {
		t.Fatalf("reply %q", got)
	}
	if err := os.Remove(filepath.Join(dir, "b/deep/x")); err != nil {
		t.Fatal(err)
	}
	ec.events("GONE b/deep/x")
}

// TestServerWatchRequests: what an event connection answers. Watching
// needs whole-filesystem mode; a file, a missing directory or a path out
// of the export is refused; UNWATCH ends the reports; PING is answered;
// other requests are refused and the connection goes on; a quiet
// connection gets a TICK every peerproto.TickEvery.
func TestServerWatchRequests(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "file", "x")
	_, addr := testServe(t, Options{Export: dir})

	plain := testConnect(t, addr)
	plain.send("WATCH .\n")
	plain.expectPrefix("WATCH FAIL unsupported ")
	plain.expect("PONG" + func() string { plain.send("PING\n"); return "" }())

	ec := watchClient(t, addr, ".")
	for _, tc := range []struct{ req, want string }{
		{"WATCH file", "WATCH FAIL notdir "},
		{"WATCH missing", "WATCH FAIL notfound "},
		{"WATCH ../up", "WATCH FAIL "},
		{"WATCH", "WATCH FAIL invalid "},
		{"STAT file", "STAT FAIL state "},
		{"PING", "PONG"},
		{"UNWATCH .", "UNWATCH OK ."},
	} {
		ec.send(tc.req + "\n")
		if got := ec.next(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: reply %q, want %q...", tc.req, got, tc.want)
		}
	}
	writeFile(t, dir, "new", "y")
	start := time.Now()
	if l := ec.line(); l != "TICK" {
		t.Fatalf("after UNWATCH: %q, want only TICKs", l)
	}
	if d := time.Since(start); d > 10*peerproto.TickEvery {
		t.Errorf("the first TICK came after %v", d)
	}
	ec.quiet(2 * peerproto.TickEvery)
	ec.send("QUIT\n")
	ec.expectEOF()
}

// TestServerWatchLeftOpenAtClose: an event connection open when the
// server closes ends, and with it the server's watching: Close does not
// hang (testServe's cleanup checks that no goroutine is left).
func TestServerWatchLeftOpenAtClose(t *testing.T) {
	dir := t.TempDir()
	s, addr := testServe(t, Options{Export: dir})
	ec := watchClient(t, addr, ".")
	writeFile(t, dir, "f", "x")
	ec.events("CHANGED f ")
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Close hung with an event connection open")
	}
}

// TestServerWatchReplacedDirectory: a watched directory replaced by
// another (a rename over it while a process holds it open, so that its
// IN_DELETE_SELF waits), or removed and made again, is no longer
// watched: UNWATCHED, since its path leads to another directory. An
// entry made in a watched directory reports the directory's own new
// attributes too (its times, its link count).
func TestServerWatchReplacedDirectory(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"x", "y", "z"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, addr := testServe(t, Options{Export: dir})
	ec := watchClient(t, addr, ".", "x", "z")
	held, err := os.Open(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// (os.Rename refuses to replace a directory.)
	if err := unix.Rename(filepath.Join(dir, "y"), filepath.Join(dir, "x")); err != nil {
		t.Fatal(err)
	}
	ec.events("UNWATCHED x")
	if err := os.Remove(filepath.Join(dir, "z")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "z"), 0o700); err != nil {
		t.Fatal(err)
	}
	ec.events("UNWATCHED z", "CHANGED d 0700 ")
	// x is watched anew; a file made in it reports x itself as well,
	// with its new link count and times, to x's watchers.
	ec.send("WATCH x\n")
	ec.events("WATCH OK x")
	if err := os.Mkdir(filepath.Join(dir, "x", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	got := ec.events("CHANGED d 0755 4096 ")
	seen := map[string]bool{}
	for _, l := range got {
		if f := strings.Fields(l); len(f) > 5 && f[0] == "CHANGED" {
			seen[f[5]] = strings.Contains(l, " nlink=3 ")
		}
	}
	// Until x's own report comes (next fails the test after a timeout):
	// another name's event may come first (z's from before, late).
	for _, ok := seen["x"]; !ok; _, ok = seen["x"] {
		l := ec.next()
		if f := strings.Fields(l); len(f) > 5 && f[0] == "CHANGED" {
			seen[f[5]] = strings.Contains(l, " nlink=3 ")
		}
	}
	if !seen["x"] {
		t.Errorf("events %v: x not reported with its new link count 3", seen)
	}
}

// checkWatchBelow fails t unless the watcher's count of directories
// watched under each path matches its directories.
func checkWatchBelow(t *testing.T, s *Server) {
	t.Helper()
	s.watchMu.Lock()
	w := s.watch
	s.watchMu.Unlock()
	if w == nil {
		t.Fatal("no watcher")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	want := map[string]int{}
	for p := range w.dirs {
		for p != "" {
			p = parentOf(p)
			want[p]++
		}
	}
	if len(want) != len(w.below) {
		t.Fatalf("below %v, the watched directories say %v", w.below, want)
	}
	for p, n := range want {
		if w.below[p] != n {
			t.Fatalf("below[%q] = %d, %d watched under it", p, w.below[p], n)
		}
	}
}

// TestServerWatchRemovedTree: a watched tree removed on the peer ends
// the watches of every directory in it, and only those (not a sibling
// whose name starts the same); directories made and removed in a
// watched one (each of which drops what is watched at its path) leave
// the others watched.
func TestServerWatchRemovedTree(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a/x/deep", "ab/y"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, addr := testServe(t, Options{Export: dir})
	ec := watchClient(t, addr, ".", "a", "a/x", "a/x/deep", "ab", "ab/y")
	checkWatchBelow(t, s)
	for i := range 20 {
		p := filepath.Join(dir, "ab", "tmp"+string(rune('a'+i)))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	got := ec.events("UNWATCHED a", "UNWATCHED a/x", "UNWATCHED a/x/deep", "GONE a")
	for _, l := range got {
		if strings.HasPrefix(l, "UNWATCHED ab") {
			t.Fatalf("%q: a sibling dropped with a (events %q)", l, got)
		}
	}
	checkWatchBelow(t, s)
	// ab and ab/y still report.
	writeFile(t, dir, "ab/y/new", "x")
	ec.changedNames(nil, "ab/y/new")
	checkWatchBelow(t, s)
}
