package e2e

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// Review of 5c3b9c7 (fusefs node.localStored): the kernel keeps a file's
// attributes for the attribute timeout while it has changes not stored,
// and only a flush or fsync of that file has it drop them. A file is
// also stored by requests that are neither: here another file's fsync,
// whose SYNC turn (FlushAll) uploads every local change. The file's
// times are the peer's from then on (the mount's Stat says so), but the
// kernel goes on showing this machine's for up to the attribute timeout
// (10 s here): before 5c3b9c7 (attribute timeout 0 for such files) the
// next stat showed the peer's.
func TestReviewLocalShownStoredByAnotherFsync(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice", "--attr-timeout", "10s")
	b := c.mount("bob")
	a.sees(b)
	dir := a.dir(b)
	// A first round: the one after a peer joins ends with every cache
	// dropped (the others' turns report writes), which would hide what
	// follows.
	w, err := os.Create(join(dir, "w"))
	okDo(t, err, "create w")
	okDo(t, w.Sync(), "fsync w")
	okDo(t, w.Close(), "close w")
	// f: written and looked at (fstat), still open: the kernel keeps
	// this machine's times.
	f, err := os.Create(join(dir, "f"))
	okDo(t, err, "create f")
	defer f.Close()
	_, err = f.WriteString("x")
	okDo(t, err, "write f")
	mtimeOf := func() int64 {
		t.Helper()
		var st syscall.Stat_t
		okDo(t, syscall.Fstat(int(f.Fd()), &st), "fstat f")
		return st.Mtim.Nano()
	}
	shown := mtimeOf()
	// Another file's fsync: its SYNC turn stores f too.
	g, err := os.Create(join(dir, "g"))
	okDo(t, err, "create g")
	defer g.Close()
	_, err = g.WriteString("y")
	okDo(t, err, "write g")
	okDo(t, g.Sync(), "fsync g")
	waitFor(t, 5*time.Second, "f stored on bob", func() bool {
		got, err := os.ReadFile(join(b.export, "f"))
		return err == nil && string(got) == "x"
	})
	var peer syscall.Stat_t
	okDo(t, syscall.Stat(join(b.export, "f"), &peer), "stat f on bob")
	if peer.Mtim.Nano() == shown {
		t.Skip("the peer stamped f with the time shown before; nothing to tell apart")
	}
	// The mount hears of the store (PUT DONE) a moment after the file is
	// on bob's disk; the kernel, not told, would keep what it has for
	// the whole 10 s.
	now := mtimeOf()
	for deadline := time.Now().Add(5 * time.Second); now != peer.Mtim.Nano() && time.Now().Before(deadline); now = mtimeOf() {
		time.Sleep(10 * time.Millisecond)
	}
	if now != peer.Mtim.Nano() {
		t.Errorf("f stored on bob by another file's fsync: fstat shows mtime %d (this machine's, shown before: %d), the peer's is %d",
			now, shown, peer.Mtim.Nano())
	}
}
