package fusefs

import (
	"path/filepath"
	"testing"
)

// A FORGET answered (by the goroutine the hand-off timer started) between
// a Lookup finding a node and the server giving it a NodeID must not
// leave the node out of the table that invalidations look in: the kernel
// knows it again. This is the node's half: Forget takes it out of the
// table, Revive puts it back unless a newer node took its name. The
// server's half (it calls Revive then, and hands out a new NodeID) is
// fuseserve's TestLookupAfterForgetRevives.
func TestReviveAfterForget(t *testing.T) {
	f, store := newTestFS(t)
	writeFile(t, filepath.Join(store.base, "alice", "f.txt"), "data")
	alice := mustLookup(t, f.root, "alice").(*dir)
	first := mustLookup(t, alice, "f.txt").(*file)
	// A slow Lookup finds the node; meanwhile the kernel's FORGET of it
	// is answered; then the server registers the Lookup's node again.
	found := mustLookup(t, alice, "f.txt").(*file)
	if found != first {
		t.Fatal("the second lookup made a new node; the test needs the same one")
	}
	inTable := func() *node {
		f.names.mu.Lock()
		defer f.names.mu.Unlock()
		return f.names.nodes[first.key()]
	}
	first.Forget()
	if inTable() != nil {
		t.Fatal("Forget left the node in the table; the test tests nothing")
	}
	found.Revive()
	if got := inTable(); got != first.node {
		t.Errorf("after Revive, the table holds %p for f.txt, want the node the kernel now knows (%p)", got, first.node)
	}

	// Forgotten again, and a lookup made a newer node of that name: a
	// late Revive of the old one leaves the newer in place.
	first.Forget()
	newer := mustLookup(t, alice, "f.txt").(*file)
	if newer == first {
		t.Fatal("lookup after Forget returned the forgotten node")
	}
	first.Revive()
	if got := inTable(); got != newer.node {
		t.Errorf("after a late Revive, the table holds %p, want the newer node %p", got, newer.node)
	}
}
