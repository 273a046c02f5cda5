package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

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
