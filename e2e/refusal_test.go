package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Refusals that stand until someone acts end a starting command; later
// in a mount's life they are logged as errors and shown by peerfs status.

// exitCode waits up to 30s for p to exit and returns its exit code.
func exitCode(t *testing.T, p *proc) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still runs after 30s; it should have given up", p.name)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// TestBadTrackerAddressIsUsageError: an address without a port, with a
// port out of range, or naming no host, is a usage error (exit 2) of
// mount and peer, before anything is mounted.
func TestBadTrackerAddressIsUsageError(t *testing.T) {
	needFUSE(t)
	for _, addr := range []string{
		"127.0.0.1",
		"127.0.0.1:99999",
		"127.0.0.1:http",
		// .onion names never go to DNS (RFC 7686): no query leaves the
		// machine, and the resolver says no such host.
		"peerfs-no-such-tracker.onion:7070",
	} {
		mnt := t.TempDir()
		for _, args := range [][]string{
			{"mount", "--name", "alice", "--export", t.TempDir(), "--tracker", addr, "--listen", "127.0.0.1:0", "--cache-dir", t.TempDir(), mnt},
			{"peer", "--shell", "off", "--name", "alice", "--export", t.TempDir(), "--tracker", addr, "--listen", "127.0.0.1:0"},
		} {
			p := start(t, args[0], nil, nil, args...)
			if code := exitCode(t, p); code != 2 || !strings.Contains(p.log.String(), `--tracker "`+addr+`"`) {
				t.Errorf("peerfs %s --tracker %s: exit %d, want 2 and the address named:\n%s", args[0], addr, code, p.log.String())
			}
		}
		if isMounted(mnt) {
			t.Errorf("--tracker %s: mounted anyway", addr)
		}
	}
	// From the environment, it is named as such.
	p := startEnv(t, "mount", []string{"PEERFS_TRACKER=tracker-host"}, nil, nil, "mount", "--export", t.TempDir(), "--cache-dir", t.TempDir(), t.TempDir())
	if code := exitCode(t, p); code != 2 || !strings.Contains(p.log.String(), `PEERFS_TRACKER="tracker-host": want HOST:PORT`) {
		t.Errorf("PEERFS_TRACKER=tracker-host: exit %d:\n%s", code, p.log.String())
	}
}

// TestFinalRefusalEndsCommand: a tracker that answers "not a member"
// (another secret) or "name taken" ends peerfs mount and peerfs peer
// with its answer, before anything is mounted.
func TestFinalRefusalEndsCommand(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	// alice must hold its name before another mount asks for it: a mount
	// that finds the tracker not yet listening registers in the
	// background, and the second "alice" could then be the first.
	waitFor(t, 15*time.Second, "alice registered", func() bool {
		return strings.Contains(a.p.log.String(), "registered with tracker")
	})
	other := []string{"PEERFS_SECRET=another-cluster-" + strings.Repeat("x", 16)}

	for _, tc := range []struct {
		what string
		env  []string
		name string
		want []string
	}{
		{"another secret", other, "bob", []string{"refuses this peer: REGISTER FAIL denied not a member of this cluster", "PEERFS_SECRET is not the tracker's cluster secret"}},
		{"a taken name", nil, "alice", []string{"refuses this peer: REGISTER FAIL exists", "choose another with --name"}},
	} {
		mnt := t.TempDir()
		p := startEnv(t, "mount", tc.env, nil, nil, "mount", "--name", tc.name, "--export", t.TempDir(), "--tracker", c.tracker,
			"--listen", "127.0.0.1:0", "--cache-dir", t.TempDir(), mnt)
		code := exitCode(t, p)
		for _, want := range tc.want {
			if !strings.Contains(p.log.String(), want) {
				t.Errorf("mount with %s: lacks %q (exit %d):\n%s", tc.what, want, code, p.log.String())
			}
		}
		if code != 1 {
			t.Errorf("mount with %s: exit %d, want 1", tc.what, code)
		}
		if strings.Contains(p.log.String(), "mounted; peers appear") || isMounted(mnt) {
			t.Errorf("mount with %s: mounted anyway", tc.what)
		}

		p = startEnv(t, "peer", tc.env, nil, nil, "peer", "--shell", "off", "--name", tc.name, "--export", t.TempDir(),
			"--tracker", c.tracker, "--listen", "127.0.0.1:0")
		if code := exitCode(t, p); code != 1 || !strings.Contains(p.log.String(), tc.want[0]) {
			t.Errorf("peer with %s: exit %d:\n%s", tc.what, code, p.log.String())
		}
	}
}

// TestRefusalLaterIsReported: a mount whose tracker comes back with
// another secret stays mounted, logs the refusal as an error, and
// peerfs status says why it is not registered.
func TestRefusalLaterIsReported(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	waitFor(t, 10*time.Second, "alice registered", func() bool { return status(t, "--cache-dir", a.cache).Tracker.Registered })
	c.tproc.stop(t)
	startEnv(t, "tracker-2", []string{"PEERFS_SECRET=another-cluster-" + strings.Repeat("y", 16)}, nil, nil,
		"tracker", "--listen", c.tracker)
	waitFor(t, 20*time.Second, "alice's error about the refusal", func() bool {
		for _, line := range strings.Split(a.p.log.String(), "\n") {
			if strings.Contains(line, `"level":"error"`) && strings.Contains(line, "the tracker refuses this peer") &&
				strings.Contains(line, "not a member of this cluster") {
				return true
			}
		}
		return false
	})
	out := mustRun(t, "", bin, "status", "--cache-dir", a.cache)
	if !strings.Contains(out, c.tracker+", not registered: REGISTER FAIL denied not a member of this cluster") {
		t.Errorf("status does not say why alice is not registered:\n%s", out)
	}
	if !isMounted(a.mnt) || a.p.exited() {
		t.Error("alice gave up her mount")
	}
	if _, err := os.Stat(filepath.Join(a.mnt, ".peerfs")); err != nil {
		t.Errorf("the mount does not answer: %v", err)
	}
}
