package fuseserve

import (
	"context"
	"slices"
	"testing"

	"bazil.org/fuse"
)

// The kernel may forget a node after a Lookup found it and before the
// server gives it a NodeID (the hand-off timer let another goroutine
// answer the FORGET). The node is told it is known again, under a new
// NodeID: the forgotten one is never handed out again. (fusefs's
// TestReviveAfterForget is the node's half.)
func TestLookupAfterForgetRevives(t *testing.T) {
	s, rec := newTestServer(t)
	ctx := context.Background()
	dir, _ := s.nodes.get(idDir)
	var resp fuse.LookupResponse
	// The Lookup found dir; meanwhile the kernel forgot it.
	s.nodes.forget(idDir, 1)
	if err := s.saveLookup(ctx, &resp, servedNode{node: nil, inode: 1}, "dir", dir.node); err != nil {
		t.Fatal(err)
	}
	if want := []string{"dir.Forget", "dir.Attr", "dir.Revive"}; !slices.Equal(rec.calls, want) {
		t.Errorf("calls %q, want %q", rec.calls, want)
	}
	if resp.Node == idDir || resp.Node != idNext {
		t.Errorf("NodeID %d after the forget, want a new one (%d)", resp.Node, idNext)
	}
	// A lookup of a node the kernel still knows revives nothing.
	rec.calls = nil
	if err := s.saveLookup(ctx, &resp, servedNode{inode: 1}, "dir", dir.node); err != nil {
		t.Fatal(err)
	}
	if want := []string{"dir.Attr"}; !slices.Equal(rec.calls, want) {
		t.Errorf("calls %q, want %q", rec.calls, want)
	}
	knows(idNext, 2)(t, s)
}
