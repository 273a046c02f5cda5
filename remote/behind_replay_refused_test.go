package remote

import (
	"os"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// A replayed removal or rename whose check the peer refuses for good
// (the path runs through what is a file now: ENOTDIR) is given up, as
// one whose file is gone: it used to be retried for ever, and with it
// everything queued behind it, and every fsync and the unmount waited.
// A refusal that may pass (the peer's disk failing for a moment) is
// still retried.
func TestReplayGivesUpWhatThePeerRefusesForGood(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	if err := os.MkdirAll(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d/f", []byte("v1"), 0o644)
	bob.writeFile(t, "d/g", []byte("v1"), 0o644)
	bob.writeFile(t, "keep", []byte("v1"), 0o644)
	proxy := heldBackProxy(t, bob.addr, "DELETE", "RENAME")
	dir := t.TempDir()
	first := newStoreWith(t, dir, nil)
	first.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	first.names(t, "bob", "")
	first.names(t, "bob", "d")
	if err := first.Remove(ctx, "bob", "d/f"); err != nil {
		t.Fatal(err)
	}
	if err := first.Rename(ctx, "bob", "d/g", "d/h"); err != nil {
		t.Fatal(err)
	}
	if err := first.Remove(ctx, "bob", "keep"); err != nil {
		t.Fatal(err)
	}
	first.close()
	if pend := len(first.cache.Journal().Pending()); pend != 3 {
		t.Fatalf("journal holds %d operations when the first run ends, want 3", pend)
	}
	// On bob meanwhile: d is a file now.
	if err := os.RemoveAll(bob.path("d")); err != nil {
		t.Fatal(err)
	}
	bob.writeFile(t, "d", []byte("a file now"), 0o644)

	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	testutil.Eventually(t, "the replay to end", func() bool { return !second.ns.pending() })
	if bob.exists(t, "keep") {
		t.Error("the removal queued behind the refused ones never reached bob")
	}
	if got := bob.content(t, "d"); got != "a file now" {
		t.Errorf("bob's d = %q", got)
	}
	if err := second.FlushAll(ctx); err != nil {
		t.Errorf("FlushAll after the replay: %v", err)
	}
}
