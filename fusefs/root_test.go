package fusefs

import (
	"context"
	"syscall"
	"testing"

	"bazil.org/fuse"
)

func TestRoot(t *testing.T) {
	f, _ := newTestFS(t)
	ctx := context.Background()
	a := attr(t, f.root)
	if a.Inode != 1 || !a.Mode.IsDir() {
		t.Errorf("root attr = %v", a)
	}
	ents, err := f.root.ReadDirAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 || ents[0].Name != "." || ents[1].Name != ".." || ents[0].Inode != 1 {
		t.Fatalf("root entries = %v, want . and .. (the root) first", ents)
	}
	ents = ents[2:]
	if ents[0].Name != "alice" || ents[1].Name != "bob" || ents[0].Type != fuse.DT_Dir {
		t.Fatalf("root entries = %v", ents)
	}
	alice := mustLookup(t, f.root, "alice")
	if got := attr(t, alice).Inode; got != ents[0].Inode {
		t.Errorf("alice inode %d from lookup, %d from readdir", got, ents[0].Inode)
	}
	if again := mustLookup(t, f.root, "alice"); again != alice {
		t.Error("second lookup of alice returned another node")
	}
	_, err = lookup(t, f.root, "carol")
	wantErrno(t, "lookup carol", err, syscall.ENOENT)
	_, err = f.root.Mkdir(ctx, &fuse.MkdirRequest{Name: "carol", Mode: 0o755})
	wantErrno(t, "mkdir in root", err, syscall.EACCES)
	_, _, err = f.root.Create(ctx, &fuse.CreateRequest{Name: "x", Mode: 0o644}, &fuse.CreateResponse{})
	wantErrno(t, "create in root", err, syscall.EACCES)
	wantErrno(t, "rmdir peer", f.root.Remove(ctx, &fuse.RemoveRequest{Name: "alice", Dir: true}), syscall.EACCES)
}
