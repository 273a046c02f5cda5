package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMountRemovalsSurviveKill: rm -r, mv, mkdir -p, and a directory's
// chmod and touch in a peer folder are acknowledged while the peer is
// stopped (written behind), the mount is killed (-9) with them pending,
// and after a restart on the same cache they reach the peer, in order
// (each directory after its files, or the peer would refuse it; a name
// made again after its removal; a directory's times after what was made
// in it), and nothing else is removed.
func TestMountRemovalsSurviveKill(t *testing.T) {
	c := newCluster(t)
	b := c.mount("bob")
	a := c.mount("alice", "--timeout", "30s", "--attr-timeout", "60s")
	a.sees(b)
	if err := os.MkdirAll(filepath.Join(b.export, "tree", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		writeFile(t, filepath.Join(b.export, "tree", "sub", fmt.Sprintf("f%02d", i)), []byte("doomed\n"))
	}
	writeFile(t, filepath.Join(b.export, "tree", "top.txt"), []byte("doomed too\n"))
	writeFile(t, filepath.Join(b.export, "keep.txt"), []byte("kept\n"))
	writeFile(t, filepath.Join(b.export, "draft.txt"), []byte("renamed\n"))
	mustRun(t, "", "ls", "-lR", a.dir(b))  // alice knows the tree (60 s)
	mustRun(t, "", "stat", "-f", a.dir(b)) // and bob's statfs, which rm's fts asks

	stopProc(t, b.p)
	if out, err := runCmd(t, 20*time.Second, "", "rm", "-r", filepath.Join(a.dir(b), "tree")); err != nil {
		t.Fatalf("rm -r with bob stopped: %v %s (removals not written behind?)", err, out)
	}
	if out, err := runCmd(t, 20*time.Second, "", "mv", filepath.Join(a.dir(b), "draft.txt"), filepath.Join(a.dir(b), "final.txt")); err != nil {
		t.Fatalf("mv with bob stopped: %v %s (rename not written behind?)", err, out)
	}
	// The removed tree's name made again, under it a new directory,
	// given a mode and a time as tar and cp -a do at their end.
	mustRun(t, "", "mkdir", "-p", filepath.Join(a.dir(b), "tree", "again"))
	mustRun(t, "", "chmod", "700", filepath.Join(a.dir(b), "tree", "again"))
	mustRun(t, "", "touch", "-d", "@1600000000", filepath.Join(a.dir(b), "tree", "again"), filepath.Join(a.dir(b), "tree"))
	if fi, err := os.Stat(filepath.Join(a.dir(b), "tree", "again")); err != nil || fi.Mode().Perm() != 0o700 || fi.ModTime().Unix() != 1600000000 {
		t.Errorf("alice's tree/again with bob stopped: %v %v; want 0700 at 1600000000", fi, err)
	}
	if names, err := readDirNames(a.dir(b)); err != nil || !slices.Equal(names, []string{"final.txt", "keep.txt", "tree"}) {
		t.Errorf("alice's folder of bob after rm -r, mv and mkdir -p: %q %v, want [final.txt keep.txt tree]", names, err)
	}
	journal := filepath.Join(a.cache, "namespace.log")
	if fi, err := os.Stat(journal); err != nil || fi.Size() == 0 {
		t.Fatalf("journal after rm -r with bob stopped: %v %v; want the removals in it", fi, err)
	}

	a.p.kill()
	ensureUnmounted(t, a.mnt)
	if _, err := os.Stat(filepath.Join(b.export, "tree", "sub")); err != nil {
		t.Fatalf("bob's tree changed while he was stopped: %v", err)
	}
	contProc(t, b.p)
	a.start()
	waitFor(t, 30*time.Second, "the removals and mkdirs carried out on bob after alice's restart", func() bool {
		_, err := os.Stat(filepath.Join(b.export, "tree", "again"))
		return err == nil
	})
	if names, err := readDirNames(filepath.Join(b.export, "tree")); err != nil || !slices.Equal(names, []string{"again"}) {
		t.Errorf("bob's tree after the replay: %q %v, want [again] (the old tree removed first)", names, err)
	}
	waitFor(t, 10*time.Second, "the chmod and times carried out on bob", func() bool {
		again, err1 := os.Stat(filepath.Join(b.export, "tree", "again"))
		tree, err2 := os.Stat(filepath.Join(b.export, "tree"))
		return err1 == nil && err2 == nil && again.Mode().Perm() == 0o700 && again.ModTime().Unix() == 1600000000 && tree.ModTime().Unix() == 1600000000
	})
	sameFile(t, filepath.Join(b.export, "keep.txt"), []byte("kept\n"))
	waitFor(t, 10*time.Second, "the rename carried out on bob", func() bool {
		got, err := os.ReadFile(filepath.Join(b.export, "final.txt"))
		return err == nil && string(got) == "renamed\n"
	})
	if _, err := os.Stat(filepath.Join(b.export, "draft.txt")); !os.IsNotExist(err) {
		t.Errorf("bob's draft.txt after the replayed rename: %v", err)
	}
	waitFor(t, 10*time.Second, "alice's journal emptied", func() bool {
		fi, err := os.Stat(journal)
		return err == nil && fi.Size() == 0
	})
	if !strings.Contains(a.p.log.String(), "acknowledged by an earlier run") {
		t.Error("the restarted mount did not log the removals it replayed")
	}
	if names, err := readDirNames(a.dir(b)); err != nil || !slices.Equal(names, []string{"final.txt", "keep.txt", "tree"}) {
		t.Errorf("alice's folder of bob after the replay: %q %v, want [final.txt keep.txt tree]", names, err)
	}
}
