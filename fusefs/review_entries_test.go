package fusefs

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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

// Review: another writer changes a file the peer reports by one name
// (alice/f); the kernel also holds it by another name (alice/sub/g,
// a hard link, one peer inode: siblings knows it). Only f's pages and
// attributes are dropped: g shows the old size and content for the
// attribute timeout.
func TestReviewForeignChangeHardLink(t *testing.T) {
	f, store := newTestFS(t)
	writeFile(t, filepath.Join(store.base, "alice", "f"), "one")
	if err := os.MkdirAll(filepath.Join(store.base, "alice", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(store.base, "alice", "f"), filepath.Join(store.base, "alice", "sub", "g")); err != nil {
		t.Fatal(err)
	}
	alice := mustLookup(t, f.root, "alice").(*dir)
	mustLookup(t, alice, "f")
	sub := mustLookup(t, alice, "sub").(*dir)
	mustLookup(t, sub, "g")
	kernel := &recordingKernel{}
	inv := &invalidator{fsys: f, kernel: kernel, peers: store.Peers()}
	inv.applyEntries(map[nodeKey]EntryChange{{"alice", "f"}: {Peer: "alice", Path: "f"}})
	if !slices.Contains(kernel.sent, "data alice/sub/g") && !slices.Contains(kernel.sent, "attr alice/sub/g") {
		t.Errorf("sent %q: nothing of alice/sub/g, another name of the changed file", kernel.sent)
	}
}
