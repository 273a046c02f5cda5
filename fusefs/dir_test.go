package fusefs

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
)

func TestLookupUsesListing(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	writeFile(t, filepath.Join(store.base, "alice", "a.txt"), "hello")
	writeFile(t, filepath.Join(store.base, "alice", "sub", "b.txt"), "bye")

	alice := mustLookup(t, f.root, "alice").(*dir)
	ents, err := alice.ReadDirAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 || ents[0].Name != "." || ents[1].Name != ".." {
		t.Fatalf("entries = %v, want . .. and two", ents)
	}
	ents = ents[2:]
	stats := store.stats.Load()
	a := mustLookup(t, alice, "a.txt")
	sub := mustLookup(t, alice, "sub")
	aa, sa := attr(t, a), attr(t, sub)
	if got := store.stats.Load() - stats; got != 0 {
		t.Errorf("%d Stat calls after ReadDirAll; want lookups and attrs answered by the listing", got)
	}
	if aa.Size != 5 || aa.Mode != 0o644 || !sa.Mode.IsDir() {
		t.Errorf("attrs: a.txt %v, sub %v", aa, sa)
	}
	for _, e := range ents {
		want := map[string]uint64{"a.txt": aa.Inode, "sub": sa.Inode}[e.Name]
		if e.Inode != want {
			t.Errorf("readdir inode of %s = %d, lookup says %d", e.Name, e.Inode, want)
		}
	}
	_, err = lookup(t, alice, "missing")
	wantErrno(t, "lookup missing (from listing)", err, syscall.ENOENT)

	// Once primed attributes are used, Attr asks the Store again.
	attr(t, a)
	if got := store.stats.Load() - stats; got != 1 {
		t.Errorf("%d Stat calls for a second Attr, want 1", got)
	}

	// The listing expires with the entry timeout.
	f.names.mu.Lock()
	l := f.names.listings[nodeKey{"alice", ""}]
	l.at = l.at.Add(-time.Hour)
	f.names.listings[nodeKey{"alice", ""}] = l
	f.names.mu.Unlock()
	stats = store.stats.Load()
	mustLookup(t, alice, "a.txt")
	if got := store.stats.Load() - stats; got != 1 {
		t.Errorf("%d Stat calls for a lookup after the listing expired, want 1", got)
	}
}

func TestRenameKeepsNodes(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	writeFile(t, filepath.Join(store.base, "alice", "d", "f.txt"), "data")
	writeFile(t, filepath.Join(store.base, "alice", "old"), "old")
	alice := mustLookup(t, f.root, "alice").(*dir)
	bob := mustLookup(t, f.root, "bob").(*dir)
	d := mustLookup(t, alice, "d").(*dir)
	fl := mustLookup(t, d, "f.txt").(*file)
	ino := attr(t, fl).Inode
	old := mustLookup(t, alice, "old").(*file)

	if err := alice.Rename(ctx, &fuse.RenameRequest{OldName: "d", NewName: "e"}, alice); err != nil {
		t.Fatal(err)
	}
	if fl.key().path != "e/f.txt" {
		t.Errorf("path of moved file = %q", fl.key().path)
	}
	if a := attr(t, fl); a.Inode != ino || a.Size != 4 {
		t.Errorf("moved file attr = %v, want inode %d", a, ino)
	}
	e := mustLookup(t, alice, "e").(*dir)
	if e != d || mustLookup(t, e, "f.txt") != fl {
		t.Error("lookup after rename returned other nodes")
	}

	// Rename over an existing file: the replaced node is unlinked.
	if err := e.Rename(ctx, &fuse.RenameRequest{OldName: "f.txt", NewName: "old"}, alice); err != nil {
		t.Fatal(err)
	}
	if !old.removed {
		t.Error("replaced node not marked removed")
	}
	if a := attr(t, old); a.Nlink != 0 || a.Size != 3 {
		t.Errorf("attr of replaced file = %v", a)
	}
	if got := mustLookup(t, alice, "old"); got != fl || attr(t, got).Inode != ino {
		t.Error("lookup of the new name did not find the moved node")
	}

	err := alice.Rename(ctx, &fuse.RenameRequest{OldName: "old", NewName: "x"}, bob)
	wantErrno(t, "rename across peers", err, syscall.EXDEV)
	err = alice.Rename(ctx, &fuse.RenameRequest{OldName: "old", NewName: "x"}, f.root)
	wantErrno(t, "rename into root", err, syscall.EACCES)
	_, err = bob.Link(ctx, &fuse.LinkRequest{NewName: "hard"}, fl)
	wantErrno(t, "link across peers", err, syscall.EXDEV)
	_, err = alice.Link(ctx, &fuse.LinkRequest{NewName: "hard"}, e)
	wantErrno(t, "link of a directory", err, syscall.EPERM)
}

func TestRemoveAndMkdir(t *testing.T) {
	f, store := newTestFS(t)
	ctx := context.Background()
	writeFile(t, filepath.Join(store.base, "bob", "f"), "x")
	bob := mustLookup(t, f.root, "bob").(*dir)
	fl := mustLookup(t, bob, "f")
	wantErrno(t, "rmdir of a file", bob.Remove(ctx, &fuse.RemoveRequest{Name: "f", Dir: true}), syscall.ENOTDIR)
	if err := bob.Remove(ctx, &fuse.RemoveRequest{Name: "f"}); err != nil {
		t.Fatal(err)
	}
	_, err := lookup(t, bob, "f")
	wantErrno(t, "lookup removed", err, syscall.ENOENT)

	// A directory made under the same name is a new node.
	d, err := bob.Mkdir(ctx, &fuse.MkdirRequest{Name: "f", Mode: 0o750})
	if err != nil {
		t.Fatal(err)
	}
	if d == fl {
		t.Error("mkdir reused the removed file's node")
	}
	if a := attr(t, d); !a.Mode.IsDir() || a.Mode.Perm() != 0o750 {
		t.Errorf("new dir attr = %v", a)
	}
	_, err = bob.Mkdir(ctx, &fuse.MkdirRequest{Name: "f", Mode: 0o750})
	wantErrno(t, "mkdir existing", err, syscall.EEXIST)
	wantErrno(t, "unlink of a dir", bob.Remove(ctx, &fuse.RemoveRequest{Name: "f"}), syscall.EISDIR)
	if err := bob.Remove(ctx, &fuse.RemoveRequest{Name: "f", Dir: true}); err != nil {
		t.Fatal(err)
	}
}
