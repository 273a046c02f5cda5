package fusefs

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Review: another writer replaces directory alice/sub (rm -r sub; mkdir
// sub, or mv sub elsewhere; mkdir sub). The invalidator drops the
// kernel's entry for "sub", but the mount's own listing of alice/sub
// (taken by readdir) still answers the kernel's next lookup of sub/g
// as existing, and the kernel caches that answer again for the entry
// timeout.
func TestReviewReplacedDirListingKept(t *testing.T) {
	f, store := newTestFS(t)
	writeFile(t, filepath.Join(store.base, "alice", "sub", "g"), "two")
	alice := mustLookup(t, f.root, "alice").(*dir)
	sub := mustLookup(t, alice, "sub").(*dir)
	if _, err := sub.ReadDirAll(t.Context()); err != nil { // ls alice/sub
		t.Fatal(err)
	}
	// Another writer replaces sub by an empty directory.
	if err := os.RemoveAll(filepath.Join(store.base, "alice", "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(store.base, "alice", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := &recordingKernel{}
	inv := &invalidator{fsys: f, kernel: kernel, peers: store.Peers()}
	ch := EntryChange{Peer: "alice", Path: "sub", Type: fs.ModeDir, Replaced: true}
	inv.applyEntries(map[nodeKey]EntryChange{{"alice", "sub"}: ch})
	// The kernel looks sub up again (same kind: same node), then sub/g.
	sub2 := mustLookup(t, alice, "sub").(*dir)
	if _, err := lookup(t, sub2, "g"); err == nil {
		t.Error("alice/sub/g still found after alice/sub was replaced by an empty directory (the mount's listing of the old sub answered)")
	}
}
