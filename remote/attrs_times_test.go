package remote

import (
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// timesTTL is the attribute timeout of the tests of this file: short, so
// that a sleep past it makes the Store ask the peer again.
const timesTTL = 40 * time.Millisecond

// timesOf returns the mtime and ctime s shows of bob's path.
func timesOf(t *testing.T, s *testStore, path string) (mtime, ctime int64) {
	t.Helper()
	fi, err := s.Stat(testCtx(t), "bob", path)
	if err != nil {
		t.Fatalf("Stat %s: %v", path, err)
	}
	st := fusefs.StatOf(fi)
	if st == nil || st.Ctime.IsZero() {
		t.Fatalf("Stat %s: no ctime (%+v)", path, st)
	}
	return fi.ModTime().UnixNano(), st.Ctime.UnixNano()
}

// diskTimes returns the mtime and ctime of path on bob's disk.
func diskTimes(t *testing.T, bob *testPeer, path string) (mtime, ctime int64) {
	t.Helper()
	fi, err := os.Lstat(bob.path(path))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Mtim.Nano(), st.Ctim.Nano()
}

// steady checks that the times s shows of each of paths stay what they
// are now once every cache expired, the peer asked again.
func steady(t *testing.T, s *testStore, what string, paths ...string) {
	t.Helper()
	type times struct{ m, c int64 }
	before := map[string]times{}
	for _, p := range paths {
		m, c := timesOf(t, s, p)
		before[p] = times{m, c}
	}
	time.Sleep(3 * timesTTL)
	for _, p := range paths {
		if m, c := timesOf(t, s, p); (times{m, c}) != before[p] {
			t.Errorf("after %s, %q: mtime %d ctime %d, then %d %d with nothing changed", what, p, before[p].m, before[p].c, m, c)
		}
	}
}

// TestOwnTimesSteady: the times of what this mount changed (directories
// made, removed, renamed in, chmodded and utimed, written behind; files
// stored, renamed over, renamed) stay what the mount showed when the
// change was made, once its caches expired and the peer answers with
// its own clock's; another writer's change on the peer after that shows.
func TestOwnTimesSteady(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.AttrTTL = timesTTL })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	put := func(path, data string) {
		t.Helper()
		fh := s.open(t, "bob", path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		s.write(t, fh, data, 0)
		if err := s.Flush(ctx, fh); err != nil {
			t.Fatal(err)
		}
		s.release(t, fh)
	}
	sync := func() {
		t.Helper()
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	steady(t, s, "mkdir d", "", "d")
	sync()
	steady(t, s, "mkdir d, carried out", "", "d")

	put("d/f", "x")
	steady(t, s, "a new file d/f", "d", "d/f")
	put("d/f", "new content")
	steady(t, s, "new content for d/f", "d", "d/f")

	if _, err := s.Mkdir(ctx, "bob", "d/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Chmod(ctx, "bob", "d/sub", 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_600_000_000, 0)
	if _, err := s.Chtimes(ctx, "bob", "d/sub", fusefs.TimeChange{}, fusefs.TimeChange{Set: true, T: at}); err != nil {
		t.Fatal(err)
	}
	sync()
	steady(t, s, "mkdir, chmod and utimes of d/sub", "d", "d/sub")
	if m, _ := timesOf(t, s, "d/sub"); m != at.UnixNano() {
		t.Errorf("d/sub's mtime %d, want the one set, %d", m, at.UnixNano())
	}

	if err := s.Rename(ctx, "bob", "d/f", "d/sub/g"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "bob", "d/sub/g"); err != nil {
		t.Fatal(err)
	}
	sync()
	steady(t, s, "rename d/f d/sub/g, then its removal", "d", "d/sub")

	// Another writer's change, on the peer's disk: shown once the
	// caches expire, as the peer has it.
	time.Sleep(20 * time.Millisecond)
	if err := os.WriteFile(bob.path("d/other"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	wm, wc := diskTimes(t, bob, "d")
	if m, c := timesOf(t, s, "d"); m != wm || c != wc {
		t.Errorf("d after another writer's file in it: mtime %d ctime %d, want the peer's %d %d", m, c, wm, wc)
	}
}

// TestOwnTimesShownUntilCarriedOut: while a removal written behind waits
// to go out, the directory shows the times the removal gave it, also
// once the peer was asked again (its answer predates the removal), and
// still after it was carried out.
func TestOwnTimesShownUntilCarriedOut(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/f", []byte("x"), 0o644)
	s, open := gatedStore(t, bob, "DELETE", func(o *Options) { o.AttrTTL = timesTTL })
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "d")
	_, c0 := timesOf(t, s, "d")
	returnsSoon(t, "Remove d/f", func() error { return s.Remove(ctx, "bob", "d/f") })
	m1, c1 := timesOf(t, s, "d")
	if c1 <= c0 {
		t.Errorf("d's ctime after the removal: %d, not after %d", c1, c0)
	}
	time.Sleep(3 * timesTTL)
	if m, c := timesOf(t, s, "d"); m != m1 || c != c1 {
		t.Errorf("d while its removal waits: mtime %d ctime %d, then (the peer asked again) %d %d", m1, c1, m, c)
	}
	open()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if bob.exists(t, "d/f") {
		t.Fatal("d/f still on bob")
	}
	time.Sleep(3 * timesTTL)
	if m, c := timesOf(t, s, "d"); m != m1 || c != c1 {
		t.Errorf("d once its removal was carried out: mtime %d ctime %d, then %d %d", m1, c1, m, c)
	}
}

// TestOwnTimesMoveWithDirectory: a renamed directory's entries keep the
// times shown under the old name.
func TestOwnTimesMoveWithDirectory(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.AttrTTL = timesTTL })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		if _, err := s.Mkdir(ctx, "bob", d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m, c := timesOf(t, s, "a/b")
	if err := s.Rename(ctx, "bob", "a", "z"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	if m2, c2 := timesOf(t, s, "z/b"); m2 != m || c2 != c {
		t.Errorf("a/b renamed with a to z/b: mtime %d ctime %d, then %d %d", m, c, m2, c2)
	}
	steady(t, s, "the rename of a to z", "", "z", "z/b", "z/b/c")
}

// TestOwnTimesLapse: a guess whose peer's times never came (its change
// is held back) is let go of after guessLapse: then the peer's answer
// shows.
func TestOwnTimesLapse(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/f", []byte("x"), 0o644)
	var skew atomic.Int64
	s, open := gatedStore(t, bob, "DELETE", func(o *Options) {
		o.AttrTTL = timesTTL
		o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	defer open()
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "d")
	returnsSoon(t, "Remove d/f", func() error { return s.Remove(ctx, "bob", "d/f") })
	skew.Store(int64(guessLapse + time.Second))
	wm, wc := diskTimes(t, bob, "d")
	if m, c := timesOf(t, s, "d"); m != wm || c != wc {
		t.Errorf("d's guess past guessLapse: mtime %d ctime %d, want the peer's %d %d", m, c, wm, wc)
	}
}

// TestAttrCacheShown: the rules of attrCache.shown, on its own.
func TestAttrCacheShown(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := newAttrCache(time.Second, func() time.Time { return now })
	e := func(m, c int64) peerproto.Entry {
		return peerproto.Entry{Type: peerproto.TypeDir, Mode: 0o755, Mtime: m, Ctime: c, Has: peerproto.AttrCtime}
	}
	a.remember("d", e(10, 10), true)
	a.entryChanged("d", 20, false, false) // the guess: 20, 20
	check := func(what string, in peerproto.Entry, m, c int64) {
		t.Helper()
		if got := a.shown("d", in); got.Mtime != m || got.Ctime != c {
			t.Errorf("%s: shown %d %d, want %d %d", what, got.Mtime, got.Ctime, m, c)
		}
	}
	check("untied, the peer's old times", e(10, 10), 20, 20)
	check("untied, the peer's new times", e(25, 25), 20, 20)
	a.tie("d", 25, 26, true)
	check("tied, the peer's times tied", e(25, 26), 20, 20)
	check("tied, an answer from before the change", e(10, 10), 20, 20)
	check("tied, a later change", e(27, 27), 27, 27)
	check("let go", e(25, 26), 25, 26)
	a.entryChanged("d", 30, false, false)
	a.tie("d", 0, 0, false)
	check("a guess whose answer had no times", e(31, 31), 31, 31)
	// A file with other names gets no guess: its other names (other
	// paths) would show other times.
	a.remember("l", peerproto.Entry{Type: peerproto.TypeFile, Mtime: 5, Ctime: 5, Nlink: 2, Has: peerproto.AttrCtime | peerproto.AttrNlink}, true)
	a.changedAt("l", 50)
	if got := a.shown("l", peerproto.Entry{Type: peerproto.TypeFile, Mtime: 5, Ctime: 51, Nlink: 2, Has: peerproto.AttrCtime | peerproto.AttrNlink}); got.Ctime != 51 {
		t.Errorf("a guess for a file with two names: shown ctime %d, want the peer's 51", got.Ctime)
	}
	// Without a ctime (a peer that says none), nothing is guessed.
	a.remember("n", peerproto.Entry{Type: peerproto.TypeDir, Mtime: 5}, true)
	a.entryChanged("n", 40, false, false)
	if got := a.shown("n", peerproto.Entry{Type: peerproto.TypeDir, Mtime: 41}); got.Mtime != 41 {
		t.Errorf("a guess on a peer without ctimes: shown mtime %d, want the peer's 41", got.Mtime)
	}
}
