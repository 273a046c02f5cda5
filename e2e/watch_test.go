package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMountWatchedFolder: in a peer folder the peer watches, `ls -l` and
// `stat` long after the attribute timeout ask the peer nothing (no LIST,
// no STAT: the mount's listings stay current from the peer's reports),
// and a change made on the peer's disk behind the mount's back still
// shows within the attribute timeout, as without watching. With
// --watch-timeout 0 the same `ls -l` asks again.
func TestMountWatchedFolder(t *testing.T) {
	c := newCluster(t)
	maddr := freeAddr(t)
	a := c.mount("alice", "--metrics-listen", maddr)
	b := c.mount("bob")
	a.sees(b)
	if err := os.MkdirAll(filepath.Join(b.export, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(b.export, "docs", "a.txt"), []byte("one\n"))
	docs := filepath.Join(a.dir(b), "docs")
	requests := func() float64 { // what a cache miss asks (not the health PING)
		l, _ := scrape(t, maddr, "peerfs_peer_requests_total", `peer="bob"`, `verb="LIST"`)
		s, _ := scrape(t, maddr, "peerfs_peer_requests_total", `peer="bob"`, `verb="STAT"`)
		return l + s
	}
	// Listed twice: the first asks for the watch, the one after the
	// attribute timeout (1 s) is taken while watched.
	mustRun(t, "", "ls", "-l", a.dir(b), docs)
	time.Sleep(1500 * time.Millisecond)
	mustRun(t, "", "ls", "-l", a.dir(b), docs)
	mustRun(t, "", "stat", a.dir(b))
	before := requests()
	for range 3 {
		time.Sleep(1200 * time.Millisecond) // past the kernel's and the mount's attribute timeout
		mustRun(t, "", "ls", "-l", docs)
		mustRun(t, "", "stat", filepath.Join(docs, "a.txt"))
	}
	if n := requests() - before; n != 0 {
		t.Errorf("%v LIST and STAT requests to bob for ls and stat in a watched folder past the attribute timeout:\n%s", n,
			grepLines(func() string { _, p := scrape(t, maddr, "peerfs_peer_requests_total"); return p }(), `peer="bob"`))
	}
	// A change on bob's disk: seen within the kernel's attribute timeout.
	writeFile(t, filepath.Join(b.export, "docs", "b.txt"), []byte("two\n"))
	if err := os.WriteFile(filepath.Join(b.export, "docs", "a.txt"), []byte("one, longer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "bob's changes seen in alice's folder", func() bool {
		fa, err := os.Stat(filepath.Join(docs, "a.txt"))
		_, errb := os.Stat(filepath.Join(docs, "b.txt"))
		return err == nil && fa.Size() == 12 && errb == nil
	})
	sameFile(t, filepath.Join(docs, "a.txt"), []byte("one, longer\n"))
}

// TestMountWatchOff: --watch-timeout 0 asks the peer again once the
// attribute timeout is over, as before watching.
func TestMountWatchOff(t *testing.T) {
	c := newCluster(t)
	maddr := freeAddr(t)
	a := c.mount("alice", "--metrics-listen", maddr, "--watch-timeout", "0")
	b := c.mount("bob")
	a.sees(b)
	writeFile(t, filepath.Join(b.export, "a.txt"), []byte("one\n"))
	mustRun(t, "", "ls", "-l", a.dir(b))
	time.Sleep(1500 * time.Millisecond)
	mustRun(t, "", "ls", "-l", a.dir(b))
	before, _ := scrape(t, maddr, "peerfs_peer_requests_total", `peer="bob"`, `verb="LIST"`)
	time.Sleep(1200 * time.Millisecond)
	mustRun(t, "", "ls", "-l", a.dir(b))
	if n, _ := scrape(t, maddr, "peerfs_peer_requests_total", `peer="bob"`, `verb="LIST"`); n == before {
		t.Error("with --watch-timeout 0, ls -l past the attribute timeout did not list again")
	}
}
