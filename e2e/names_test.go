package e2e

// Names over NAME_MAX are refused in a peer folder as in a local
// directory, errno for errno.

import (
	"os"
	"strings"
	"testing"
)

// TestNamesTooLong: a name over 255 bytes is refused with ENAMETOOLONG by
// every call that takes one, as on a local directory, before anything is
// cached or sent; 255 bytes work.
func TestNamesTooLong(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	p := newSyscallPair(t, a.dir(b))
	p.same(
		"open f @256 creat|wronly",
		"open f @256 creat",
		"open f @300",
		"mkdir @256",
		"stat @256",
		"open g a creat|wronly", "close g",
		"rename a @256",
		"rename @256 a",
		"link a @256",
		"symlink a @256",
		"mknod @256",
		"unlink @256",
		"rmdir @256",
		"mkdir d", "open f d/@256 creat|wronly", "rename a d/@256", "rmdir d",
		"open f @255 creat|wronly", "write f x", "close f",
		"stat @255",
		"rename @255 b",
		"unlink b",
		"ls .",
	)
	entries, err := os.ReadDir(b.export)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if len(e.Name()) > 255 || strings.HasPrefix(e.Name(), ".peerfs-tmp-") {
			t.Errorf("bob's export holds %q", e.Name())
		}
	}
	if r := status(t, "--cache-dir", a.cache); r.Pending.Files != 0 {
		t.Errorf("alice has %d files pending upload", r.Pending.Files)
	}
}
