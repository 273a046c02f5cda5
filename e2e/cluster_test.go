package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// needFUSE skips a test that needs a real FUSE mount where none is possible.
func needFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("skipping: /dev/fuse is missing, FUSE mounts are impossible here")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("skipping: fusermount3 is missing (apt-get install fuse3; .ci/run does)")
	}
}

// cluster is a tracker and the mounts started against it.
type cluster struct {
	t       *testing.T
	tracker string
	tproc   *proc
	env     []string // added to every process's environment (another secret...)
}

func newCluster(t *testing.T, trackerArgs ...string) *cluster {
	t.Helper()
	return newClusterEnv(t, nil, trackerArgs...)
}

// newClusterEnv is newCluster whose processes get env added to their
// environment, e.g. a PEERFS_SECRET of their own.
func newClusterEnv(t *testing.T, env []string, trackerArgs ...string) *cluster {
	t.Helper()
	needFUSE(t)
	addr := freeAddr(t)
	p := startEnv(t, "tracker", env, nil, nil, append([]string{"tracker", "--listen", addr, "--log-level", "debug"}, trackerArgs...)...)
	return &cluster{t: t, tracker: addr, tproc: p, env: env}
}

// node is one `peerfs mount` process: its export, mountpoint and cache.
type node struct {
	name, export, mnt, cache, listen string
	args                             []string
	p                                *proc
	c                                *cluster
}

// mount starts a mount daemon named name and waits until it is mounted.
func (c *cluster) mount(name string, extra ...string) *node {
	c.t.Helper()
	return c.mountExport(name, "", extra...)
}

// mountExport is mount with export as the daemon's export directory ("":
// a fresh one).
func (c *cluster) mountExport(name, export string, extra ...string) *node {
	c.t.Helper()
	base := c.t.TempDir()
	if export == "" {
		export = filepath.Join(base, "export")
	}
	n := &node{
		name: name, c: c,
		export: export,
		mnt:    filepath.Join(base, "mnt"),
		cache:  filepath.Join(base, "cache"),
		listen: freeAddr(c.t),
		args:   extra,
	}
	for _, d := range []string{n.export, n.mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
	c.t.Cleanup(func() { ensureUnmounted(c.t, n.mnt) })
	n.start()
	return n
}

func (n *node) start() {
	t := n.c.t
	t.Helper()
	args := append([]string{"mount", "--name", n.name, "--export", n.export, "--tracker", n.c.tracker,
		"--listen", n.listen, "--cache-dir", n.cache, "--timeout", "2s", "--log-level", "debug"}, n.args...)
	n.p = startEnv(t, n.name, n.c.env, nil, nil, append(args, n.mnt)...)
	waitFor(t, 15*time.Second, n.name+" mounted", func() bool {
		if n.p.exited() {
			t.Fatalf("%s exited: %v\n%s", n.name, n.p.err, n.p.log.String())
		}
		return isMounted(n.mnt)
	})
}

// dir returns the folder of peer other inside n's mount.
func (n *node) dir(other *node) string { return filepath.Join(n.mnt, other.name) }

// sees waits until n's mount root lists every peer in others.
func (n *node) sees(others ...*node) {
	t := n.c.t
	t.Helper()
	waitFor(t, 15*time.Second, n.name+" listing its peers", func() bool {
		names, err := readDirNames(n.mnt)
		if err != nil {
			return false
		}
		for _, o := range others {
			if !slices.Contains(names, o.name) {
				return false
			}
		}
		return true
	})
}

// readDirNames lists dir in a child process (ls), keeping syscalls on
// the mount out of the test process that also serves nothing, but may
// hold references.
func readDirNames(dir string) ([]string, error) {
	out, err := exec.Command("ls", "-1A", dir).Output()
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

func isMounted(mnt string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == mnt {
			return true
		}
	}
	return false
}

// ensureUnmounted lazily unmounts mnt if a test left it mounted.
func ensureUnmounted(t *testing.T, mnt string) {
	if !isMounted(mnt) {
		return
	}
	t.Logf("%s still mounted at cleanup; unmounting lazily", mnt)
	_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
	deadline := time.Now().Add(5 * time.Second)
	for isMounted(mnt) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if isMounted(mnt) {
		t.Errorf("%s is still mounted", mnt)
	}
}
