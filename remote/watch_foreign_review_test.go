package remote

import (
	"os"
	"testing"
	"time"
)

// Review: after this mount's own rename of a file (written behind, as
// rename(2) of an uploaded file is), the entry at the new name in the
// watched listing carries a ctime estimated on this mount's clock
// (changedAt) and is marked unconfirmed; the peer's report never agrees
// with the estimate, so the name stays unconfirmed, and every later
// change another writer makes to it is not told (foreignLocked returns
// early), long after ownQuiet.
func TestReviewForeignAfterOwnRename(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	s, barrier := foreignStore(t, bob)
	ctx := testCtx(t)
	if err := s.Rename(ctx, "bob", "d/a", "d/b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	barrier()
	time.Sleep(ownQuiet + 200*time.Millisecond)
	barrier()
	if err := os.WriteFile(bob.path("d/b"), []byte("bob's, much longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if chs := barrier(); len(chs) == 0 {
		t.Error("another writer's change of d/b, 2 s after this mount renamed d/a to d/b, was not told")
	}
}

// Review: after this mount makes a file in d (an upload), d's entry in
// its parent's watched listing has times estimated by entryChanged and
// is marked unconfirmed; the peer's report of d never agrees, so d's
// removal by another writer, long after, is not told.
func TestReviewForeignAfterOwnCreate(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	s, barrier := foreignStore(t, bob)
	ctx := testCtx(t)
	fh := s.open(t, "bob", "d/mine", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "written here", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	barrier()
	time.Sleep(ownQuiet + 200*time.Millisecond)
	barrier()
	if err := os.RemoveAll(bob.path("d")); err != nil {
		t.Fatal(err)
	}
	chs := barrier()
	if ch, ok := changeOf(chs, "d"); !ok || !ch.Gone {
		t.Errorf("d removed by another writer, 2 s after this mount made d/mine: told %+v", chs)
	}
}
