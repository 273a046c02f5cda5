package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
)

// Daemon hygiene: a closed log does not kill a daemon, log lines have
// one field per meaning and durations with units, mount.sh --help.

// TestMountSurvivesClosedLog: `peerfs mount ... | head`: once the reader
// of the daemon's stdout and stderr is gone, the daemon keeps serving
// (it is not killed by SIGPIPE, which would leave a dead mount) and still
// stops cleanly on SIGTERM.
func TestMountSurvivesClosedLog(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	base := t.TempDir()
	export, mnt := filepath.Join(base, "export"), filepath.Join(base, "mnt")
	for _, d := range []string{export, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { ensureUnmounted(t, mnt) })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "mount", "--name", "bob", "--export", export, "--tracker", c.tracker,
		"--listen", freeAddr(t), "--cache-dir", filepath.Join(base, "cache"), "--timeout", "2s",
		"--log-level", "debug", "--log-format", "json", mnt)
	cmd.Env = append(os.Environ(), "PEERFS_SECRET="+clusterSecret)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = daemonAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	// Read like head: a few lines, until the mount is up, then go away.
	sc := bufio.NewScanner(r)
	for sc.Scan() && !strings.Contains(sc.Text(), "mounted; peers appear as folders") {
	}
	r.Close()

	// Every operation now logs (debug) into the closed pipe.
	waitFor(t, 15*time.Second, "bob's mount listing alice", func() bool {
		names, err := readDirNames(mnt)
		return err == nil && strings.Contains(strings.Join(names, " "), "alice")
	})
	for i := range 20 {
		writeFile(t, filepath.Join(mnt, "alice", "f.txt"), []byte(strings.Repeat("x", i)))
	}
	sameFile(t, filepath.Join(a.export, "f.txt"), []byte(strings.Repeat("x", 19)))
	select {
	case <-done:
		t.Fatalf("the daemon died after its log was closed: %v", waitErr)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
	if isMounted(mnt) {
		t.Error("still mounted after SIGTERM")
	}
}

// duplicateKeys returns the keys that occur more than once in the JSON
// object line.
func duplicateKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	seen := map[string]bool{}
	var dups []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := tok.(string)
		if seen[k] {
			dups = append(dups, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return dups, nil
}

// TestLogFieldsOnce: in the logs of a tracker and two mounts at work, no
// line carries a field twice (a line about another peer keeps the
// daemon's own name in "self" and the other's in "peer"), and durations
// are written with their unit.
func TestLogFieldsOnce(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	b.sees(a)
	writeFile(t, filepath.Join(a.dir(b), "x.txt"), []byte("x"))
	mustRun(t, "", "ls", "-l", a.dir(b))
	runCmd(t, 10*time.Second, "", "cat", filepath.Join(a.dir(b), "missing"))
	if out, err := opsHelper(t, "sync", filepath.Join(a.mnt, ".peerfs", "sync")); err != nil {
		t.Fatalf("sync: %v %s", err, out)
	}
	b.p.stop(t) // alice's tracker client and pinger log bob leaving

	aboutBob := false
	for _, p := range []*proc{c.tproc, a.p, b.p} {
		for _, line := range strings.Split(p.log.String(), "\n") {
			if !strings.HasPrefix(line, "{") {
				continue
			}
			dups, err := duplicateKeys(line)
			if err != nil {
				t.Errorf("%s: bad log line %q: %v", p.name, line, err)
			}
			if len(dups) > 0 {
				t.Errorf("%s: fields %v twice in %s", p.name, dups, line)
			}
			var rec map[string]any
			json.Unmarshal([]byte(line), &rec)
			if p == a.p && rec["peer"] == "bob" && rec["self"] == "alice" {
				aboutBob = true
			}
		}
	}
	if !aboutBob {
		t.Error("no line of alice's log names bob as peer and alice as self")
	}
	var ready map[string]any
	for _, line := range strings.Split(c.tproc.log.String(), "\n") {
		if strings.Contains(line, `"tracker ready"`) {
			json.Unmarshal([]byte(line), &ready)
		}
	}
	if ready["lease"] != "30s" {
		t.Errorf("tracker ready: lease = %v, want \"30s\"", ready["lease"])
	}
}

// TestMountShHelp: ./mount.sh --help prints its usage and exits 0; a
// wrong command line exits 2.
func TestMountShHelp(t *testing.T) {
	out, err := exec.Command("../mount.sh", "--help").Output()
	if err != nil || !bytes.Contains(out, []byte("./mount.sh --demo")) {
		t.Errorf("mount.sh --help: %v\n%s", err, out)
	}
	err = exec.Command("../mount.sh", "only-one-arg").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("mount.sh with one argument: %v, want exit 2", err)
	}
}

// TestDaemonsDieWithTheTest: a daemon the tests start (daemonAttr) does
// not outlive the test binary when it dies without cleaning up, as go
// test's timeout makes it: a leftover mount daemon would hold its mount
// into the next run. A child of the test binary starts a tracker as the
// harness does and exits at once; the tracker ends too.
func TestDaemonsDieWithTheTest(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$", bin)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=start-and-die")
	out, err := cmd.Output()
	var pid int
	if _, serr := fmt.Sscanf(string(out), "pid %d", &pid); serr != nil {
		t.Fatalf("the child said %q (%v, %v)", out, err, serr)
	}
	t.Cleanup(func() {
		if !testutil.Ended(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	waitFor(t, 20*time.Second, "the tracker to end with the binary that started it", func() bool {
		return testutil.Ended(pid)
	})
}
