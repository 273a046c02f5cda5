package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// A peer folder answers namespace operations as a local directory does,
// errno for errno, also about files the peer does not know yet.

// TestNamespaceSeesPendingFiles: rmdir and rename over a directory see the
// files this mount created there and has not uploaded yet (ENOTEMPTY, as
// a local directory says), instead of succeeding on the peer and losing
// them; a file created read-only (O_CREAT|O_RDONLY) is on the peer as
// soon as it is closed, as a written one is.
func TestNamespaceSeesPendingFiles(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	p := newSyscallPair(t, a.dir(b))
	p.same(
		"mkdir d", "open f d/f creat",
		"rmdir d", // open, not uploaded
		"close f",
	)
	if _, err := os.Stat(filepath.Join(b.export, "d", "f")); err != nil {
		t.Errorf("a file created read-only is not on the peer after its close: %v", err)
	}
	p.same(
		"rmdir d",
		"mkdir a", "mkdir b", "open g b/g creat|wronly", "write g kept",
		"rename a b", // written, open
		"close g",
		"rename a b",
		"mkdir a2", "mkdir b2", "open h b2/h creat", "close h",
		"rename a2 b2", // created read-only, closed
		"open i i creat|wronly", "mkdir i", "close i",
		"ls b", "ls b2", "ls d",
	)
	sameFile(t, filepath.Join(b.export, "b", "g"), []byte("kept"))
	for _, f := range []string{"b2/h", "i"} {
		if _, err := os.Stat(filepath.Join(b.export, f)); err != nil {
			t.Errorf("%s on bob: %v", f, err)
		}
	}
	if r := status(t, "--cache-dir", a.cache); r.Pending.Files != 0 {
		t.Errorf("alice has %d files pending upload", r.Pending.Files)
	}
}
