package remote

// Second review of the guessed times (attrs_times.go), at e267719: each
// test shows one defect.

import (
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// guessState describes path's guess in s's attribute cache, for messages.
func guessState(s *testStore, path string) string {
	p, err := s.peer("bob")
	if err != nil {
		return "no peer"
	}
	p.attrs.mu.Lock()
	defer p.attrs.mu.Unlock()
	g, ok := p.attrs.guesses[path]
	if !ok {
		return "no guess"
	}
	if g.tied {
		return "tied guess"
	}
	return "UNTIED guess (shown whatever the peer says, until it lapses after 30 s)"
}

// tempIn reports whether bob's directory dir holds a PUT's temporary file.
func tempIn(t *testing.T, bob *testPeer, dir string) bool {
	des, err := os.ReadDir(bob.path(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".peerfs-tmp-") {
			return true
		}
	}
	return false
}

// R2-1. A new file's PUT DONE read while a batch written behind (rm of
// another entry of the directory, with its STAT of the directory) is on
// its way: entryChanged makes a new guess, tie() skips it (pending), and
// the batch's STAT answer (settled) is for the older guess's number:
// nothing ties the new guess. It is shown whatever the peer says for
// 30 s: another writer's later change in the directory is hidden (and
// once it lapses, the times move with nothing changed).
func TestReview2TimesPutDoneDuringBatchNeverTied(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/y", []byte("y"), 0o644)
	proxy, gates := reviewProxy(t, bob.addr, "PUT d/new", "DELETE d/y")
	s := reviewStore(t, proxy)
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	fh := s.open(t, "bob", "d/new", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "new", 0)
	flushed := s.flushAsync(t, fh)
	gates["PUT d/new"].wait(t, "the PUT")
	returnsSoon(t, "Remove d/y", func() error { return s.Remove(ctx, "bob", "d/y") })
	gates["DELETE d/y"].wait(t, "the DELETE")
	gates["PUT d/new"].open()
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	gates["DELETE d/y"].open()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	timesOf(t, s, "d")
	// Another writer, well after this mount's changes were answered.
	time.Sleep(20 * time.Millisecond)
	bob.writeFile(t, "d/z", []byte("z"), 0o644)
	_, zc := diskTimes(t, bob, "d/z")
	time.Sleep(3 * timesTTL) // every cache expired
	// As the peer has them (its clock may stamp the directory a tick
	// before d/z: ext4's coarse-grained times).
	wm, wc := diskTimes(t, bob, "d")
	if m, c := timesOf(t, s, "d"); m != wm || c != wc {
		t.Errorf("d after another writer made d/z (ctime %d), %v after it: mtime %d ctime %d; the peer's %d %d; d's guess: %s",
			zc, 3*timesTTL, m, c, wm, wc, guessState(s, "d"))
	}
}

// bigContent is a file's content whose tail (a run of Z) a reviewProxy
// can hold, after the PUT's header went through: the peer has found the
// directory (pre-dir-*) and made its temporary file.
func bigContent() string {
	return strings.Repeat("a", 2<<20) + strings.Repeat("Z", 1<<20)
}

// R2-2. pre-dir-* are the directory's times when the peer found it for
// the PUT (locate), not right before the PUT's own change: a change of
// the directory during the transfer (here another upload's new content,
// renamed over its file) lands between. kept() then takes those times
// for the ones shown before: the directory's times move with nothing
// changed here (two files' content replaced, in place on a local disk),
// and back.
func TestReview2TimesConcurrentOverwritesStalePreDir(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/f", []byte("old f"), 0o644)
	bob.writeFile(t, "d/g", []byte("old g"), 0o644)
	proxy, gates := reviewProxy(t, bob.addr, "ZZZZZZZZZZZZZZZZ")
	s := reviewStore(t, proxy)
	_ = testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	m0, c0 := timesOf(t, s, "d")
	time.Sleep(10 * time.Millisecond)

	ff := s.open(t, "bob", "d/f", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, ff, bigContent(), 0)
	fDone := s.flushAsync(t, ff)
	gates["ZZZZZZZZZZZZZZZZ"].wait(t, "d/f's payload")
	testutil.Eventually(t, "d/f's temporary file on bob", func() bool { return tempIn(t, bob, "d") })

	time.Sleep(10 * time.Millisecond)
	s.put(t, "d/g", "new g") // found d with d/f's temporary file in it
	m1, c1 := timesOf(t, s, "d")

	gates["ZZZZZZZZZZZZZZZZ"].open()
	if err := <-fDone; err != nil {
		t.Fatal(err)
	}
	s.release(t, ff)
	m2, c2 := timesOf(t, s, "d")
	wm, wc := diskTimes(t, bob, "d")
	if m1 != m0 || c1 != c0 || m2 != m0 || c2 != c0 {
		t.Errorf("d, only its files' content replaced: mtime %d ctime %d before; %d %d after d/g's upload; %d %d after d/f's (the peer's: %d %d)",
			m0, c0, m1, c1, m2, c2, wm, wc)
	}
	time.Sleep(3 * timesTTL) // and once the peer is asked again
	if m3, c3 := timesOf(t, s, "d"); m3 != m0 || c3 != c0 {
		t.Errorf("d, only its files' content replaced: mtime %d ctime %d before, then %d %d (the peer's: %d %d)", m0, c0, m3, c3, wm, wc)
	}
}

// R2-3. The same with this mount's own removal of another entry, written
// behind while a large file's new content is on its way: the removal's
// batch is carried out and tied, then the PUT's pre-dir-* (read before
// the removal) are taken for the times shown before the PUT: the
// directory shows its times from before the removal, earlier than those
// it showed after it.
func TestReview2TimesRemoveDuringOverwriteGoesBack(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/f", []byte("old f"), 0o644)
	bob.writeFile(t, "d/y", []byte("y"), 0o644)
	proxy, gates := reviewProxy(t, bob.addr, "ZZZZZZZZZZZZZZZZ")
	s := reviewStore(t, proxy)
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	timesOf(t, s, "d")

	ff := s.open(t, "bob", "d/f", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, ff, bigContent(), 0)
	fDone := s.flushAsync(t, ff)
	gates["ZZZZZZZZZZZZZZZZ"].wait(t, "d/f's payload")
	testutil.Eventually(t, "d/f's temporary file on bob", func() bool { return tempIn(t, bob, "d") })

	time.Sleep(10 * time.Millisecond)
	returnsSoon(t, "Remove d/y", func() error { return s.Remove(ctx, "bob", "d/y") })
	m1, c1 := timesOf(t, s, "d") // what rm showed
	testutil.Eventually(t, "d/y removed on bob and the batch done", func() bool {
		_, err := os.Lstat(bob.path("d/y"))
		return os.IsNotExist(err) && s.ns.pendingFor("bob") == 0
	})
	time.Sleep(50 * time.Millisecond) // its STAT's answer taken in

	gates["ZZZZZZZZZZZZZZZZ"].open()
	if err := <-fDone; err != nil {
		t.Fatal(err)
	}
	s.release(t, ff)
	m2, c2 := timesOf(t, s, "d")
	if m2 != m1 || c2 != c1 {
		wm, wc := diskTimes(t, bob, "d")
		t.Errorf("d after rm d/y: mtime %d ctime %d; then, d/f's new content stored: %d %d (back %v); the peer's %d %d",
			m1, c1, m2, c2, time.Duration(c1-c2), wm, wc)
	}
	_ = ctx
}

// R2-4. With the peer's clock ahead, a guess that did not move the times
// shown inherits "moved" from an earlier guess (guessLocked: unmoved &&
// old.unmoved): kept() makes every overwrite's guess a moved one, so a
// removal in that directory afterwards never shows, though
// CONSISTENCY.md promises the peer's times once its answer comes
// (TestReviewTimesPeerClockAhead without the overwrite before it passes).
func TestReview2TimesPeerClockAheadAfterOverwrite(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/f", []byte("old"), 0o644)
	bob.writeFile(t, "d/x", []byte("x"), 0o644)
	s := newStoreWith(t, t.TempDir(), func(o *Options) {
		o.AttrTTL = timesTTL
		o.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	s.put(t, "d/f", "new content") // an editor's save
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m0, c0 := timesOf(t, s, "d")
	returnsSoon(t, "Remove d/x", func() error { return s.Remove(ctx, "bob", "d/x") })
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	if m, c := timesOf(t, s, "d"); m == m0 && c == c0 {
		wm, wc := diskTimes(t, bob, "d")
		t.Errorf("d after rm d/x here: mtime %d ctime %d, as before it; the peer's %d %d; guess: %s", m, c, wm, wc, guessState(s, "d"))
	}
}

// R2-5. The same from one program, with no concurrency: a file's new
// content over 256 KiB streams to the peer as it is written (its PUT,
// and so pre-dir-*, from then); meanwhile the program makes and removes
// another file in the directory; at the close the PUT's pre-dir-* (from
// before both) replace the times shown: the directory's times go back to
// before those changes.
func TestReview2TimesStreamedOverwriteGoesBack(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/log", []byte("old log"), 0o644)
	s := reviewStore(t, bob.addr)
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	m0, c0 := timesOf(t, s, "d")

	fh := s.open(t, "bob", "d/log", os.O_WRONLY|os.O_TRUNC, 0)
	chunk := strings.Repeat("l", 64<<10)
	off := int64(0)
	for range 6 {
		s.write(t, fh, chunk, off)
		off += int64(len(chunk))
	}
	testutil.Eventually(t, "d/log streaming to bob", func() bool { return tempIn(t, bob, "d") })

	time.Sleep(10 * time.Millisecond)
	s.put(t, "d/tmp", "t") // a new file: d's times move
	returnsSoon(t, "Remove d/tmp", func() error { return s.Remove(ctx, "bob", "d/tmp") })
	testutil.Eventually(t, "d/tmp removed on bob", func() bool {
		_, err := os.Lstat(bob.path("d/tmp"))
		return os.IsNotExist(err) && s.ns.pendingFor("bob") == 0
	})
	time.Sleep(50 * time.Millisecond)
	m1, c1 := timesOf(t, s, "d")

	s.write(t, fh, chunk, off)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	m2, c2 := timesOf(t, s, "d")
	if m2 != m1 || c2 != c1 {
		wm, wc := diskTimes(t, bob, "d")
		t.Errorf("d: mtime %d ctime %d at first; %d %d after d/tmp made and removed; %d %d once d/log closed (the peer's: %d %d)",
			m0, c0, m1, c1, m2, c2, wm, wc)
	}
}

// R2-6. With the peer's clock behind this mount's (the mirror of R2-4):
// a removal's guess (this mount's clock) is tied; a new file's PUT then
// moves the directory's times to the peer's dir-mtime= (entryChanged:
// max(shown, it)), earlier than the guess: the guess did not move, but
// inherits "moved" from the removal's, and is tied: the new file never
// shows in its directory's times.
func TestReview2TimesPeerClockBehindCreateAfterRemove(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/x", []byte("x"), 0o644)
	s := newStoreWith(t, t.TempDir(), func(o *Options) {
		o.AttrTTL = timesTTL
		o.Now = func() time.Time { return time.Now().Add(time.Hour) }
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	returnsSoon(t, "Remove d/x", func() error { return s.Remove(ctx, "bob", "d/x") })
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m0, c0 := timesOf(t, s, "d")
	s.put(t, "d/new", "new")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	if m, c := timesOf(t, s, "d"); m == m0 && c == c0 {
		wm, wc := diskTimes(t, bob, "d")
		t.Errorf("d after d/new made here: mtime %d ctime %d, as before it; the peer's %d %d; guess: %s", m, c, wm, wc, guessState(s, "d"))
	}
}

// A directory's chmod, then its utimes, both written behind, the
// chmod's answer coming while the utimes had shown its guess and was not
// queued yet (its journal write under way): nothing was pending, and
// the chmod's answer was tied to the utimes's guess; once the utimes was
// carried out its times showed instead (times/steady's tar-like failed
// in about one run of twenty).
func TestTimesAnswerWhileNextChangeQueues(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	proxy, gates := reviewProxy(t, bob.addr, "mode=0700")
	s := reviewStore(t, proxy)
	ctx := testCtx(t)
	statRoot(t, s, "bob")
	s.names(t, "bob", "")
	s.names(t, "bob", "d")
	returnsSoon(t, "Chmod d", func() error { _, err := s.Chmod(ctx, "bob", "d", 0o700); return err })
	gates["mode=0700"].wait(t, "the chmod's SETATTR")

	// The utimes shows its guess, then waits to be journalled.
	s.ns.pushMu.Lock()
	at := time.Unix(1_600_000_000, 0)
	done := make(chan error, 1)
	var shown fs.FileInfo // what the program is told (the kernel keeps it)
	go func() {
		var err error
		shown, err = s.Chtimes(ctx, "bob", "d", fusefs.TimeChange{}, fusefs.TimeChange{Set: true, T: at})
		done <- err
	}()
	p, err := s.peer("bob")
	if err != nil {
		t.Fatal(err)
	}
	guessed := func() bool {
		p.attrs.mu.Lock()
		defer p.attrs.mu.Unlock()
		g, ok := p.attrs.guesses["d"]
		return ok && g.hasM && g.m == at.UnixNano()
	}
	for deadline := time.Now().Add(testTimeout); !guessed(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			s.ns.pushMu.Unlock()
			t.Fatal("the utimes never showed its guess")
		}
	}
	// The chmod's answer comes and is taken in: its batch carried out
	// and the sender done with it (answered, settled).
	gates["mode=0700"].open()
	taken := func() bool {
		return !p.attrs.pending("d", false) && !goroutineIn("remote.(*Store).sendBatch")
	}
	for deadline := time.Now().Add(testTimeout); !taken(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			s.ns.pushMu.Unlock()
			t.Fatal("the chmod's answer was never taken in")
		}
	}
	s.ns.pushMu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m0, c0 := shown.ModTime().UnixNano(), fusefs.StatOf(shown).Ctime.UnixNano()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * timesTTL)
	if m, c := timesOf(t, s, "d"); m != m0 || c != c0 {
		wm, wc := diskTimes(t, bob, "d")
		t.Errorf("d after chmod d; utimes d, nothing changed since: mtime %d ctime %d, then %d %d (the peer's: %d %d; %s)", m0, c0, m, c, wm, wc, guessState(s, "d"))
	}
}
