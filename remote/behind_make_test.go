package remote

import (
	"bytes"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
)

// gatedStore is a Store on bob through a proxy that holds every request
// line holding verb until open is called (once; the test's end calls it
// too).
func gatedStore(t *testing.T, bob *testPeer, verb string, tune func(*Options)) (s *testStore, open func()) {
	t.Helper()
	release := make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	s = newStoreWith(t, t.TempDir(), tune)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: gateProxy(t, bob.addr, verb, release)}})
	return s, open
}

// returnsSoon runs fn and fails the test if it does not return within
// testTimeout (it waited for a request the test holds back).
func returnsSoon(t *testing.T, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("%s waited for the peer's answer: not written behind", what)
	}
}

// TestMkdirWrittenBehind: mkdir -p of three levels and a file in the
// deepest, while the peer's MKDIRs are held: the mkdirs return at once,
// the directories show here with the mode asked (and their parents' new
// link counts), a listing of a new one is empty without asking the peer,
// and the file's upload waits for the directories, which reach the peer
// in order once released.
func TestMkdirWrittenBehind(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s, open := gatedStore(t, bob, "MKDIR", nil)
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		returnsSoon(t, "Mkdir "+d, func() error {
			fi, err := s.Mkdir(ctx, "bob", d, 0o750)
			if err == nil && (!fi.IsDir() || fi.Mode().Perm() != 0o750) {
				t.Errorf("Mkdir %s answered %v, want a directory 0750", d, fi.Mode())
			}
			return err
		})
	}
	if bob.exists(t, "a") {
		t.Fatal("bob has a while its MKDIR is held")
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"a"}) {
		t.Errorf("root lists %q while the MKDIRs are held, want [a]", got)
	}
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		fi, err := s.Stat(ctx, "bob", d)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
			t.Errorf("Stat %s while held: %v, %v; want a directory 0750", d, fi, err)
		}
	}
	if got := s.names(t, "bob", "a/b/c"); len(got) != 0 {
		t.Errorf("a/b/c lists %q, want nothing", got)
	}
	fh := s.open(t, "bob", "a/b/c/f", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	s.write(t, fh, "in the deepest", 0)
	flushed := s.flushAsync(t, fh)
	select {
	case err := <-flushed:
		t.Fatalf("the upload into a directory not made on the peer returned: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	open()
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after the MKDIRs: %v", err)
	}
	s.release(t, fh)
	if got := bob.content(t, "a/b/c/f"); got != "in the deepest" {
		t.Errorf("bob's a/b/c/f: %q", got)
	}
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		if m := bob.mode(t, d); !bob.isDir(t, d) || m.Perm() != 0o750 {
			t.Errorf("bob's %s: %v, want a directory 0750", d, m)
		}
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if pend := len(s.cache.Journal().Pending()); pend != 0 {
		t.Errorf("journal holds %d operations after FlushAll", pend)
	}
}

// TestMkdirBehindReadsWait: while a MKDIR waits, what the peer says is out
// of date (it has no such directory): a listing that goes to the peer
// (its cached one expired) waits for the MKDIR, and shows the directory.
func TestMkdirBehindReadsWait(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	clock := newFakeClock()
	s, open := gatedStore(t, bob, "MKDIR", func(o *Options) { o.AttrTTL, o.Now = time.Second, clock.Now })
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	returnsSoon(t, "Mkdir", func() error { _, err := s.Mkdir(ctx, "bob", "new", 0o755); return err })
	clock.advance(time.Minute) // every cached answer expires
	listed := make(chan []string, 1)
	go func() { listed <- s.names(t, "bob", "") }()
	select {
	case got := <-listed:
		t.Fatalf("the root was listed (%q) while the MKDIR was held", got)
	case <-time.After(50 * time.Millisecond):
	}
	open()
	if got := <-listed; !slices.Equal(got, []string{"new"}) {
		t.Errorf("root lists %q after the MKDIR, want [new]", got)
	}
}

// TestMkdirBehindFindsName: a MKDIR written behind that finds the name
// taken on the peer (made there behind this mount's back) is done if a
// directory holds it, and refused if a file does: the next fsync says
// so, and the name shows as the peer has it.
func TestMkdirBehindFindsName(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	if err := os.Mkdir(bob.path("dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "dir/inside", []byte("x"), 0o644)
	if _, err := s.Mkdir(ctx, "bob", "dir", 0o755); err != nil {
		t.Fatalf("Mkdir dir (unknown here): %v", err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Errorf("Sync after a MKDIR that found a directory: %v, want nil", err)
	}
	if got := s.names(t, "bob", "dir"); !slices.Equal(got, []string{"inside"}) {
		t.Errorf("dir found on the peer lists %q, want [inside]", got)
	}
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	bob.writeFile(t, "file", []byte("a file"), 0o644)
	if _, err := s.Mkdir(ctx, "bob", "file", 0o755); err != nil {
		t.Fatalf("Mkdir file (unknown here): %v", err)
	}
	if err := s.Sync(ctx); err == nil {
		t.Error("Sync after a MKDIR refused (a file has the name): nil, want the refusal")
	}
	if fi, err := s.Stat(ctx, "bob", "file"); err != nil || fi.IsDir() || fi.Size() != int64(len("a file")) {
		t.Errorf("Stat file after the refusal: %v, %v; want the peer's file", fi, err)
	}
	if got := bob.content(t, "file"); got != "a file" {
		t.Errorf("bob's file: %q", got)
	}
	// After a refusal the peer's changes go synchronously for a while:
	// the program hears the next one itself.
	bob.writeFile(t, "file2", []byte("another"), 0o644)
	if _, err := s.Mkdir(ctx, "bob", "file2", 0o755); errnoOf(err) == 0 {
		t.Errorf("Mkdir over a file right after a refusal: %v, want an error", err)
	}
}

// TestMkdirBehindOnlyWherePredicted: what the mount cannot predict the
// peer's answer to goes synchronously: a mode with setgid, a name it does
// not know to be absent.
func TestMkdirBehindOnlyWherePredicted(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s, open := gatedStore(t, bob, "MKDIR", nil)
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	done := make(chan error, 1)
	go func() { _, err := s.Mkdir(ctx, "bob", "shared", 0o775|os.ModeSetgid); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("Mkdir with setgid returned (%v) while MKDIRs are held: written behind", err)
	case <-time.After(50 * time.Millisecond):
	}
	open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if pend := len(s.cache.Journal().Pending()); pend != 0 {
		t.Errorf("journal holds %d operations", pend)
	}
}

// TestSetattrWrittenBehind: utimes and chmod of a directory (tar's last
// step, chmod -R) are acknowledged while the peer's SETATTRs are held,
// show at once, and reach the peer in order; a regular file's go
// synchronously (its peer may give it a new version token with them,
// which a copy written here later must be based on), and a file written
// after replaces the peer's without a conflict.
func TestSetattrWrittenBehind(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/f", []byte("planted"), 0o644)
	s, open := gatedStore(t, bob, "SETATTR", nil)
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	s.names(t, "bob", "d")
	when := time.Date(2020, 2, 29, 12, 0, 0, 0, time.UTC)
	returnsSoon(t, "Chtimes d", func() error {
		fi, err := s.Chtimes(ctx, "bob", "d", fusefs.TimeChange{Set: true, T: when}, fusefs.TimeChange{Set: true, T: when})
		if err == nil && !fi.ModTime().Equal(when) {
			t.Errorf("Chtimes answered mtime %v, want %v", fi.ModTime(), when)
		}
		return err
	})
	returnsSoon(t, "Chmod d", func() error {
		fi, err := s.Chmod(ctx, "bob", "d", 0o700)
		if err == nil && fi.Mode().Perm() != 0o700 {
			t.Errorf("Chmod answered %v, want 0700", fi.Mode())
		}
		return err
	})
	if fi, err := s.Stat(ctx, "bob", "d"); err != nil || fi.Mode().Perm() != 0o700 || !fi.ModTime().Equal(when) {
		t.Errorf("Stat d while held: %v, %v; want 0700 at %v", fi, err, when)
	}
	if m := bob.mode(t, "d"); m.Perm() != 0o755 {
		t.Fatalf("bob's d is %v while the SETATTRs are held", m)
	}
	chmodFile := make(chan error, 1)
	go func() { _, err := s.Chmod(ctx, "bob", "d/f", 0o600); chmodFile <- err }()
	select {
	case err := <-chmodFile:
		t.Fatalf("Chmod of a file returned (%v) while SETATTRs are held: written behind", err)
	case <-time.After(50 * time.Millisecond):
	}
	open()
	if err := <-chmodFile; err != nil {
		t.Fatal(err)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(bob.path("d"))
	if err != nil || fi.Mode().Perm() != 0o700 || !fi.ModTime().Equal(when) {
		t.Errorf("bob's d after FlushAll: %v, %v; want 0700 at %v", fi, err, when)
	}
	if m := bob.mode(t, "d/f"); m.Perm() != 0o600 {
		t.Errorf("bob's d/f: %v, want 0600", m)
	}
	fh := s.open(t, "bob", "d/f", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, fh, "rewritten here", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("upload after the chmod: %v", err)
	}
	s.release(t, fh)
	if got := bob.content(t, "d/f"); got != "rewritten here" {
		t.Errorf("bob's d/f: %q", got)
	}
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"f"}) {
		t.Errorf("d lists %q after the upload, want [f] (no conflict copy)", got)
	}
}

// TestMkdirSetattrReplayedAfterCrash: mkdirs and a directory's chmod and
// utimes acknowledged by a run that ended before the peer had them are
// carried out by the next run, in order.
func TestMkdirSetattrReplayedAfterCrash(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	proxy := heldBackProxy(t, bob.addr, "MKDIR", "SETATTR")
	dir := t.TempDir()
	first := newStoreWith(t, dir, nil)
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	first.names(t, "bob", "")
	statRoot(t, first, "bob")
	when := time.Date(2021, 6, 1, 8, 30, 0, 0, time.UTC)
	for _, d := range []string{"x", "x/y"} {
		if _, err := first.Mkdir(ctx, "bob", d, 0o751); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := first.Chmod(ctx, "bob", "x", 0o711); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Chtimes(ctx, "bob", "x", fusefs.TimeChange{}, fusefs.TimeChange{Set: true, T: when}); err != nil {
		t.Fatal(err)
	}
	first.close()
	var ops []string
	for _, op := range first.cache.Journal().Pending() {
		ops = append(ops, op.Op+" "+op.Path)
	}
	if want := []string{"mkdir x", "mkdir x/y", "setattr x", "setattr x"}; !slices.Equal(ops, want) {
		t.Fatalf("journal when the first run ends: %q, want %q", ops, want)
	}

	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	second.drainReplayed(t, ctx)
	if m := bob.mode(t, "x/y"); !bob.isDir(t, "x/y") || m.Perm() != 0o751 {
		t.Errorf("bob's x/y after the replay: %v, want a directory 0751", m)
	}
	// The utimes after the mkdir of x/y (which moved x's mtime): x's
	// mtime is the one set.
	if fi, err := os.Stat(bob.path("x")); err != nil || fi.Mode().Perm() != 0o711 || !fi.ModTime().Equal(when) {
		t.Errorf("bob's x after the replay: %v, %v; want 0711 at %v", fi, err, when)
	}
	if pend := second.cache.Journal().Pending(); len(pend) != 0 {
		t.Errorf("journal after the replay: %v", pend)
	}
}

// isDir reports whether name is a directory on p.
func (p *testPeer) isDir(t *testing.T, name string) bool {
	t.Helper()
	fi, err := os.Stat(p.path(name))
	return err == nil && fi.IsDir()
}

// TestDirTimesBehindShowWhatPeerStored: once a directory's utimes written
// behind is carried out, the mount shows the time the peer stored (on a
// filesystem of whole seconds, not the nanoseconds asked), from the
// SETATTR's answer, without waiting for the attributes to expire.
func TestDirTimesBehindShowWhatPeerStored(t *testing.T) {
	bob := startPeer(t, testfs.Coarse(t, 32))
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.AttrTTL = time.Minute })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	when := time.Date(2020, 2, 29, 12, 0, 0, 123456789, time.UTC)
	fi, err := s.Chtimes(ctx, "bob", "d", fusefs.TimeChange{Set: true, T: when}, fusefs.TimeChange{Set: true, T: when})
	if err != nil || !fi.ModTime().Equal(when) {
		t.Fatalf("Chtimes: %v, %v; want the time asked until the peer answers", fi, err)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	pfi, err := os.Stat(bob.path("d"))
	if err != nil {
		t.Fatal(err)
	}
	if !pfi.ModTime().Equal(when.Truncate(time.Second)) {
		t.Fatalf("the peer stored %v: not a whole-second filesystem?", pfi.ModTime())
	}
	if fi, err := s.Stat(ctx, "bob", "d"); err != nil || !fi.ModTime().Equal(pfi.ModTime()) {
		t.Errorf("Stat d after the peer carried the utimes out: %v, %v; the peer stored %v", fi.ModTime(), err, pfi.ModTime())
	}
}

// TestMkdirFoundNameCheckLost: a MKDIR written behind finds its name
// taken on the peer, and the STATs that tell a directory (done) from a
// file (a refusal) are lost with their connections for a moment: not
// reported as a refusal, but sent again and checked once the peer
// answers (a directory: done, no error at the next fsync).
func TestMkdirFoundNameCheckLost(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	var cut atomic.Bool
	var until atomic.Int64 // STATs are cut until then (ns)
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("STAT")) && time.Now().UnixNano() < until.Load() {
			cut.Store(true)
			return nil, true
		}
		return b, false
	}, nil)
	s := newStoreWith(t, t.TempDir(), nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	if err := os.Mkdir(bob.path("d"), 0o700); err != nil { // behind the mount's back
		t.Fatal(err)
	}
	until.Store(time.Now().Add(300 * time.Millisecond).UnixNano())
	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatalf("Mkdir d (unknown here): %v", err)
	}
	deadline := time.Now().Add(testTimeout)
	var err error
	for err = s.Sync(ctx); err != nil && time.Now().Before(deadline) && s.ns.pending(); err = s.Sync(ctx) {
		time.Sleep(50 * time.Millisecond) // the peer answers STATs again after 300 ms
	}
	if !cut.Load() {
		t.Fatal("no STAT was cut: the test did not test")
	}
	if err != nil || s.ns.pending() {
		t.Errorf("Sync after the check was answered: %v (pending %v); want nil: the MKDIR found a directory", err, s.ns.pending())
	}
	if !bob.isDir(t, "d") {
		t.Error("bob's d is gone")
	}
}

// TestSetattrAnswerNotOverChangeAfter: the peer's answer to a directory's
// chmod written behind is remembered once carried out, unless another
// change to it waits: chmod 700 is held at the peer while chmod 750 is
// queued behind it; when 700's answer comes, the mount keeps showing
// 750, not the answer, while 750's SETATTR is still on its way.
func TestSetattrAnswerNotOverChangeAfter(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	first, second := make(chan struct{}), make(chan struct{})
	firstAt, secondAt := make(chan struct{}, 1), make(chan struct{}, 1)
	var n atomic.Int32
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("SETATTR")) {
			switch n.Add(1) {
			case 1:
				firstAt <- struct{}{}
				<-first
			case 2:
				secondAt <- struct{}{}
				<-second
			}
		}
		return b, false
	}, nil)
	var once1, once2 sync.Once
	open1, open2 := func() { once1.Do(func() { close(first) }) }, func() { once2.Do(func() { close(second) }) }
	t.Cleanup(open1)
	t.Cleanup(open2)
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.AttrTTL = time.Minute })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	statRoot(t, s, "bob")
	returnsSoon(t, "Chmod 0700", func() error { _, err := s.Chmod(ctx, "bob", "d", 0o700); return err })
	select {
	case <-firstAt: // sent alone, held at the proxy
	case <-time.After(testTimeout):
		t.Fatal("the first SETATTR never reached the proxy")
	}
	returnsSoon(t, "Chmod 0750", func() error { _, err := s.Chmod(ctx, "bob", "d", 0o750); return err })
	open1()
	select {
	case <-secondAt:
	case <-time.After(testTimeout):
		t.Fatal("the second SETATTR never reached the proxy")
	}
	if fi, err := s.Stat(ctx, "bob", "d"); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("Stat d with 0750 on its way: %v, %v; want 0750 (not the answer to 0700)", fi.Mode(), err)
	}
	open2()
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if m := bob.mode(t, "d"); m != 0o750 {
		t.Errorf("bob's d: %v, want 0750", m)
	}
}

// TestMkdirInSetgidRootShowsSetgid: a mkdir in the export root, whose
// attributes this mount has not asked (the root only listed), is not
// written behind on attributes made up for the root: the root is setgid
// here, and the new directory shows the setgid bit it inherits.
func TestMkdirInSetgidRootShowsSetgid(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Chmod(bob.export, 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	s := newStoreWith(t, t.TempDir(), nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	fi, err := s.Mkdir(ctx, "bob", "top", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("Mkdir in a setgid root answered %v, want setgid (the peer's directory has it: %v)", fi.Mode(), bob.mode(t, "top"))
	}
}
