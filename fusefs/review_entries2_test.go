package fusefs

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Another writer moves alice/sub away, changes it there (the peer
// watches it no more: nothing inside is reported) and moves it back:
// mv sub sub.tmp; rm sub.tmp/g; touch sub.tmp/h; mv sub.tmp sub. The
// change the mount gets is "sub, a directory, the same peer inode,
// replaced". The third review found the mount's listing of sub kept
// (and the kernel's entries of sub's children): g still found, h not,
// for the entry timeout.
func TestRV4SameDirBackKeepsOldListing(t *testing.T) {
	f, store := newTestFS(t)
	base := filepath.Join(store.base, "alice")
	writeFile(t, filepath.Join(base, "sub", "g"), "two")
	alice := mustLookup(t, f.root, "alice").(*dir)
	sub := mustLookup(t, alice, "sub").(*dir)
	mustLookup(t, sub, "g")
	subIno := sub.peerInode()
	if _, err := sub.ReadDirAll(t.Context()); err != nil { // ls alice/sub
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(base, "sub"), filepath.Join(base, "sub.tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(base, "sub.tmp", "g")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(base, "sub.tmp", "h"), "new")
	if err := os.Rename(filepath.Join(base, "sub.tmp"), filepath.Join(base, "sub")); err != nil {
		t.Fatal(err)
	}
	kernel := &recordingKernel{}
	inv := &invalidator{fsys: f, kernel: kernel, peers: store.Peers()}
	ch := EntryChange{Peer: "alice", Path: "sub", Type: fs.ModeDir, Ino: subIno, Replaced: true}
	inv.applyEntries(map[nodeKey]EntryChange{{"alice", "sub"}: ch})
	sub2 := mustLookup(t, alice, "sub").(*dir)
	if _, err := lookup(t, sub2, "g"); err == nil {
		t.Error("alice/sub/g, removed while sub was away, still found (the mount's old listing of sub answered)")
	}
	if _, err := lookup(t, sub2, "h"); err != nil {
		t.Errorf("alice/sub/h, made while sub was away, not found: %v", err)
	}
	if !slices.Contains(kernel.sent, "expire alice/sub g") {
		t.Errorf("sent %q: the kernel keeps its entry of alice/sub/g", kernel.sent)
	}
}

// The peer's UNWATCHED sub comes first in its batch (export/watch.go
// report), and the mount tells the invalidator of each line as it reads
// it (watchOnce): the invalidator may run between UNWATCHED's change
// (Replaced, no inode: pathsMovedLocked) and the CHANGED (or GONE) line
// after it. The third review found the first alone dropped sub's entry
// outright (a process's working directory there then failed getcwd).
func TestRV4UnwatchedAloneDropsEntry(t *testing.T) {
	f, store := newTestFS(t)
	writeFile(t, filepath.Join(store.base, "alice", "sub", "g"), "two")
	alice := mustLookup(t, f.root, "alice").(*dir)
	sub := mustLookup(t, alice, "sub").(*dir)
	subIno := sub.peerInode()
	kernel := &recordingKernel{}
	inv := &invalidator{fsys: f, kernel: kernel, peers: store.Peers()}
	for _, tc := range []struct {
		name string
		next EntryChange
	}{
		{"moved away and back (mv sub x; mv x sub)", EntryChange{Peer: "alice", Path: "sub", Type: fs.ModeDir, Ino: subIno, Replaced: true}},
		{"moved away (mv sub x)", EntryChange{Peer: "alice", Path: "sub", Gone: true, Replaced: true}},
	} {
		kernel.sent = nil
		unwatched := EntryChange{Peer: "alice", Path: "sub", Type: fs.ModeDir, Replaced: true}
		inv.applyEntries(map[nodeKey]EntryChange{{"alice", "sub"}: unwatched})
		inv.applyEntries(map[nodeKey]EntryChange{{"alice", "sub"}: tc.next})
		if slices.Contains(kernel.sent, "entry alice/ sub") {
			t.Errorf("%s, its lines applied one by one: sent %q (sub's entry dropped)", tc.name, kernel.sent)
		}
	}
}
