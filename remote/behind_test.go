package remote

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// heldBackProxy forwards connections to addr, except that a request
// holding any of verbs is held until the test ends and then dropped with
// its connection: changes written behind stay queued, and never reach
// the peer, as when the mount dies with them pending.
func heldBackProxy(t *testing.T, addr string, verbs ...string) string {
	t.Helper()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return tapProxy(t, addr, func(b []byte) ([]byte, bool) {
		for _, v := range verbs {
			if bytes.Contains(b, []byte(v)) {
				<-release
				return nil, true
			}
		}
		return b, false
	}, nil)
}

// TestRemovalsWrittenBehind: rm -r of a directory is acknowledged at
// once, shows at once in this mount, goes to the peer in batches (far
// fewer round trips than removals), in order (the RMDIR after the
// DELETEs it needs), and is there once FlushAll returns; the journal is
// empty after.
func TestRemovalsWrittenBehind(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	const n = 60
	if err := os.MkdirAll(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		bob.writeFile(t, fmt.Sprintf("d/f%02d", i), []byte("x"), 0o644)
	}
	bob.writeFile(t, "keep", []byte("kept"), 0o644)
	names := s.names(t, "bob", "d")
	if len(names) != n {
		t.Fatalf("listed %d names, want %d", len(names), n)
	}
	vc.take()
	for _, name := range names {
		if err := s.Remove(ctx, "bob", "d/"+name); err != nil {
			t.Fatalf("Remove %s: %v", name, err)
		}
	}
	if got := s.names(t, "bob", "d"); len(got) != 0 {
		t.Errorf("d lists %q after its files were removed", got)
	}
	if err := s.Rmdir(ctx, "bob", "d"); err != nil {
		t.Fatalf("Rmdir: %v", err)
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("root lists %q, want [keep]", got)
	}
	if _, err := s.Stat(ctx, "bob", "d/f00"); errnoOf(err) != syscall.ENOENT {
		t.Errorf("Stat of a removed file: %v, want ENOENT", err)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatalf("FlushAll: %v", err)
	}
	if bob.exists(t, "d") || !bob.exists(t, "keep") {
		t.Errorf("after FlushAll: d exists %v, keep exists %v; want d gone, keep kept", bob.exists(t, "d"), bob.exists(t, "keep"))
	}
	calls := vc.take()
	if got := calls["DELETE"] + calls["RMDIR"]; got == 0 || got > n/2 {
		t.Errorf("%d round trips for %d removals (%v); want them batched", got, n+1, calls)
	}
	if pend := s.cache.Journal().Pending(); len(pend) != 0 {
		t.Errorf("journal holds %d operations after FlushAll", len(pend))
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("root lists %q after the removals reached bob, want [keep]", got)
	}
}

// TestRemoveThenCreateKeepsOrder: a file removed and created again at
// once reaches the peer as a removal then a new file, whatever the
// queue's state when the new file is uploaded: no conflict, the new
// content stored.
func TestRemoveThenCreateKeepsOrder(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	for i := range 20 {
		bob.writeFile(t, fmt.Sprintf("x%d", i), []byte("old"), 0o644)
	}
	s.names(t, "bob", "")
	for i := range 20 {
		name := fmt.Sprintf("x%d", i)
		if err := s.Remove(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
		fh := s.open(t, "bob", name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		s.write(t, fh, "new"+name, 0)
		if err := s.Flush(ctx, fh); err != nil {
			t.Fatalf("Flush of %s created again: %v", name, err)
		}
		s.release(t, fh)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		name := fmt.Sprintf("x%d", i)
		if got := bob.content(t, name); got != "new"+name {
			t.Errorf("bob's %s = %q, want the new content", name, got)
		}
	}
	if got := s.names(t, "bob", ""); len(got) != 20 {
		t.Errorf("root lists %q: want the 20 new files and nothing else", got)
	}
}

// TestRefusedRemovalComesBack: an rmdir written behind that the peer
// refuses (another writer filled the directory meanwhile) brings the
// directory back in this mount, fails the next fsync with the refusal,
// and for a while the peer's removals are synchronous: the next rmdir
// fails itself.
func TestRefusedRemovalComesBack(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	if err := os.MkdirAll(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := s.names(t, "bob", "d"); len(got) != 0 {
		t.Fatalf("d lists %q", got)
	}
	bob.writeFile(t, "d/intruder", []byte("someone else's"), 0o644)
	if err := s.Rmdir(ctx, "bob", "d"); err != nil {
		t.Fatalf("Rmdir (listing cached empty): %v", err)
	}
	err := s.Sync(ctx)
	if errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("Sync after a refused rmdir: %v (%v), want ENOTEMPTY", err, errnoOf(err))
	}
	if err := s.Sync(ctx); err != nil {
		t.Errorf("second Sync reported the refusal again: %v", err)
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"d"}) {
		t.Errorf("root lists %q after the refusal, want d back", got)
	}
	if got := bob.content(t, "d/intruder"); got != "someone else's" {
		t.Errorf("the other writer's file: %q", got)
	}
	if err := s.Rmdir(ctx, "bob", "d"); errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("Rmdir after a refusal: %v, want ENOTEMPTY at once", err)
	}
}

// TestRemovalsReplayedAfterCrash: removals acknowledged by a run that
// ended before its peer had them (the connection held them back) are
// carried out by the next run on the same cache, in order, and only
// where the file is still the version removed: one rewritten on the peer
// meanwhile is kept.
func TestRemovalsReplayedAfterCrash(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.MkdirAll(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d/a", "d/b", "same", "changed"} {
		bob.writeFile(t, name, []byte("v1 of "+name), 0o644)
	}
	// Removals never get through: held, then dropped with the
	// connection.
	proxy := heldBackProxy(t, bob.addr, "DELETE", "RMDIR")
	dir := t.TempDir()
	first := newStoreWith(t, dir, nil)
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	first.names(t, "bob", "")
	first.names(t, "bob", "d")
	for _, name := range []string{"d/a", "d/b"} {
		if err := first.Remove(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Rmdir(ctx, "bob", "d"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"same", "changed"} {
		if err := first.Remove(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
	}
	if got := first.Report().Pending.Removals; got != 5 {
		t.Errorf("status report: %d removals pending, want 5", got)
	}
	first.close() // no drain: what the journal holds is all that is left
	if pend := len(first.cache.Journal().Pending()); pend != 5 {
		t.Fatalf("journal holds %d operations when the first run ends, want 5", pend)
	}
	if !bob.exists(t, "d/a") || !bob.exists(t, "same") {
		t.Fatal("a removal reached bob through the proxy")
	}
	bob.writeFile(t, "changed", []byte("v2, written on bob after the removal"), 0o644)
	future(t, bob.path("changed"), 3)

	second := newStoreWith(t, dir, nil)
	if _, err := second.Stat(ctx, "bob", "same"); err == nil {
		t.Error("a removed file shows before its removal is replayed")
	}
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	second.drainReplayed(t, ctx)
	for _, name := range []string{"d", "same"} {
		if bob.exists(t, name) {
			t.Errorf("bob's %s is still there after the replay", name)
		}
	}
	if got := bob.content(t, "changed"); got != "v2, written on bob after the removal" {
		t.Errorf("bob's changed = %q: a replay removed a version it never saw", got)
	}
	if pend := second.cache.Journal().Pending(); len(pend) != 0 {
		t.Errorf("journal holds %+v after the replay", pend)
	}
	if got := second.names(t, "bob", ""); !slices.Equal(got, []string{"changed"}) {
		t.Errorf("root lists %q after the replay, want [changed]", got)
	}
}

// TestRenameWrittenBehind: an editor's save (write a temporary file,
// fsync, close, rename it over the document) returns from rename before
// the peer has the RENAME (held back here); this mount shows the new
// document and no temporary file at once, a read of the document gives
// the new content, and once the RENAME is through the peer has the new
// document.
func TestRenameWrittenBehind(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "doc", []byte("old document"), 0o644)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	s := newStoreWith(t, t.TempDir(), nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: gateProxy(t, bob.addr, "RENAME", release)}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	fh := s.open(t, "bob", "doc.tmp", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	s.write(t, fh, "new document!", 0)
	if err := s.Fsync(ctx, fh); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	done := make(chan error, 1)
	go func() { done <- s.Rename(ctx, "bob", "doc.tmp", "doc") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Rename: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("rename waited for the peer's answer: not written behind")
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"doc"}) {
		t.Errorf("root lists %q while the RENAME is held, want [doc]", got)
	}
	if fi, err := s.Stat(ctx, "bob", "doc"); err != nil || fi.Size() != int64(len("new document!")) {
		t.Errorf("Stat of the renamed document: %v, %v; want the new file's size", fi, err)
	}
	if _, err := s.Stat(ctx, "bob", "doc.tmp"); errnoOf(err) != syscall.ENOENT {
		t.Errorf("Stat of the renamed temporary: %v, want ENOENT", err)
	}
	if got := bob.content(t, "doc"); got != "old document" {
		t.Fatalf("bob's doc is %q while the RENAME is held", got)
	}
	read := make(chan string, 1)
	go func() {
		rh, _, err := s.Open(ctx, "bob", "doc", os.O_RDONLY, 0)
		if err != nil {
			read <- "open: " + err.Error()
			return
		}
		read <- string(s.readAll(t, rh, 64))
		s.release(t, rh)
	}()
	// Answered from the copy cached with the temporary file (moved with
	// it), or from the peer once the RENAME is through: never the old
	// document the peer still has while it is held.
	open()
	if got := <-read; got != "new document!" {
		t.Errorf("read of the document renamed over: %q, want the new content", got)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := bob.content(t, "doc"); got != "new document!" || bob.exists(t, "doc.tmp") {
		t.Errorf("bob after FlushAll: doc %q, doc.tmp there %v", got, bob.exists(t, "doc.tmp"))
	}
}

// TestReadWaitsForRenameBehind: a file this mount never read, renamed
// over another while the RENAME is held back: a read of the new name has
// no cached copy to answer from, so it goes to the peer, and must wait
// for the RENAME there, not read the old file the peer still has at that
// name (poolDo's barrier while a rename waits).
func TestReadWaitsForRenameBehind(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "a", []byte("a's content"), 0o644)
	bob.writeFile(t, "b", []byte("b, replaced"), 0o644)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	s := newStoreWith(t, t.TempDir(), nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: gateProxy(t, bob.addr, "RENAME", release)}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	if err := s.Rename(ctx, "bob", "a", "b"); err != nil {
		t.Fatal(err)
	}
	read := make(chan string, 1)
	go func() {
		rh, _, err := s.Open(ctx, "bob", "b", os.O_RDONLY, 0)
		if err != nil {
			read <- "open: " + err.Error()
			return
		}
		defer s.Release(rh)
		buf := make([]byte, 64)
		n, err := s.ReadAt(ctx, rh, buf, 0)
		if err != nil {
			read <- "read: " + err.Error()
			return
		}
		read <- string(buf[:n])
	}()
	// Time for the read to reach the peer if nothing held it back
	// (it then reads "b, replaced" and the test fails); a read that
	// waits, as it must, passes whatever the time.
	time.Sleep(50 * time.Millisecond)
	open()
	if got := <-read; got != "a's content" {
		t.Errorf("read of b renamed over while its RENAME was held: %q, want a's content", got)
	}
}

// TestRefusedRenameComesBack: a rename written behind that the peer
// refuses (the target became a directory meanwhile) shows both names as
// the peer has them again, and fails the next fsync.
func TestRefusedRenameComesBack(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "a", []byte("a's"), 0o644)
	s.names(t, "bob", "")
	if err := os.MkdirAll(bob.path("b/inside"), 0o755); err != nil { // behind the mount's back
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "bob", "a", "b"); err != nil {
		t.Fatalf("Rename (b unknown here): %v", err)
	}
	if err := s.Sync(ctx); err == nil {
		t.Error("Sync after a refused rename: nil, want the refusal")
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("root lists %q after the refusal, want [a b]", got)
	}
	if fi, err := s.Stat(ctx, "bob", "b"); err != nil || !fi.IsDir() {
		t.Errorf("Stat b after the refusal: %v, %v; want the peer's directory", fi, err)
	}
	if got := bob.content(t, "a"); got != "a's" {
		t.Errorf("bob's a: %q", got)
	}
}

// TestRenameReplayedAfterCrash: a rename acknowledged by a run that ended
// before the peer had it is carried out by the next run; one whose file
// changed on the peer meanwhile is not.
func TestRenameReplayedAfterCrash(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "x", []byte("x's"), 0o644)
	bob.writeFile(t, "changed", []byte("v1"), 0o644)
	proxy := heldBackProxy(t, bob.addr, "RENAME")
	dir := t.TempDir()
	first := newStoreWith(t, dir, nil)
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	first.names(t, "bob", "")
	for _, mv := range [][2]string{{"x", "y"}, {"changed", "moved"}} {
		if err := first.Rename(ctx, "bob", mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	first.close()
	if pend := len(first.cache.Journal().Pending()); pend != 2 {
		t.Fatalf("journal holds %d operations when the first run ends, want 2", pend)
	}
	bob.writeFile(t, "changed", []byte("v2, written on bob after the rename"), 0o644)
	future(t, bob.path("changed"), 3)

	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	second.drainReplayed(t, ctx)
	if got := bob.content(t, "y"); got != "x's" || bob.exists(t, "x") {
		t.Errorf("bob after the replay: y %q, x there %v; want x renamed to y", got, bob.exists(t, "x"))
	}
	if got := bob.content(t, "changed"); got != "v2, written on bob after the rename" || bob.exists(t, "moved") {
		t.Errorf("bob's changed %q, moved there %v: a replay renamed a version it never saw", got, bob.exists(t, "moved"))
	}
	if got := second.names(t, "bob", ""); !slices.Equal(got, []string{"changed", "y"}) {
		t.Errorf("root lists %q after the replay, want [changed y]", got)
	}
}

// TestRenameFoundDone: a RENAME written behind that finds its file gone
// is a refusal (the next fsync says so), unless the peer shows it done
// (its old name gone, its new name there: a RENAME sent again after the
// first did it), which is a success.
func TestRenameFoundDone(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	for _, name := range []string{"done", "gone"} {
		bob.writeFile(t, name, []byte(name), 0o644)
	}
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	s := newStoreWith(t, t.TempDir(), nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: gateProxy(t, bob.addr, "RENAME", release)}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	if err := s.Rename(ctx, "bob", "done", "done2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "bob", "gone", "gone2"); err != nil {
		t.Fatal(err)
	}
	// Before the RENAMEs get through: the first is done already, by
	// the peer (as when a first send did it and its answer was lost),
	// the second's file removed behind its back.
	direct, err := peer.Dial(ctx, bob.addr, peer.ClientOptions{DialTimeout: time.Second, IOTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if err := direct.Rename(ctx, "done", "done2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(bob.path("gone")); err != nil {
		t.Fatal(err)
	}
	open()
	err = s.Sync(ctx)
	if errnoOf(err) != syscall.ENOENT || !strings.Contains(err.Error(), "gone") || strings.Contains(err.Error(), "done") {
		t.Errorf("Sync: %v; want the refusal of gone's rename alone (ENOENT)", err)
	}
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"done2"}) {
		t.Errorf("root lists %q, want [done2]", got)
	}
}

// TestRemovalsPacedGoInBatches: removals that come one at a time, as
// rm -r makes them (a kernel round trip apart), still go to the peer
// in batches: the sender lingers a moment for more while nobody waits
// for the queue, rather than sending each alone.
func TestRemovalsPacedGoInBatches(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	const n = 40
	for i := range n {
		bob.writeFile(t, fmt.Sprintf("f%02d", i), []byte("x"), 0o644)
	}
	names := s.names(t, "bob", "")
	if len(names) != n {
		t.Fatalf("listed %d names, want %d", len(names), n)
	}
	vc.take()
	for _, name := range names {
		if err := s.Remove(ctx, "bob", name); err != nil {
			t.Fatalf("Remove %s: %v", name, err)
		}
		time.Sleep(300 * time.Microsecond)
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Fatalf("FlushAll: %v", err)
	}
	for _, name := range names {
		if bob.exists(t, name) {
			t.Errorf("%s still on bob after FlushAll", name)
		}
	}
	if got := vc.take()["DELETE"]; got == 0 || got > n/3 {
		t.Errorf("%d round trips for %d paced removals; want them batched (at most %d)", got, n, n/3)
	}
}

// drainReplayed has s send what its journal replayed (FlushAll, again
// while the peer refuses or is not reached yet), for up to testTimeout.
func (s *testStore) drainReplayed(t *testing.T, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for s.ns.pending() && time.Now().Before(deadline) {
		if err := s.FlushAll(ctx); err != nil {
			t.Logf("FlushAll: %v", err)
		}
	}
}
