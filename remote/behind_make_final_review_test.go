package remote

import (
	"testing"
)

// TestReviewDirChmodBehindSparesFileAtName: mkdir x; chmod 700 x, both
// written behind, while another client puts a file at x on the peer
// before the MKDIR reaches it. The MKDIR is refused (EEXIST: a file),
// and the SETATTR queued behind it must not then chmod the other
// client's file: it was meant for a directory this mount made, which
// never existed. (The replayed case is guarded by giveUp,
// TestReplayedDirSetattrSparesFileAtName; a live one is sent as it is.)
func TestReviewDirChmodBehindSparesFileAtName(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s, open := gatedStore(t, bob, "MKDIR", nil)
	ctx := testCtx(t)
	s.names(t, "bob", "") // x is known absent
	statRoot(t, s, "bob")
	returnsSoon(t, "Mkdir x", func() error { _, err := s.Mkdir(ctx, "bob", "x", 0o755); return err })
	returnsSoon(t, "Chmod x", func() error { _, err := s.Chmod(ctx, "bob", "x", 0o700); return err })
	// Another client's file at x, before the held MKDIR arrives.
	bob.writeFile(t, "x", []byte("theirs"), 0o644)
	open()
	if err := s.Sync(ctx); err == nil {
		t.Error("Sync after the refused MKDIR: nil, want the refusal")
	}
	if bob.isDir(t, "x") {
		t.Fatal("bob's x is a directory: the other client's file was not there first")
	}
	if m := bob.mode(t, "x"); m.Perm() != 0o644 {
		t.Errorf("the other client's file x is %v after this mount's refused mkdir x and its chmod 700 written behind, want 0644 (the chmod was for a directory that never existed)", m)
	}
}
