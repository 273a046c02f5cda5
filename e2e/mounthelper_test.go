package e2e

import (
	"bufio"
	"crypto/rand"
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

// The mount helper as mount(8) runs it, and the systemd unit as systemd
// would run it.

// helperLink is where mount(8) looks for the helper of type fuse.peerfs.
const helperLink = "/sbin/mount.fuse.peerfs"

// installHelper links helperLink to target for the test, skipping the
// test where that is impossible or a helper is installed already.
func installHelper(t *testing.T, target string) {
	t.Helper()
	needFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("skipping: mount(8) with a helper needs root")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("skipping: no mount(8)")
	}
	if _, err := os.Lstat(helperLink); err == nil {
		t.Skipf("skipping: %s exists already (not replacing an installed helper)", helperLink)
	}
	if err := os.Symlink(target, helperLink); err != nil {
		t.Skipf("skipping: cannot install %s: %v", helperLink, err)
	}
	t.Cleanup(func() { os.Remove(helperLink) })
}

// systemPlaces removes, at the end of the test, what a mount named name
// run by root without $HOME leaves in the system's directories.
func systemPlaces(t *testing.T, name string) {
	t.Cleanup(func() {
		for _, p := range []string{"/var/cache/peerfs/" + name, "/var/log/peerfs/" + name + ".log"} {
			os.RemoveAll(p)
		}
		os.Remove("/var/cache/peerfs") // if empty
		os.Remove("/var/log/peerfs")
	})
}

// envI runs a command as env -i does: no environment at all, as mount(8)
// at boot and systemd give their children (PATH included).
func envI(t *testing.T, extra []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append([]string{}, extra...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// daemonOf returns the pid of the mount-helper daemon serving mnt, or 0.
func daemonOf(t *testing.T, mnt string) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 4 && args[1] == "mount-helper" && args[2] == "--foreground" && args[4] == mnt {
			var pid int
			fmt.Sscan(filepath.Base(d), &pid)
			return pid
		}
	}
	return 0
}

// gone reports whether the process pid has exited (pid 0: never was),
// also if nobody reaped it yet: a daemon the mount helper started is
// the init process's child, which need not reap it (kill -0 succeeds
// on a zombie).
func gone(pid int) bool { return pid == 0 || testutil.Ended(pid) }

// TestMountHelperWithoutEnvironment: mount -t fuse.peerfs run with no
// environment (env -i: no HOME, no PATH) mounts, with the cache in
// /var/cache/peerfs/NAME, which peerfs status (also without HOME) finds;
// a daemon that cannot start fails the mount with its complaint, naming
// the options as typed.
func TestMountHelperWithoutEnvironment(t *testing.T) {
	installHelper(t, bin)
	c := newCluster(t)
	alice := c.mount("alice")
	base := t.TempDir()
	export, mnt := filepath.Join(base, "export"), filepath.Join(base, "mnt")
	for _, d := range []string{export, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte(clusterSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	name := "e2e-" + strings.ToLower(rand.Text()[:10])
	systemPlaces(t, name)
	t.Cleanup(func() {
		if pid := daemonOf(t, mnt); pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		ensureUnmounted(t, mnt)
		if t.Failed() {
			b, _ := os.ReadFile("/var/log/peerfs/" + name + ".log")
			t.Logf("---- %s's log ----\n%s", name, b)
		}
	})
	opts := "export=" + export + ",name=" + name + ",secret_file=" + secret + ",listen=127.0.0.1:0,_netdev,nofail"
	if out, err := envI(t, nil, "/usr/bin/env", "-i", "mount", "-t", "fuse.peerfs", c.tracker, mnt, "-o", opts); err != nil {
		t.Fatalf("env -i mount -t fuse.peerfs: %v\n%s", err, out)
	}
	if !isMounted(mnt) {
		t.Fatal("mount returned before the mountpoint was mounted")
	}
	if _, err := os.Stat(filepath.Join("/var/cache/peerfs", name, "control.sock")); err != nil {
		t.Errorf("the cache of a root mount without HOME is not /var/cache/peerfs/%s: %v", name, err)
	}
	out, err := envI(t, nil, bin, "status", "--name", name)
	if err != nil || !strings.Contains(out, "peerfs "+name) || !strings.Contains(out, "mounted on "+mnt) {
		t.Errorf("env -i peerfs status --name %s: %v\n%s", name, err, out)
	}
	waitFor(t, 15*time.Second, name+"'s mount listing alice", func() bool {
		names, err := readDirNames(mnt)
		return err == nil && strings.Contains(strings.Join(names, " "), "alice")
	})
	writeFile(t, filepath.Join(mnt, "alice", "via-mount.txt"), []byte("mount(8)\n"))
	sameFile(t, filepath.Join(alice.export, "via-mount.txt"), []byte("mount(8)\n"))

	// Daemons that cannot start: the mount fails with their complaint.
	other := filepath.Join(base, "other-secret")
	if err := os.WriteFile(other, []byte("another-cluster-"+rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	mnt2 := filepath.Join(base, "mnt2")
	os.Mkdir(mnt2, 0o755)
	logFile := filepath.Join(base, "failing.log")
	for _, tc := range []struct{ opts, want string }{
		{"secret_file=" + other, "refuses this peer: REGISTER FAIL denied not a member of this cluster (secret_file=" + other + " does not hold the tracker's cluster secret)"},
		{"secret_file=" + filepath.Join(base, "none"), "secret_file=" + filepath.Join(base, "none") + ": "},
		{"secret_file=" + secret + ",timeout=5", "timeout=5: want a duration with a unit"},
		{"secret_file=" + secret + ",cache-dir", "option cache-dir needs a value: cache-dir=..."},
		{"secret_file=" + secret + ",no_such_option", "unknown option no_such_option"},
	} {
		o := "export=" + export + ",name=" + name + "-2,listen=127.0.0.1:0,log_file=" + logFile + "," + tc.opts
		out, err := envI(t, nil, "/usr/bin/env", "-i", "mount", "-t", "fuse.peerfs", c.tracker, mnt2, "-o", o)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("mount -o ...,%s: %v, want a failure saying %q:\n%s", tc.opts, err, tc.want, out)
		}
		if isMounted(mnt2) {
			t.Errorf("mount -o ...,%s: mounted", tc.opts)
			ensureUnmounted(t, mnt2)
		}
	}
	systemPlaces(t, name+"-2")

	pid := daemonOf(t, mnt)
	if pid == 0 {
		t.Error("no daemon found for the mount")
	}
	if out, err := envI(t, nil, "/usr/bin/env", "-i", "umount", mnt); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	waitFor(t, 15*time.Second, "the daemon to exit after umount", func() bool { return gone(pid) })
}

// unitService returns the [Service] settings of a unit file, in order.
func unitService(t *testing.T, path string) [][2]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kv [][2]string
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			kv = append(kv, [2]string{k, v})
		}
	}
	return kv
}

// installUnit writes contrib/peerfs-mount@.service into dir as instance
// name, with the binary where make install puts it replaced by the
// tests' build, and returns its path.
func installUnit(t *testing.T, dir, name string) string {
	t.Helper()
	unit, err := os.ReadFile("../contrib/peerfs-mount@.service")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "peerfs-mount@"+name+".service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/peerfs", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemdUnitVerify: contrib/peerfs-mount@.service passes
// systemd-analyze verify without a word.
func TestSystemdUnitVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("skipping: systemd-analyze is not installed (package systemd)")
	}
	out, err := exec.Command("systemd-analyze", "verify", installUnit(t, t.TempDir(), "laptop")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnit: the commands of contrib/peerfs-mount@.service, run as
// systemd runs them (as root, with only systemd's PATH, the unit's
// environment and its EnvironmentFile: no HOME), mount, answer peerfs
// status --name and stop cleanly on SIGTERM.
func TestSystemdUnit(t *testing.T) {
	dir := t.TempDir()
	name := "e2e-" + strings.ToLower(rand.Text()[:10])
	unitPath := installUnit(t, dir, name)
	needFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("skipping the unit's commands: they run as root")
	}
	c := newCluster(t)
	c.mount("alice")
	export, mnt := filepath.Join(dir, "export"), filepath.Join(dir, "mnt") // mnt: made by ExecStartPre
	if err := os.Mkdir(export, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(clusterSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	systemPlaces(t, name)
	t.Cleanup(func() { ensureUnmounted(t, mnt) })

	// The EnvironmentFile: the example, edited as its comment says.
	example, err := os.ReadFile("../contrib/peerfs-mount.env.example")
	if err != nil {
		t.Fatal(err)
	}
	edits := map[string]string{"MOUNTPOINT": mnt, "PEERFS_TRACKER": c.tracker, "PEERFS_EXPORT": export,
		"PEERFS_SECRET_FILE": secret, "PEERFS_LISTEN": "127.0.0.1:0"}
	env := map[string]string{}
	var envList []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			envList = append(envList, k)
		}
		env[k] = v
	}
	// What systemd gives every system service (systemd.exec(5)): a PATH;
	// no HOME without User=.
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	for _, line := range strings.Split(string(example), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if e, ok := edits[k]; ok {
			v = e
		}
		set(k, v)
	}
	expand := func(s string) string {
		s = strings.ReplaceAll(s, "%i", name)
		return os.Expand(s, func(k string) string { return env[k] })
	}
	var start, stopPost []string
	for _, kv := range unitService(t, unitPath) {
		switch kv[0] {
		case "Environment":
			for _, a := range strings.Fields(kv[1]) {
				k, v, _ := strings.Cut(a, "=")
				set(k, expand(v))
			}
		case "ExecStartPre":
			args := strings.Fields(expand(kv[1]))
			if out, err := envI(t, nil, args[0], args[1:]...); err != nil {
				t.Fatalf("ExecStartPre %v: %v %s", args, err, out)
			}
		case "ExecStart":
			start = strings.Fields(expand(kv[1]))
		case "ExecStopPost":
			stopPost = strings.Fields(expand(strings.TrimPrefix(kv[1], "-")))
		}
	}
	var environ []string
	for _, k := range envList {
		environ = append(environ, k+"="+env[k])
	}
	if env["PEERFS_NAME"] != name || len(start) == 0 {
		t.Fatalf("the unit's environment %v, ExecStart %v", environ, start)
	}
	cmd := exec.Command(start[0], start[1:]...)
	cmd.Env = environ
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = daemonAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
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
		if t.Failed() {
			t.Logf("---- the unit's log ----\n%s", log.String())
		}
	})
	waitFor(t, 20*time.Second, "the unit's mount", func() bool {
		select {
		case <-done:
			t.Fatalf("ExecStart exited: %v", waitErr)
		default:
		}
		return isMounted(mnt)
	})
	if _, err := os.Stat(filepath.Join("/var/cache/peerfs", name, "control.sock")); err != nil {
		t.Errorf("the unit's cache is not in /var/cache/peerfs/%s: %v", name, err)
	}
	if out, err := envI(t, nil, bin, "status", "--name", name); err != nil || !strings.Contains(out, "mounted on "+mnt) {
		t.Errorf("peerfs status --name %s: %v\n%s", name, err, out)
	}
	waitFor(t, 15*time.Second, "the unit's mount listing alice", func() bool {
		names, err := readDirNames(mnt)
		return err == nil && strings.Contains(strings.Join(names, " "), "alice")
	})

	// systemctl stop: SIGTERM, a clean exit, then ExecStopPost.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", waitErr)
		}
	case <-time.After(30 * time.Second): // TimeoutStopSec
		t.Fatal("no exit within TimeoutStopSec of SIGTERM")
	}
	if isMounted(mnt) {
		t.Error("still mounted after the stop")
	}
	if len(stopPost) > 0 {
		envI(t, environ, stopPost[0], stopPost[1:]...) // "-": its failure is ignored
	}
}
