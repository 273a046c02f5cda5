package fusefs

import (
	"context"
	"testing"

	"bazil.org/fuse"
)

// A peer's folder, and what is in it, reports that peer's space; the
// root (the FS) the sum over all peers.
func TestStatfs(t *testing.T) {
	f, _ := newTestFS(t)
	ctx := context.Background()
	alice := mustLookup(t, f.root, "alice").(*dir)
	one := &fuse.StatfsResponse{}
	if err := alice.Statfs(ctx, &fuse.StatfsRequest{}, one); err != nil {
		t.Fatal(err)
	}
	all := &fuse.StatfsResponse{}
	if err := f.Statfs(ctx, &fuse.StatfsRequest{Header: fuse.Header{Node: 1}}, all); err != nil {
		t.Fatal(err)
	}
	if one.Blocks == 0 || all.Blocks != 2*one.Blocks {
		t.Errorf("statfs: alice %d blocks, root %d (both peers share a disk)", one.Blocks, all.Blocks)
	}
	if one.Namelen != maxNameLen {
		t.Errorf("statfs: name length %d, want %d", one.Namelen, maxNameLen)
	}
}
