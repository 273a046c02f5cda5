package remote

import (
	"os"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// A replayed removal or rename whose check the peer refuses because the
// path cannot lead to a file any more (it runs through what is a file
// now, ENOTDIR, or a symbolic link, which the peer does not follow) is
// given up, as one whose file is gone: it used to be retried for ever,
// and with it everything queued behind it, and every fsync and the
// unmount waited. (A refusal to look, denied, is still retried.)
func TestReplayGivesUpWhatThePeerRefusesForGood(t *testing.T) {
	for _, how := range []string{"file", "symlink"} {
		t.Run(how, func(t *testing.T) { testReplayRefused(t, how) })
	}
}

// testReplayRefused: d is replaced, on the peer, by a file or by a
// symbolic link to a directory.
func testReplayRefused(t *testing.T, how string) {
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
	// On bob meanwhile: d is a file, or a symbolic link to a directory
	// (holding the same names: which the peer does not follow).
	if err := os.RemoveAll(bob.path("d")); err != nil {
		t.Fatal(err)
	}
	if how == "file" {
		bob.writeFile(t, "d", []byte("a file now"), 0o644)
	} else {
		if err := os.MkdirAll(bob.path("e"), 0o755); err != nil {
			t.Fatal(err)
		}
		bob.writeFile(t, "e/f", []byte("v1"), 0o644)
		bob.writeFile(t, "e/g", []byte("v1"), 0o644)
		if err := os.Symlink("e", bob.path("d")); err != nil {
			t.Fatal(err)
		}
	}

	second := newStoreWith(t, dir, nil)
	second.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	testutil.Eventually(t, "the replay to end", func() bool { return !second.ns.pending() })
	if bob.exists(t, "keep") {
		t.Error("the removal queued behind the refused ones never reached bob")
	}
	if how == "file" {
		if got := bob.content(t, "d"); got != "a file now" {
			t.Errorf("bob's d = %q", got)
		}
	} else if !bob.exists(t, "e/f") || !bob.exists(t, "e/g") || bob.exists(t, "e/h") {
		t.Error("a replay reached through the symbolic link")
	}
	if err := second.FlushAll(ctx); err != nil {
		t.Errorf("FlushAll after the replay: %v", err)
	}
}
