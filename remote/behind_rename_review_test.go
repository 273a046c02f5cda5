package remote

// Regression tests from the review of the renames written behind
// (dfaab40: renameBehind, sendBatch's renamedAlready, giveUp): each
// failed on the code as reviewed (its comment says how) and passes since
// its fix.

import (
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// bobNames lists the names in the root of bob's export, on his disk.
func bobNames(t *testing.T, bob *testPeer) []string {
	t.Helper()
	des, err := os.ReadDir(bob.export)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// TestRenameOverExistingTargetOfVanishedFile: an editor's save shape (a
// file renamed over one that exists) written behind, whose source
// another writer removed before the RENAME got there. The peer refuses
// it (ENOENT); renamedAlready then STATs both names, finds the old name
// gone and the new one there (the target that was always there) and
// takes the rename for done by an earlier send. The refusal is
// swallowed: fsync says nothing, and this mount goes on showing the
// vanished file's attributes under the target's name, while the peer
// keeps the old target.
func TestRenameOverExistingTargetOfVanishedFile(t *testing.T) {
	s, bob, _ := countedStoreWith(t, func(o *Options) { o.AttrTTL = time.Minute })
	ctx := testCtx(t)
	bob.writeFile(t, "a", []byte("a's content, longer"), 0o644)
	bob.writeFile(t, "b", []byte("old b"), 0o644)
	if got := s.names(t, "bob", ""); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("root lists %q", got)
	}
	// Another writer removes a behind this mount's back, within its
	// attributes' lifetime.
	if err := os.Remove(bob.path("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "bob", "a", "b"); err != nil {
		t.Fatalf("Rename (written behind): %v", err)
	}
	err := s.Sync(ctx)
	if errnoOf(err) != syscall.ENOENT {
		t.Errorf("Sync after a RENAME the peer refused (its file gone): %v, want ENOENT", err)
	}
	if got := bob.content(t, "b"); got != "old b" {
		t.Fatalf("bob's b = %q", got)
	}
	if fi, err := s.Stat(ctx, "bob", "b"); err != nil || fi.Size() != int64(len("old b")) {
		t.Errorf("Stat b after the refused rename: %v, %v; want the peer's b (%d bytes)", fi, err, len("old b"))
	}
}

// TestWriteAfterRenameBehindNoConflict: a file its peer's owner put
// there (its version token derived from its inode's attributes, ctime
// included) renamed here over another, then written with O_TRUNC. The
// rename written behind keeps the file's old version in this mount's
// attributes (attrCache.moved), but the peer's RENAME changed its ctime,
// so its token: the upload, conditional on the old version, is refused
// as a conflict, and the new content lands in a conflict copy beside a
// target left holding the renamed file's old content. A synchronous
// rename learns the new version from its STAT.
func TestWriteAfterRenameBehindNoConflict(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "a", []byte("a, as bob wrote it"), 0o644)
	bob.writeFile(t, "b", []byte("old b"), 0o644)
	s.names(t, "bob", "")
	// A clock tick, so that the rename gives a another ctime whatever
	// the filesystem's timestamp granularity.
	time.Sleep(20 * time.Millisecond)
	if err := s.Rename(ctx, "bob", "a", "b"); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "b", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, fh, "new b", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Errorf("Flush: %v", err)
	}
	s.release(t, fh)
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := bob.content(t, "b"); got != "new b" {
		t.Errorf("bob's b = %q, want the content written after the rename", got)
	}
	if got := bobNames(t, bob); !slices.Equal(got, []string{"b"}) {
		t.Errorf("bob's export holds %q, want [b] (no conflict copy)", got)
	}
}

// TestReplayRemovesFileRenamedBehind: mv x y; rm y, both written behind
// and held back, then a crash. The next run replays the RENAME (x is
// still the version renamed) and then the DELETE of y, recorded with
// the version x had before the rename; the peer's RENAME changed the
// file's ctime, so (for a file not written through peerfs) its token,
// and giveUp takes the file for another writer's: y is kept, and the
// removal acknowledged to the program is lost. Likewise mv x y; mv y z:
// the second rename is given up.
func TestReplayRemovesFileRenamedBehind(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "x", []byte("x's"), 0o644)
	bob.writeFile(t, "p", []byte("p's"), 0o644)
	proxy := heldBackProxy(t, bob.addr, "RENAME", "DELETE")
	dir := t.TempDir()
	first := newStoreWith(t, dir, nil)
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	first.names(t, "bob", "")
	time.Sleep(20 * time.Millisecond) // a clock tick: the renames change ctimes
	if err := first.Rename(ctx, "bob", "x", "y"); err != nil {
		t.Fatal(err)
	}
	if err := first.Remove(ctx, "bob", "y"); err != nil {
		t.Fatal(err)
	}
	if err := first.Rename(ctx, "bob", "p", "q"); err != nil {
		t.Fatal(err)
	}
	if err := first.Rename(ctx, "bob", "q", "r"); err != nil {
		t.Fatal(err)
	}
	first.close()
	if pend := len(first.cache.Journal().Pending()); pend != 4 {
		t.Fatalf("journal holds %d operations when the first run ends, want 4", pend)
	}

	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	second.drainReplayed(t, ctx)
	if got := bobNames(t, bob); !slices.Equal(got, []string{"r"}) {
		t.Errorf("bob's export after the replay holds %q, want [r] (x renamed to y and removed, p renamed to q then r)", got)
	}
}

// TestRenamesResentAfterLostReplyKeepOrder: an editor's save with a
// backup (mv doc doc~; mv doc.tmp doc), both written behind and sent in
// one batch. The peer carries both out, but the connection dies before
// its answers arrive; the sender sends the batch again. RENAME is not
// idempotent: the second RENAME doc doc~ finds the new doc and moves it
// over the backup, and RENAME doc.tmp doc then finds nothing
// (renamedAlready: doc.tmp gone, doc gone too). The old document is
// destroyed, doc is gone, and fsync reports a refusal of a rename that
// was done.
func TestRenamesResentAfterLostReplyKeepOrder(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "doc", []byte("old document"), 0o644)
	bob.writeFile(t, "doc.tmp", []byte("new document"), 0o644)
	bob.writeFile(t, "junk", []byte("junk"), 0o644)
	// The renames queue up behind a held DELETE (one batch); both are
	// carried out, then their answers lost.
	proxy, held, open, wasCut := lostAnswersProxy(t, bob, "RENAME", "doc.tmp")
	s := newStoreWith(t, t.TempDir(), nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	s.names(t, "bob", "")
	holdQueue(t, s, held)
	if err := s.Rename(ctx, "bob", "doc", "doc~"); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, "bob", "doc.tmp", "doc"); err != nil {
		t.Fatal(err)
	}
	open()
	// The lost connection may fail the first Sync (EIO, the peer looked
	// down for a moment); none may report a refusal, and one succeeds.
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(100 * time.Millisecond) {
		err := s.Sync(ctx)
		if err == nil {
			break
		}
		if errnoOf(err) != syscall.EIO || time.Now().After(deadline) {
			t.Fatalf("Sync: %v; want nil, or EIO for the lost connection (both renames were carried out)", err)
		}
	}
	if !wasCut() {
		t.Fatal("no RENAME answer was cut: the test did not test")
	}
	if got := bobNames(t, bob); !slices.Equal(got, []string{"doc", "doc~"}) {
		t.Errorf("bob's export holds %q, want [doc doc~]", got)
	}
	if bob.exists(t, "doc") {
		if got := bob.content(t, "doc"); got != "new document" {
			t.Errorf("bob's doc = %q, want the new document", got)
		}
	}
	if bob.exists(t, "doc~") {
		if got := bob.content(t, "doc~"); got != "old document" {
			t.Errorf("bob's doc~ = %q, want the old document", got)
		}
	}
}

// TestReplayedRenameKeepsTargetRewrittenSince: mv x y written behind,
// then a crash before the peer had it; meanwhile another writer
// rewrites y on the peer. The next run replays the RENAME, checking
// only that x is still the version renamed: it replaces the other
// writer's y, which this mount never saw. A replayed DELETE keeps a file
// rewritten since (giveUp); a replayed RENAME removes its target all
// the same.
func TestReplayedRenameKeepsTargetRewrittenSince(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "x", []byte("x's"), 0o644)
	bob.writeFile(t, "y", []byte("y, v1"), 0o644)
	proxy := heldBackProxy(t, bob.addr, "RENAME")
	dir := t.TempDir()
	first := newStoreWith(t, dir, nil)
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	first.names(t, "bob", "")
	if err := first.Rename(ctx, "bob", "x", "y"); err != nil {
		t.Fatal(err)
	}
	first.close()
	if pend := len(first.cache.Journal().Pending()); pend != 1 {
		t.Fatalf("journal holds %d operations when the first run ends, want 1", pend)
	}
	const theirs = "y, v2: another writer's, after the rename was acknowledged"
	bob.writeFile(t, "y", []byte(theirs), 0o644)
	future(t, bob.path("y"), 3)

	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	second.drainReplayed(t, ctx)
	if got := bob.content(t, "y"); got != theirs {
		t.Errorf("bob's y = %q after the replay: the other writer's y was replaced by a rename it never saw", got)
	}
}

// TestRenameOverHardLinkTargetOtherNamesLoseLink: c renamed over l, one
// of two names of a file (made on the peer). renameBehindOK rightly
// keeps this rename synchronous (the target has another name), but
// Rename then refreshes only the moved file's other names
// (changedIno(linked(from))), not the replaced target's: this mount
// goes on showing a with two links, which it no longer has.
func TestRenameOverHardLinkTargetOtherNamesLoseLink(t *testing.T) {
	s, bob, _ := countedStoreWith(t, func(o *Options) { o.AttrTTL = time.Minute })
	ctx := testCtx(t)
	bob.writeFile(t, "a", []byte("a's content"), 0o644)
	bob.writeFile(t, "c", []byte("c"), 0o644)
	if err := os.Link(bob.path("a"), bob.path("l")); err != nil { // behind the mount's back
		t.Fatal(err)
	}
	s.names(t, "bob", "")
	if err := s.Rename(ctx, "bob", "c", "l"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := s.Stat(ctx, "bob", "a")
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*fusefs.Stat); !ok || st.Nlink != 1 {
		t.Errorf("a's link count after the rename over its other name: %+v, want 1", fi.Sys())
	}
}
