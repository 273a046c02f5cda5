package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// peerfsCmd runs the binary with args, as a member of the tests'
// cluster, and returns its exit code and combined output.
func peerfsCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PEERFS_SECRET="+clusterSecret)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("peerfs %v: %v\n%s", args, err, out)
	}
	return 0, string(out)
}

// TestUnmountOnlyPeerfs: peerfs unmount leaves other filesystems alone,
// says plainly that a directory is not mounted, and unmounts a peerfs
// mount (whose daemon then exits).
func TestUnmountOnlyPeerfs(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	code, out := peerfsCmd(t, "unmount", dir)
	if code != 1 || strings.TrimSpace(out) != "peerfs unmount: "+dir+" is not mounted" {
		t.Errorf("unmount of a plain directory: exit %d, %q", code, out)
	}
	code, out = peerfsCmd(t, "unmount", filepath.Join(dir, "nothing"))
	if code != 1 || !strings.Contains(out, "no such directory") {
		t.Errorf("unmount of a missing path: exit %d, %q", code, out)
	}

	if os.Geteuid() == 0 {
		tmpfs := t.TempDir()
		if mout, err := exec.Command("mount", "-t", "tmpfs", "peerfs-test", tmpfs).CombinedOutput(); err != nil {
			t.Logf("cannot mount a tmpfs (%v: %s); skipping that part", err, mout)
		} else {
			t.Cleanup(func() { exec.Command("umount", "-l", tmpfs).Run() })
			code, out = peerfsCmd(t, "unmount", tmpfs)
			if code != 1 || !strings.Contains(out, "is a tmpfs mount, not peerfs") {
				t.Errorf("unmount of a tmpfs: exit %d, %q", code, out)
			}
			if !isMounted(tmpfs) {
				t.Error("peerfs unmount unmounted a tmpfs")
			}
		}
	}

	c := newCluster(t)
	a := c.mount("alice")
	if code, out := peerfsCmd(t, "unmount", a.mnt); code != 0 {
		t.Fatalf("unmount of a peerfs mount: exit %d, %q", code, out)
	}
	waitFor(t, 15*time.Second, "alice's daemon to exit", a.p.exited)
	if isMounted(a.mnt) {
		t.Error("still mounted")
	}
}

// TestMountpointRefused: peerfs mount refuses a directory that already
// holds a live mount and a path that is not a directory, before serving
// anything.
func TestMountpointRefused(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, []byte("not a directory"))
	for _, tc := range []struct{ mnt, want string }{
		{a.mnt, a.mnt + " is already a peerfs mount (of " + c.tracker + "); peerfs unmount " + a.mnt + " first"},
		{file, file + " is not a directory"},
		{filepath.Join(t.TempDir(), "none"), "does not exist: create the directory first"},
	} {
		code, out := peerfsCmd(t, "mount", "--name", "bob", "--export", t.TempDir(), "--tracker", c.tracker,
			"--listen", "127.0.0.1:0", "--cache-dir", t.TempDir(), tc.mnt)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("mount onto %s: exit %d, want 1 and %q:\n%s", tc.mnt, code, tc.want, out)
		}
	}
	// alice's mount is untouched.
	if _, err := os.Stat(filepath.Join(a.mnt, ".peerfs")); err != nil || a.p.exited() {
		t.Errorf("alice's mount: %v", err)
	}
}
