package fusefs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bfs "bazil.org/fuse/fs"
)

// recordingKernel is a kernelCache that records the invalidations, each
// node named by its path ("/" for the root).
type recordingKernel struct{ sent []string }

func nodeName(n bfs.Node) string {
	switch n := n.(type) {
	case *root:
		return "/"
	case *dir:
		return n.peer + "/" + n.key().path
	case *file:
		return n.peer + "/" + n.key().path
	}
	return fmt.Sprintf("%T", n)
}

func (k *recordingKernel) InvalidateEntry(parent bfs.Node, name string) error {
	k.sent = append(k.sent, "entry "+nodeName(parent)+" "+name)
	return nil
}

func (k *recordingKernel) ExpireEntry(parent bfs.Node, name string) error {
	k.sent = append(k.sent, "expire "+nodeName(parent)+" "+name)
	return nil
}

func (k *recordingKernel) InvalidateNodeAttr(n bfs.Node) error {
	k.sent = append(k.sent, "attr "+nodeName(n))
	return nil
}

func (k *recordingKernel) InvalidateNodeData(n bfs.Node) error {
	k.sent = append(k.sent, "data "+nodeName(n))
	return nil
}

// A Watch event invalidates what the kernel may cache of the names it
// covers, as far as the name table knows them, and the listings that
// answer lookups (TestMountWatchInvalidates shows the kernel's side).
func TestInvalidatorApply(t *testing.T) {
	f, store := newTestFS(t)
	writeFile(t, filepath.Join(store.base, "alice", "f"), "one")
	writeFile(t, filepath.Join(store.base, "alice", "sub", "g"), "two")
	alice := mustLookup(t, f.root, "alice").(*dir)
	mustLookup(t, alice, "f")
	sub := mustLookup(t, alice, "sub").(*dir)
	mustLookup(t, sub, "g")
	mustLookup(t, f.root, "bob")
	if _, err := alice.ReadDirAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	kernel := &recordingKernel{}
	inv := &invalidator{fsys: f, kernel: kernel, peers: store.Peers()}

	for _, tc := range []struct {
		ev   watchEvent
		want []string
	}{
		// The peer's folder's attributes go with any event of the peer.
		{watchEvent{"alice", "sub"}, []string{"entry alice/sub g", "data alice/sub/g", "attr alice/sub", "attr alice/"}},
		{watchEvent{"alice", ""}, []string{
			"entry alice/ f", "entry alice/ sub", "entry alice/sub g",
			"data alice/f", "data alice/sub/g", "attr alice/", "attr alice/sub"}},
	} {
		kernel.sent = nil
		inv.apply(tc.ev)
		slices.Sort(kernel.sent)
		slices.Sort(tc.want)
		if !slices.Equal(kernel.sent, tc.want) {
			t.Errorf("event %v: sent %q, want %q", tc.ev, kernel.sent, tc.want)
		}
	}
	if _, _, listed := f.names.getListing(nodeKey{"alice", ""}, "f"); listed {
		t.Error("alice's listing survived an event for all of alice")
	}

	// A peer gone: its entry in the root is dropped, and so is every
	// peer's the root lists, in case one came.
	if err := os.RemoveAll(filepath.Join(store.base, "bob")); err != nil {
		t.Fatal(err)
	}
	kernel.sent = nil
	inv.apply(watchEvent{"", ""})
	if want := []string{"entry / alice", "entry / bob"}; !slices.Equal(kernel.sent, want) {
		t.Errorf("peer list event: sent %q, want %q", kernel.sent, want)
	}
}

// Another writer's change to one name (EntryWatcher) invalidates that
// name only: its entry where it was made, removed or replaced, where its
// type changed or where the kernel holds no node for it (a negative
// entry at most); else a file's data (with its attributes) or another
// node's attributes; and its directory's attributes, once. Only that
// directory's listing is forgotten.
func TestInvalidatorApplyEntries(t *testing.T) {
	f, store := newTestFS(t)
	writeFile(t, filepath.Join(store.base, "alice", "f"), "one")
	writeFile(t, filepath.Join(store.base, "alice", "sub", "g"), "two")
	alice := mustLookup(t, f.root, "alice").(*dir)
	mustLookup(t, alice, "f")
	sub := mustLookup(t, alice, "sub").(*dir)
	mustLookup(t, sub, "g")
	subIno := sub.peerInode()
	if subIno == 0 {
		t.Fatal("alice/sub's peer inode unknown")
	}
	kernel := &recordingKernel{}
	inv := &invalidator{fsys: f, kernel: kernel, peers: store.Peers()}
	for _, tc := range []struct {
		name string
		chs  []EntryChange
		want []string
	}{
		{"a file's content", []EntryChange{{Peer: "alice", Path: "f"}},
			[]string{"data alice/f", "attr alice/"}},
		{"a directory's attributes", []EntryChange{{Peer: "alice", Path: "sub", Type: fs.ModeDir}},
			[]string{"attr alice/sub", "attr alice/"}},
		{"a file removed", []EntryChange{{Peer: "alice", Path: "sub/g", Gone: true}},
			[]string{"entry alice/sub g", "data alice/sub/g", "attr alice/sub"}},
		// A directory whose path may lead elsewhere now: it and its
		// children are looked up again at their next use, not dropped
		// (a process's working directory may be back by then: moved
		// away and back); their pages and attributes go.
		{"a directory replaced", []EntryChange{{Peer: "alice", Path: "sub", Type: fs.ModeDir, Replaced: true}},
			[]string{"expire alice/ sub", "expire alice/sub g", "data alice/sub/g", "attr alice/sub", "attr alice/"}},
		{"a directory of another inode", []EntryChange{{Peer: "alice", Path: "sub", Type: fs.ModeDir, Ino: subIno + 1}},
			[]string{"expire alice/ sub", "expire alice/sub g", "data alice/sub/g", "attr alice/sub", "attr alice/"}},
		{"a directory gone", []EntryChange{{Peer: "alice", Path: "sub", Gone: true}},
			[]string{"expire alice/ sub", "expire alice/sub g", "data alice/sub/g", "attr alice/sub", "attr alice/"}},
		{"a directory now a file", []EntryChange{{Peer: "alice", Path: "sub"}},
			[]string{"expire alice/ sub", "expire alice/sub g", "data alice/sub/g", "attr alice/sub", "attr alice/"}},
		{"the same directory, other attributes", []EntryChange{{Peer: "alice", Path: "sub", Type: fs.ModeDir, Ino: subIno}},
			[]string{"attr alice/sub", "attr alice/"}},
		{"a file now a directory", []EntryChange{{Peer: "alice", Path: "f", Type: fs.ModeDir}},
			[]string{"entry alice/ f", "data alice/f", "attr alice/"}},
		{"a name the kernel holds no node of", []EntryChange{{Peer: "alice", Path: "new"}},
			[]string{"entry alice/ new", "attr alice/"}},
		{"two in one directory", []EntryChange{{Peer: "alice", Path: "f"}, {Peer: "alice", Path: "new"}},
			[]string{"data alice/f", "entry alice/ new", "attr alice/"}},
	} {
		chs := map[nodeKey]EntryChange{}
		for _, ch := range tc.chs {
			chs[nodeKey{ch.Peer, ch.Path}] = ch
		}
		kernel.sent = nil
		inv.applyEntries(chs)
		slices.Sort(kernel.sent)
		slices.Sort(tc.want)
		if !slices.Equal(kernel.sent, tc.want) {
			t.Errorf("%s: sent %q, want %q", tc.name, kernel.sent, tc.want)
		}
	}

	// Only the listing of the changed name's directory is forgotten, and
	// a LIST of it on its way is not kept; one of another directory is.
	infos := func(d *dir) []fs.FileInfo {
		t.Helper()
		out, err := f.store.List(t.Context(), d.peer, d.key().path)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	aliceInfos, subInfos := infos(alice), infos(sub)
	gen := f.names.listGeneration()
	f.names.staleName(EntryChange{Peer: "alice", Path: "sub/g"})
	f.names.putListing(nodeKey{"alice", ""}, gen, aliceInfos)
	f.names.putListing(nodeKey{"alice", "sub"}, gen, subInfos)
	if _, _, listed := f.names.getListing(nodeKey{"alice", ""}, "f"); !listed {
		t.Error("alice's listing, taken across a change in alice/sub, was not kept")
	}
	if _, _, listed := f.names.getListing(nodeKey{"alice", "sub"}, "g"); listed {
		t.Error("alice/sub's listing, taken across a change in it, was kept")
	}
	f.names.staleName(EntryChange{Peer: "alice", Path: "f"})
	if _, _, listed := f.names.getListing(nodeKey{"alice", ""}, "f"); listed {
		t.Error("alice's listing survived a change in it")
	}
}

// The listing generations stay bounded: past maxDropped directories
// dropped, every token taken before is refused, one taken after is not.
func TestListingGenerationsBounded(t *testing.T) {
	names := newNameTable(time.Minute)
	old := names.listGeneration()
	for i := range maxDropped + 10 {
		names.dropListing(nodeKey{"alice", fmt.Sprintf("d%d/x", i)})
	}
	if len(names.dropped) > maxDropped {
		t.Errorf("%d directories' drops kept, bound %d", len(names.dropped), maxDropped)
	}
	d := nodeKey{"alice", "elsewhere"}
	names.putListing(d, old, nil)
	if _, _, listed := names.getListing(d, "x"); listed {
		t.Error("a token from before the bound was reached was taken")
	}
	names.putListing(d, names.listGeneration(), nil)
	if _, _, listed := names.getListing(d, "x"); !listed {
		t.Error("a fresh token was refused")
	}
	names.dropPeerListingsLocked("alice")
	names.putListing(d, names.listGeneration()-1, nil)
	if _, _, listed := names.getListing(d, "x"); listed {
		t.Error("a token from before the peer's listings were dropped was taken")
	}
}

// The names whose invalidations wait stay bounded (the kernel may hold
// one up on a directory lock while a peer reports a tree removed): past
// maxEntryChanges, the peer's whole folder goes at once instead.
func TestInvalidatorEntriesBounded(t *testing.T) {
	f, store := newTestFS(t)
	inv := &invalidator{fsys: f, kernel: &recordingKernel{}, peers: store.Peers(),
		wake: make(chan struct{}, 1), pending: map[watchEvent]struct{}{}, entries: map[nodeKey]EntryChange{}, waiting: map[string]int{}}
	for i := range maxEntryChanges + 1 {
		inv.enqueueEntry(EntryChange{Peer: "alice", Path: fmt.Sprintf("d/f%d", i)})
		inv.enqueueEntry(EntryChange{Peer: "alice", Path: fmt.Sprintf("d/f%d", i), Replaced: i == 0})
	}
	if n := len(inv.entries); n > maxEntryChanges {
		t.Errorf("%d names wait, bound %d", n, maxEntryChanges)
	}
	if _, ok := inv.pending[watchEvent{"alice", ""}]; !ok {
		t.Error("past the bound, alice's folder as a whole was not queued")
	}
	// The bound is per peer: another's name waits as itself (review).
	inv.enqueueEntry(EntryChange{Peer: "carol", Path: "notes.txt"})
	if _, all := inv.pending[watchEvent{"carol", ""}]; all {
		t.Error("one name of carol's had all of carol's folder invalidated")
	}
	// A name told twice waits once, replaced if either said so.
	inv.enqueueEntry(EntryChange{Peer: "bob", Path: "x", Replaced: true})
	inv.enqueueEntry(EntryChange{Peer: "bob", Path: "x"})
	if ch := inv.entries[nodeKey{"bob", "x"}]; !ch.Replaced {
		t.Errorf("bob/x waits as %+v", ch)
	}
}
