package remote

import (
	"bytes"
	"fmt"
	"github.com/peerfs/peerfs/peerproto"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

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
	err := s.FlushAll(ctx)
	if errnoOf(err) != syscall.ENOTEMPTY {
		t.Errorf("FlushAll after a refused rmdir: %v (%v), want ENOTEMPTY", err, errnoOf(err))
	}
	if err := s.FlushAll(ctx); err != nil {
		t.Errorf("second FlushAll reported the refusal again: %v", err)
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
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	// Removals never get through: held, then dropped with the
	// connection.
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("DELETE")) || bytes.Contains(b, []byte("RMDIR")) {
			<-release
			return nil, true
		}
		return b, false
	}, nil)
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
	deadline := time.Now().Add(testTimeout)
	for second.ns.pending() && time.Now().Before(deadline) {
		if err := second.FlushAll(ctx); err != nil {
			t.Logf("FlushAll: %v", err)
		}
	}
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
