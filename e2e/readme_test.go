package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// README.md's commands, run as written where this machine allows (paths
// under / are moved into the test's directory, and tracker-host:7070 is
// the test's tracker).

// readmeBlock returns the fenced code block number n (from 0) after the
// heading that starts with heading in README.md.
func readmeBlock(t *testing.T, heading string, n int) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	in, found, count := false, false, 0
	var block []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "#") && !in:
			if found && strings.HasPrefix(l, "## ") || found && strings.HasPrefix(l, "### ") {
				t.Fatalf("README: no block %d under %q", n, heading)
			}
			if strings.HasPrefix(strings.TrimLeft(l, "# "), heading) {
				found = true
			}
		case strings.HasPrefix(l, "```") && found:
			if in {
				if count == n {
					return strings.Join(block, "\n") + "\n"
				}
				count++
				block = nil
			}
			in = !in
		case in:
			block = append(block, l)
		}
	}
	t.Fatalf("README: no block %d under %q", n, heading)
	return ""
}

// TestReadmeGoVersion: the Go version README asks for is go.mod's.
func TestReadmeGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	readme, _ := os.ReadFile("../README.md")
	if m == nil || !strings.Contains(string(readme), "with Go "+string(m[1])+" or newer") {
		t.Errorf("README.md does not ask for Go %s or newer (go.mod's go line)", m[1])
	}
}

// script runs a README block with bash -e in the environment env. sudo
// runs its command with the environment reset but for PATH and HOME, as
// sudo's default env_reset does (the test runs as root or not at all).
func script(t *testing.T, dir, block string, env []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", `sudo() { env -i PATH="$PATH" HOME="$HOME" "$@"; }`+"\n"+block)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestReadmeInstall: the Installing block puts a working peerfs where it
// says: go install into GOBIN (GOPATH/bin), make install into
// PREFIX/bin (/usr/local/bin).
func TestReadmeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds peerfs twice")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("skipping: no make")
	}
	block := readmeBlock(t, "Installing", 0)
	for _, want := range []string{"go install ./cmd/peerfs", "make build && sudo make install"} {
		if !strings.Contains(block, want) {
			t.Fatalf("the Installing block lacks %q:\n%s", want, block)
		}
	}
	dir := t.TempDir()
	// Into the test's directory, not /usr/local and ~/go/bin.
	block = strings.ReplaceAll(block, "sudo make install", "sudo make install PREFIX="+filepath.Join(dir, "usr", "local"))
	env := append(os.Environ(), "GOBIN="+filepath.Join(dir, "gobin"))
	if out, err := script(t, "..", block, env); err != nil {
		t.Fatalf("README's install commands: %v\n%s", err, out)
	}
	for _, p := range []string{filepath.Join(dir, "gobin", "peerfs"), filepath.Join(dir, "usr", "local", "bin", "peerfs")} {
		if out, err := exec.Command(p, "version").Output(); err != nil || !strings.HasPrefix(string(out), "peerfs ") {
			t.Errorf("%s version: %v %q", p, err, out)
		}
	}
}

// mountCount counts the mounts at mnt in mountinfo.
func mountCount(mnt string) int {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mnt {
			n++
		}
	}
	return n
}

// TestReadmeMountHelper: the mount(8) block (link the helper, make
// /etc/peerfs, install the secret, mount, status, umount) and the fstab
// line, mounted twice with mount -a: the second time it is already
// mounted.
func TestReadmeMountHelper(t *testing.T) {
	installHelper(t, bin) // skips unless root with FUSE; README's ln -sf replaces it
	c := newCluster(t)
	c.mount("alice")
	dir := t.TempDir()
	name := "e2e-" + strings.ToLower(rand.Text()[:10])
	systemPlaces(t, name) // mount(8) gives its helper no HOME
	for _, d := range []string{"srv/shared", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	move := strings.NewReplacer(
		"/usr/local/bin/peerfs", bin,
		"/etc/peerfs", dir+"/etc/peerfs",
		"/mnt/peers", dir+"/mnt/peers",
		"/srv/shared", dir+"/srv/shared",
		"tracker-host:7070", c.tracker,
		// Any free port instead of 7071, which may be taken here.
		"name=laptop", "name="+name+",listen=127.0.0.1:0",
		"laptop", name,
	)
	mnt := dir + "/mnt/peers"
	t.Cleanup(func() {
		if pid := daemonOf(t, mnt); pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		ensureUnmounted(t, mnt)
	})
	env := []string{"PATH=" + filepath.Dir(bin) + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir + "/home",
		"PEERFS_SECRET=" + clusterSecret}
	block := move.Replace(readmeBlock(t, "mount(8), /etc/fstab and systemd", 0))
	out, err := script(t, dir, block, env)
	if err != nil {
		t.Fatalf("README's mount(8) commands: %v\n%s\n%s", err, block, out)
	}
	if !strings.Contains(out, "peerfs "+name+" ") || !strings.Contains(out, c.tracker+", registered") {
		t.Errorf("README's peerfs status printed:\n%s", out)
	}
	if fi, err := os.Stat(dir + "/etc/peerfs/secret"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the secret file: %v %v", fi, err)
	}
	if dest, err := os.Readlink(helperLink); err != nil || dest != bin {
		t.Errorf("%s -> %q (%v)", helperLink, dest, err)
	}
	if isMounted(mnt) {
		t.Error("still mounted after README's umount")
	}

	// The fstab line, through mount -a, twice.
	fstab := move.Replace(readmeBlock(t, "mount(8), /etc/fstab and systemd", 1))
	fstabPath := filepath.Join(dir, "fstab")
	writeFile(t, fstabPath, []byte(fstab))
	for i := range 2 {
		cmd := exec.Command("mount", "-a", "-v", "-T", fstabPath)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil || mountCount(mnt) != 1 {
			t.Fatalf("mount -a (%d): %v, %d mounts at %s:\n%s", i+1, err, mountCount(mnt), mnt, out)
		}
		if i == 1 && !strings.Contains(string(out), "already mounted") {
			t.Errorf("the second mount -a did not find the line mounted:\n%s", out)
		}
	}
	pid := daemonOf(t, mnt)
	if pid == 0 {
		t.Error("no daemon found for the fstab mount")
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	waitFor(t, 15*time.Second, "the fstab daemon to exit", func() bool { return gone(pid) })
}

// TestDemoBanner: ./mount.sh --demo, from a checkout without bin/peerfs,
// says it is building, prints a peerfs status command for each mount
// that works as printed, and on SIGTERM unmounts and removes everything.
func TestDemoBanner(t *testing.T) {
	needFUSE(t)
	if testing.Short() {
		t.Skip("skipping: builds peerfs")
	}
	// A checkout of this one without bin/: the demo builds its own.
	tree := t.TempDir()
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); n != "bin" && n != ".git" {
			abs, _ := filepath.Abs(filepath.Join("..", n))
			if err := os.Symlink(abs, filepath.Join(tree, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := t.TempDir()
	cmd := exec.Command(filepath.Join(tree, "mount.sh"), "--demo")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = daemonAttr() // the demo stops its daemons on SIGTERM
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var lines []string
	var status [][2]string // who, command
	banner := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`^\s+(\S*peerfs status .*/(alice|bob)/cache)$`)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				status = append(status, [2]string{m[2], m[1]})
			}
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C to stop") {
				close(banner)
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		// What a killed demo may leave.
		for _, who := range []string{"alice", "bob"} {
			if ms, _ := filepath.Glob(filepath.Join(tmp, "peerfs-demo.*", who, "mnt")); len(ms) > 0 {
				ensureUnmounted(t, ms[0])
			}
		}
	})
	select {
	case <-banner:
	case <-done:
		t.Fatalf("mount.sh --demo ended before its banner:\n%s\n%s", strings.Join(lines, "\n"), stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("no banner after 3 minutes:\n%s\n%s", strings.Join(lines, "\n"), stderr.String())
	}
	if !strings.Contains(stderr.String(), "mount.sh: building "+tree+"/bin/peerfs") {
		t.Errorf("the build was not announced:\n%s", stderr.String())
	}
	if len(status) != 2 {
		t.Fatalf("the banner has %d peerfs status commands, want one per mount:\n%s", len(status), strings.Join(lines, "\n"))
	}
	for _, s := range status {
		var out string
		waitFor(t, 15*time.Second, s[0]+"'s status through the printed command", func() bool {
			o, err := runCmd(t, 10*time.Second, "", "sh", "-c", s[1])
			out = o
			return err == nil && strings.Contains(o, "peerfs "+s[0]) && strings.Contains(o, ", registered")
		})
		if !strings.Contains(out, "up") {
			t.Errorf("%s: %s\n%s", s[0], s[1], out)
		}
	}
	demo, _ := filepath.Glob(filepath.Join(tmp, "peerfs-demo.*"))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("mount.sh --demo did not stop within 60s of SIGTERM")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("mount.sh --demo after SIGTERM: %v", err)
	}
	for _, d := range demo {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", d, err)
		}
		for _, who := range []string{"alice", "bob"} {
			if isMounted(filepath.Join(d, who, "mnt")) {
				t.Errorf("%s's demo mount left mounted", who)
			}
		}
	}
}
