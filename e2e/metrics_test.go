package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMetricsExpectedAnswersAreNotErrors: the answers a working mount
// gives all day (a lookup of a name that does not exist yet, ENODATA for
// an extended attribute a file does not have) are not counted in
// peerfs_errors_total; a real failure is.
func TestMetricsExpectedAnswersAreNotErrors(t *testing.T) {
	c := newCluster(t)
	maddr := freeAddr(t)
	a := c.mount("alice", "--metrics-listen", maddr)
	b := c.mount("bob")
	a.sees(b)
	src := filepath.Join(t.TempDir(), "report.txt")
	writeFile(t, src, []byte("a report\n"))
	bob := a.dir(b)
	// cp and cp -a look the new name up first and probe its extended
	// attributes; ls -l probes ACLs and security labels.
	mustRun(t, "", "cp", src, filepath.Join(bob, "copy.txt"))
	mustRun(t, "", "cp", "-a", src, filepath.Join(bob, "kept.txt"))
	mustRun(t, "", "mkdir", "-p", filepath.Join(bob, "d", "e"))
	mustRun(t, "", "ls", "-l", bob)
	mustRun(t, "", "sh", "-c", "test -e "+filepath.Join(bob, "not-yet")+" || touch "+filepath.Join(bob, "not-yet"))
	sameFile(t, filepath.Join(b.export, "copy.txt"), []byte("a report\n"))

	if n, page := scrape(t, maddr, "peerfs_errors_total"); n != 0 {
		t.Errorf("peerfs_errors_total = %v after ordinary work:\n%s\n%s", n, grepLines(page, "peerfs_errors_total"), grepLines(page, "peerfs_fuse_ops_total"))
	}
	// The answers are still there, by operation and result.
	if n, _ := scrape(t, maddr, "peerfs_fuse_ops_total", `op="lookup"`, `result="ENOENT"`); n < 1 {
		t.Error("no lookup answered ENOENT")
	}

	// A real failure counts: rmdir of a directory that is not empty.
	if out, err := runCmd(t, 10*time.Second, "", "rmdir", filepath.Join(bob, "d")); err == nil {
		t.Fatalf("rmdir of a non-empty directory: %s", out)
	}
	if n, page := scrape(t, maddr, "peerfs_errors_total", `source="fuse"`, `kind="ENOTEMPTY"`); n < 1 {
		t.Errorf("ENOTEMPTY not counted:\n%s", grepLines(page, "peerfs_errors_total"))
	}
}

// TestTrackerMetricsGauges: a tracker's /metrics counts its registered
// peers and the SYNC round in progress.
func TestTrackerMetricsGauges(t *testing.T) {
	addr, maddr := freeAddr(t), freeAddr(t)
	start(t, "tracker", nil, nil, "tracker", "--listen", addr, "--metrics-listen", maddr)
	waitListening(t, addr)
	waitFor(t, 10*time.Second, "the tracker's metrics", func() bool {
		resp, err := http.Get("http://" + maddr + "/metrics")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err == nil
	})
	gauge := func(name string) float64 {
		n, page := scrape(t, maddr, name)
		if !strings.Contains(page, name) {
			t.Fatalf("no %s in the tracker's metrics", name)
		}
		return n
	}
	if n := gauge("peerfs_tracker_peers"); n != 0 {
		t.Errorf("peers before any registered: %v", n)
	}
	p1 := dialLine(t, addr)
	p1.send("REGISTER one 7001\n")
	p1.expect("REGISTER OK")
	p2 := dialLine(t, addr)
	p2.send("REGISTER\n") // anonymous
	p2.expect("REGISTER OK")
	waitFor(t, 5*time.Second, "two peers counted", func() bool { return gauge("peerfs_tracker_peers") == 2 })
	p2.send("QUIT\n")
	waitFor(t, 5*time.Second, "one peer counted after a QUIT", func() bool { return gauge("peerfs_tracker_peers") == 1 })

	if n := gauge("peerfs_tracker_sync_rounds_in_progress"); n != 0 {
		t.Errorf("rounds in progress before any: %v", n)
	}
	p1.send("SYNC\n")
	for p1.line() != "SYNC OK" {
	}
	if n := gauge("peerfs_tracker_sync_rounds_in_progress"); n != 1 {
		t.Errorf("rounds in progress while one holds the token: %v", n)
	}
	p1.send("SYNC FIN\n")
	waitFor(t, 10*time.Second, "the round to end", func() bool {
		return gauge("peerfs_tracker_sync_rounds_in_progress") == 0 && gauge("peerfs_tracker_sync_rounds_total") == 1
	})
}

// TestMetricsCreateAsksNoAttributes: a file created, looked at (fstat),
// written and closed costs the kernel no GETATTR of it. The create's
// answer (this machine's times: the file is not stored yet) is kept for
// the attribute timeout, and the close that stores the file has the
// kernel drop it (fusefs node.localStored), so a stat after the close
// asks once and sees the peer's times. Each creation still has the
// kernel ask the directory's attributes (its times changed). An
// attribute timeout of 0 for such files cost two GETATTRs more per file
// (the permission check of the create's own open, and the fstat):
// small_create's perl loop makes one fstat per file.
func TestMetricsCreateAsksNoAttributes(t *testing.T) {
	c := newCluster(t)
	maddr := freeAddr(t)
	a := c.mount("alice", "--metrics-listen", maddr)
	b := c.mount("bob")
	a.sees(b)
	dir := filepath.Join(a.dir(b), "new")
	mustRun(t, "", "mkdir", dir)
	getattrs := func() float64 {
		n, _ := scrape(t, maddr, "peerfs_fuse_ops_total", `op="getattr"`)
		return n
	}
	const files = 20
	var times []string
	before := getattrs()
	for i := range files {
		p := filepath.Join(dir, fmt.Sprint("f", i))
		f, err := os.Create(p)
		okDo(t, err, "create "+p)
		_, err = f.Stat()
		okDo(t, err, "fstat "+p)
		_, err = f.WriteString("content")
		okDo(t, err, "write "+p)
		okDo(t, f.Close(), "close "+p)
		times = append(times, steadyTimes(t, p)) // asks: the close dropped what the kernel had
	}
	// A request is counted once answered: the last may come after the
	// stat returned.
	var n float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n = getattrs() - before; n >= 2*files {
			break
		}
	}
	// Per file: the directory's, and the stat after the close.
	if n > 2*files+2 {
		t.Errorf("%d files created, looked at, written and closed cost %v GETATTRs, want at most %d", files, n, 2*files+2)
	}
	for i := range files {
		p := filepath.Join(dir, fmt.Sprint("f", i))
		sameFile(t, filepath.Join(b.export, "new", fmt.Sprint("f", i)), []byte("content"))
		if now := steadyTimes(t, p); now != times[i] {
			t.Errorf("%s: %s after its close, %s later", p, times[i], now)
		}
	}
}
