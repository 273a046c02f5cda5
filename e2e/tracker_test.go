package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestTrackerJoinLeave: three peer daemons register; an observer speaking
// the raw protocol sees UPDATEs as they join, leave cleanly and get killed.
func TestTrackerJoinLeave(t *testing.T) {
	addr := freeAddr(t)
	start(t, "tracker", nil, nil, "tracker", "--listen", addr, "--peer-timeout", "10s")
	waitFor(t, 10*time.Second, "tracker listening", func() bool {
		c, err := dialQuiet(addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	obs := dialLine(t, addr)
	obs.send("REGISTER\n")
	obs.expect("REGISTER OK")
	obs.expect("UPDATE")

	names := []string{"p1", "p2", "p3"}
	procs := map[string]*proc{}
	for i, n := range names {
		procs[n] = start(t, n, nil, nil, "peer", "--shell", "off", "--name", n, "--export", t.TempDir(),
			"--listen", "127.0.0.1:0", "--tracker", addr)
		line := obs.line()
		if !strings.HasPrefix(line, "UPDATE ") || strings.Count(line, "@127.0.0.1:") != i+1 || !strings.Contains(line, " "+n+"@") {
			t.Fatalf("after %s joined: %q", n, line)
		}
	}
	// Clean leave: SIGTERM.
	procs["p1"].stop(t)
	if line := obs.line(); strings.Contains(line, "p1@") || !strings.Contains(line, "p2@") {
		t.Fatalf("after p1 left: %q", line)
	}
	// Killed without a word: the socket closes, the tracker notices.
	procs["p2"].kill()
	if line := obs.line(); line != "UPDATE "+strings.TrimPrefix(line, "UPDATE ") || strings.Contains(line, "p2@") || !strings.Contains(line, "p3@") {
		t.Fatalf("after p2 was killed: %q", line)
	}
	// The observer can still run a SYNC round with the remaining peer.
	obs.send("SYNC\n")
	obs.expect("SYNC OK")
	obs.send("SYNC FIN\n")
	obs.expect("SYNC END 1")
}
