package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The operability tests: peerfs status, the .peerfs control folder, the
// user.peerfs.state attribute, metrics, the mount helper, SIGTERM.

// An ops helper child does one syscall on a mount (see runOpsHelper); it
// is dispatched here, before TestMain, from the environment.
func init() {
	if k := os.Getenv("PEERFS_E2E_OPS"); k != "" {
		os.Exit(runOpsHelper(k, os.Args[len(os.Args)-1]))
	}
}

// runOpsHelper:
//
//	getxattr PATH  print PATH's user.peerfs.state
//	xattr-loop DIR  in DIR, run commands from stdin, one answer line each:
//	               "open NAME" (keep a descriptor), "get NAME" (print its
//	               user.peerfs.state, through the descriptor if open),
//	               "close NAME"; a failure prints ERROR: ...
//	sync PATH      write "1\n" to PATH (a .peerfs/sync file), report the error
//	foreign-xattrs PATH  print the errno of lgetxattr(PATH) of the names
//	               ls -l and the kernel ask (security.selinux,
//	               system.posix_acl_access, security.capability, user.x)
func runOpsHelper(kind, path string) int {
	switch kind {
	case "foreign-xattrs":
		buf := make([]byte, 256)
		for _, name := range []string{"security.selinux", "system.posix_acl_access", "security.capability", "user.x"} {
			_, err := unix.Lgetxattr(path, name, buf)
			fmt.Printf("%s=%v\n", name, err)
		}
		return 0
	case "xattr-loop":
		// The working directory was entered at start: later lookups of
		// names in it need not reach its peer.
		files := map[string]*os.File{}
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			verb, name, _ := strings.Cut(sc.Text(), " ")
			var err error
			switch verb {
			case "open":
				files[name], err = os.Open(name)
				if err == nil {
					fmt.Println("opened")
				}
			case "close":
				if f := files[name]; f != nil {
					err = f.Close()
					delete(files, name)
				}
				if err == nil {
					fmt.Println("closed")
				}
			case "get":
				buf := make([]byte, 256)
				var n int
				if f := files[name]; f != nil {
					n, err = unix.Fgetxattr(int(f.Fd()), "user.peerfs.state", buf)
				} else {
					n, err = unix.Getxattr(name, "user.peerfs.state", buf)
				}
				if err == nil {
					fmt.Println(string(buf[:n]))
				}
			default:
				err = fmt.Errorf("unknown command %q", verb)
			}
			if err != nil {
				fmt.Println("ERROR:", err)
			}
		}
		return 0
	case "getxattr":
		buf := make([]byte, 256)
		n, err := unix.Getxattr(path, "user.peerfs.state", buf)
		if err != nil {
			return fail(err)
		}
		names := make([]byte, 256)
		m, err := unix.Listxattr(path, names)
		if err != nil {
			return fail(fmt.Errorf("listxattr: %w", err))
		}
		if m != 0 {
			// Asked by name only (fusefs/xattr.go): copies do not carry it.
			return fail(fmt.Errorf("listxattr = %q, want nothing listed", names[:m]))
		}
		fmt.Print(string(buf[:n]))
		return 0
	case "sync":
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return fail(err)
		}
		if _, err := f.Write([]byte("1\n")); err != nil {
			return fail(fmt.Errorf("write: %w", err))
		}
		if err := f.Close(); err != nil {
			return fail(fmt.Errorf("close: %w", err))
		}
		return 0
	}
	return fail(fmt.Errorf("unknown ops helper %q", kind))
}

// opsHelper runs runOpsHelper in a child process.
func opsHelper(t *testing.T, kind, path string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_OPS="+kind)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// xattrLoop is a child process sitting in a directory of a mount,
// reading user.peerfs.state of names in it on demand.
type xattrLoop struct {
	in  io.WriteCloser
	out *bufio.Reader
	cmd *exec.Cmd
}

func startXattrLoop(t *testing.T, dir string) *xattrLoop {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", dir)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PEERFS_E2E_OPS=xattr-loop")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &xattrLoop{in: in, out: bufio.NewReader(out), cmd: cmd}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return l
}

// do runs one command ("get NAME"...) and returns its answer.
func (l *xattrLoop) do(t *testing.T, cmd string) string {
	t.Helper()
	fmt.Fprintln(l.in, cmd)
	line, err := l.out.ReadString('\n')
	if err != nil {
		t.Fatalf("xattr-loop: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

// TestOpsForeignXattrsUnsupported: a peer folder keeps no extended
// attributes but its own (user.peerfs.*): a get of any other, on a file
// or a folder, says ENOTSUP, as a filesystem without them does, not
// ENODATA ("none on this file"), after which ls -l asks two of them of
// every entry it lists (a FUSE round trip each: a warm ls -l of 5000
// entries took 0.35 s instead of 0.06). Its own still answer.
func TestOpsForeignXattrsUnsupported(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	writeFile(t, filepath.Join(b.export, "f.txt"), []byte("x"))
	if err := os.Mkdir(filepath.Join(b.export, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(a.dir(b), "f.txt"), filepath.Join(a.dir(b), "d"), a.dir(b)} {
		out, err := opsHelper(t, "foreign-xattrs", p)
		if err != nil {
			t.Fatalf("%s: %v %s", p, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasSuffix(line, "="+unix.ENOTSUP.Error()) {
				t.Errorf("%s: %s, want %v", p, line, unix.ENOTSUP)
			}
		}
	}
	if got := fileState(t, filepath.Join(a.dir(b), "f.txt")); !strings.HasPrefix(got, "stored") {
		t.Errorf("user.peerfs.state of a stored file: %q", got)
	}
}

// TestCopyOutLeavesStateBehind: the user.peerfs.* attributes are
// answered when asked by name but not listed, so cp -a (as rsync -X and
// tar --xattrs) copying out of a peer folder stamps no
// user.peerfs.state=stored on the copies, nor user.peerfs.peer on a copy
// of the peer's folder: they get what copies of local files get.
func TestCopyOutLeavesStateBehind(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	local := t.TempDir()
	for _, root := range []string{b.export, local} {
		if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "d", "f.txt"), []byte("x"))
	}
	out := t.TempDir()
	mustRun(t, "", "cp", "-a", a.dir(b), filepath.Join(out, "peer"))
	mustRun(t, "", "cp", "-a", local, filepath.Join(out, "local"))
	for _, rel := range []string{"", "d", "d/f.txt"} {
		got, want := xattrNames(t, filepath.Join(out, "peer", rel)), xattrNames(t, filepath.Join(out, "local", rel))
		if !slices.Equal(got, want) {
			t.Errorf("cp -a of %q from the peer folder has extended attributes %q; from a local directory %q", rel, got, want)
		}
	}
	if got := fileState(t, filepath.Join(a.dir(b), "d", "f.txt")); !strings.HasPrefix(got, "stored") {
		t.Errorf("user.peerfs.state asked by name: %q, want stored", got)
	}
}

// xattrNames lists the extended attributes of path, a local file.
func xattrNames(t *testing.T, path string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatalf("llistxattr %s: %v", path, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// fileState reads path's user.peerfs.state from a child process.
func fileState(t *testing.T, path string) string {
	t.Helper()
	out, err := opsHelper(t, "getxattr", path)
	if err != nil {
		t.Fatalf("getxattr %s: %v %s", path, err, out)
	}
	return out
}

// report is what peerfs status --json prints (the fields the tests use).
type report struct {
	Name       string `json:"name"`
	Mountpoint string `json:"mountpoint"`
	PID        int    `json:"pid"`
	Tracker    struct {
		Addr       string `json:"addr"`
		Registered bool   `json:"registered"`
	} `json:"tracker"`
	Sync struct {
		InRound   bool   `json:"in_round"`
		LastRound uint64 `json:"last_round"`
	} `json:"sync"`
	Peers []struct {
		Name     string    `json:"name"`
		Addr     string    `json:"addr"`
		State    string    `json:"state"`
		RTT      float64   `json:"rtt_ms"`
		LastSeen time.Time `json:"last_seen"`
		BytesIn  int64     `json:"bytes_in"`
	} `json:"peers"`
	Pending struct {
		Files     int     `json:"files"`
		Bytes     int64   `json:"bytes"`
		OldestAge float64 `json:"oldest_age_s"`
	} `json:"pending"`
	Cache struct {
		Entries  int   `json:"entries"`
		MaxBytes int64 `json:"max_bytes"`
		Misses   int64 `json:"misses"`
	} `json:"cache"`
}

// status runs peerfs status --json with args and decodes it.
func status(t *testing.T, args ...string) report {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"status", "--json"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("peerfs status %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("peerfs status %v: %v", args, err)
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("peerfs status --json: %v\n%s", err, out)
	}
	return r
}

// TestOpsStatus: peerfs status (text and JSON) against two live mounts:
// tracker, peers with their health, cache; the control socket is
// owner-only, found by --cache-dir or --control.
func TestOpsStatus(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	ctl := filepath.Join(t.TempDir(), "run", "bob.sock")
	b := c.mount("bob", "--control", ctl)
	a.sees(b)
	b.sees(a)
	writeFile(t, filepath.Join(b.export, "hello.txt"), []byte("hello\n"))
	mustRun(t, "", "cat", filepath.Join(a.dir(b), "hello.txt"))

	// The pinger measures bob's round trip within a few seconds.
	var r report
	waitFor(t, 15*time.Second, "bob up with a round-trip time in alice's status", func() bool {
		r = status(t, "--cache-dir", a.cache)
		return len(r.Peers) == 1 && r.Peers[0].State == "up" && r.Peers[0].RTT > 0
	})
	if r.Name != "alice" || r.Mountpoint != a.mnt || r.PID != a.p.cmd.Process.Pid {
		t.Errorf("name/mountpoint/pid = %q %q %d", r.Name, r.Mountpoint, r.PID)
	}
	if r.Tracker.Addr != c.tracker || !r.Tracker.Registered {
		t.Errorf("tracker = %+v, want %s registered", r.Tracker, c.tracker)
	}
	p := r.Peers[0]
	if p.Name != "bob" || p.Addr != b.listen || time.Since(p.LastSeen) > 10*time.Second || p.BytesIn < 6 {
		t.Errorf("peer = %+v", p)
	}
	if r.Cache.MaxBytes != 1024<<20 || r.Cache.Misses < 1 || r.Pending.Files != 0 {
		t.Errorf("cache/pending = %+v %+v", r.Cache, r.Pending)
	}

	// The text report says the same for people.
	out := mustRun(t, "", bin, "status", "--cache-dir", a.cache)
	for _, want := range []string{"peerfs alice", "tracker:", c.tracker + ", registered", "sync:", "uploads:", "nothing pending", "cache:", "bob", b.listen, " up "} {
		if !strings.Contains(out, want) {
			t.Errorf("status text lacks %q:\n%s", want, out)
		}
	}

	// The socket is for its owner only; --control finds one elsewhere.
	for path, mode := range map[string]os.FileMode{filepath.Join(a.cache, "control.sock"): 0o600, a.cache: 0o700, ctl: 0o600, filepath.Dir(ctl): 0o700} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, mode)
		}
	}
	if r := status(t, "--control", ctl); r.Name != "bob" {
		t.Errorf("status --control %s: name %q", ctl, r.Name)
	}
	// No daemon: exit code 1 and a hint.
	cmd := exec.Command(bin, "status", "--control", filepath.Join(t.TempDir(), "none.sock"))
	outb, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(outb), "no mount daemon answers") {
		t.Errorf("status without a daemon: %v %s", err, outb)
	}
}

// TestOpsControlFolder: .peerfs/status shows the report inside the
// mount; writing to .peerfs/sync runs a SYNC round.
func TestOpsControlFolder(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	names, err := readDirNames(a.mnt)
	if err != nil || !strings.Contains(strings.Join(names, " "), ".peerfs") {
		t.Fatalf("ls -A of the root = %q, %v", names, err)
	}
	if got := mustRun(t, "", "ls", filepath.Join(a.mnt, ".peerfs")); got != "status\nsync\nunsent\n" {
		t.Fatalf("ls .peerfs = %q", got)
	}
	text := mustRun(t, "", "cat", filepath.Join(a.mnt, ".peerfs", "status"))
	for _, want := range []string{"peerfs alice", c.tracker + ", registered", "bob", b.listen} {
		if !strings.Contains(text, want) {
			t.Errorf(".peerfs/status lacks %q:\n%s", want, text)
		}
	}
	// Read-only: no writes, no new files.
	if out, err := runCmd(t, 10*time.Second, "", "sh", "-c", "echo x > "+filepath.Join(a.mnt, ".peerfs", "status")); err == nil {
		t.Errorf("writing .peerfs/status succeeded: %s", out)
	}
	if out, err := runCmd(t, 10*time.Second, "", "touch", filepath.Join(a.mnt, ".peerfs", "new")); err == nil {
		t.Errorf("creating a file in .peerfs succeeded: %s", out)
	}

	started := strings.Count(c.tproc.log.String(), "sync: round started")
	if out, err := opsHelper(t, "sync", filepath.Join(a.mnt, ".peerfs", "sync")); err != nil {
		t.Fatalf("write to .peerfs/sync: %v %s", err, out)
	}
	// The write returned after alice's turn; the round is on the record.
	// (The tracker's log reaches this process through a pipe: poll.)
	waitFor(t, 5*time.Second, "the tracker to log the round", func() bool {
		return strings.Count(c.tproc.log.String(), "sync: round started") == started+1
	})
	waitFor(t, 10*time.Second, "the round to end", func() bool {
		return strings.Contains(c.tproc.log.String(), "sync: round ended")
	})
	// And the shell's way works too.
	mustRun(t, "", "sh", "-c", "echo > "+filepath.Join(a.mnt, ".peerfs", "sync"))
	waitFor(t, 5*time.Second, "the tracker to log the second round", func() bool {
		return strings.Count(c.tproc.log.String(), "sync: round started") == started+2
	})
}

// TestOpsFileState: user.peerfs.state is pending while the peer cannot
// take the upload, stored once it has, and names the SYNC round after an
// fsync; peerfs status counts the pending upload meanwhile.
func TestOpsFileState(t *testing.T) {
	c := newCluster(t, "--peer-timeout", "30s")
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	target := filepath.Join(a.dir(b), "doc.txt")
	// While bob is stopped, every lookup in his folder fails (EIO: its
	// attributes cannot be fetched), so the state is read through a
	// descriptor opened before.
	loop := startXattrLoop(t, a.dir(b))
	defer syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	err := writeThenStopWith(t, target, []byte("precious\n"), b, func() {
		if got := loop.do(t, "open doc.txt"); got != "opened" {
			t.Fatalf("open: %s", got)
		}
		if got := loop.do(t, "get doc.txt"); got != "pending" {
			t.Errorf("state while written and open = %q, want pending", got)
		}
	})
	if err == nil {
		t.Fatal("close() reported success though bob is stopped")
	}
	if got := loop.do(t, "get doc.txt"); got != "pending" {
		t.Fatalf("state while bob is stopped = %q, want pending", got)
	}
	loop.do(t, "close doc.txt")
	r := status(t, "--cache-dir", a.cache)
	if r.Pending.Files != 1 || r.Pending.Bytes != int64(len("precious\n")) || r.Pending.OldestAge <= 0 {
		t.Errorf("status pending = %+v, want 1 file of 9 bytes", r.Pending)
	}
	syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	waitFor(t, 20*time.Second, "the retry to store doc.txt", func() bool {
		return strings.HasPrefix(fileState(t, target), "stored")
	})
	sameFile(t, filepath.Join(b.export, "doc.txt"), []byte("precious\n"))

	// fsync: stored at once, and covered by the round once it ends.
	synced := filepath.Join(a.dir(b), "synced.txt")
	cmd := exec.Command(os.Args[0], "-test.run=^$", synced)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=write-fsync", "PEERFS_E2E_DATA=fsynced\n")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "fsynced\n" {
		t.Fatalf("writer: %q %v", line, err)
	}
	if got := fileState(t, synced); !strings.HasPrefix(got, "stored") {
		t.Fatalf("state right after fsync = %q, want stored", got)
	}
	var got string
	waitFor(t, 10*time.Second, "the round number in the state", func() bool {
		got = fileState(t, synced)
		return strings.HasPrefix(got, "stored round=")
	})
	round, err := strconv.Atoi(strings.TrimPrefix(got, "stored round="))
	if err != nil || round < 1 {
		t.Fatalf("state %q", got)
	}
	if !strings.Contains(c.tproc.log.String(), fmt.Sprintf(`"round":%d`, round)) {
		t.Errorf("the tracker never logged round %d", round)
	}
}

// writeThenStopWith is writeThenStop (mount_test.go) with before run
// after the write and before the peer is stopped.
func writeThenStopWith(t *testing.T, path string, data []byte, stopped *node, before func()) error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=write-wait-close", "PEERFS_E2E_DATA="+string(data))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "written\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer: %q %v %s", line, err, stderr.String())
	}
	before()
	if err := syscall.Kill(stopped.p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	err = cmd.Wait()
	if err != nil && !strings.Contains(stderr.String(), "input/output error") {
		t.Fatalf("close failed, but not with EIO: %s", stderr.String())
	}
	return err
}

// scrape returns the sum of the samples of metric whose labels include
// every label in labels (name="value" pairs), and the whole page.
func scrape(t *testing.T, addr, metric string, labels ...string) (float64, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum := 0.0
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(metric) + `(\{[^}]*\})? (\S+)$`)
	for _, line := range strings.Split(string(body), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if v, err := strconv.ParseFloat(m[2], 64); ok && err == nil {
			sum += v
		}
	}
	return sum, string(body)
}

// TestOpsMetrics: --metrics-listen serves Prometheus metrics that move
// with the mount's work.
func TestOpsMetrics(t *testing.T) {
	c := newCluster(t)
	maddr := freeAddr(t)
	a := c.mount("alice", "--metrics-listen", maddr)
	b := c.mount("bob")
	a.sees(b)
	writeFile(t, filepath.Join(b.export, "x.txt"), []byte("x\n"))

	// The kernel lists a peer folder with READDIRPLUS (fusefs/fusedev).
	before, page := scrape(t, maddr, "peerfs_fuse_ops_total", `op="readdirplus"`)
	for _, want := range []string{"peerfs_build_info", "go_goroutines", "process_resident_memory_bytes", "peerfs_cache_max_bytes", "peerfs_tracker_registered 1"} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	mustRun(t, "", "ls", "-l", a.dir(b))
	mustRun(t, "", "cat", filepath.Join(a.dir(b), "x.txt"))
	after, page := scrape(t, maddr, "peerfs_fuse_ops_total", `op="readdirplus"`)
	if after <= before {
		t.Errorf("readdirplus count %v -> %v after an ls", before, after)
	}
	if n, _ := scrape(t, maddr, "peerfs_fuse_op_duration_seconds_count", `op="lookup"`); n < 1 {
		t.Errorf("no lookup latency observed")
	}
	if n, _ := scrape(t, maddr, "peerfs_peer_requests_total", `peer="bob"`, `verb="LIST"`, `result="ok"`); n < 1 {
		t.Errorf("no LIST to bob counted:\n%s", grepLines(page, "peerfs_peer_requests_total"))
	}
	if n, _ := scrape(t, maddr, "peerfs_peer_bytes_total", `peer="bob"`, `direction="in"`); n < 2 {
		t.Errorf("bytes from bob = %v", n)
	}
	if n, _ := scrape(t, maddr, "peerfs_cache_misses_total"); n < 1 {
		t.Errorf("cache misses = %v", n)
	}
	waitFor(t, 15*time.Second, "bob counted up", func() bool {
		n, _ := scrape(t, maddr, "peerfs_peers", `state="up"`)
		return n == 1
	})
	// An answer is counted by its result (errors: see metrics_test.go).
	runCmd(t, 10*time.Second, "", "cat", filepath.Join(a.dir(b), "missing"))
	if n, _ := scrape(t, maddr, "peerfs_fuse_ops_total", `op="lookup"`, `result="ENOENT"`); n < 1 {
		t.Errorf("the lookup's ENOENT not counted")
	}
	// A SYNC round is counted and timed once it ends.
	if out, err := opsHelper(t, "sync", filepath.Join(a.mnt, ".peerfs", "sync")); err != nil {
		t.Fatalf("sync: %v %s", err, out)
	}
	waitFor(t, 10*time.Second, "a SYNC round counted", func() bool {
		n, _ := scrape(t, maddr, "peerfs_sync_rounds_total")
		d, _ := scrape(t, maddr, "peerfs_sync_round_duration_seconds_count")
		turns, _ := scrape(t, maddr, "peerfs_sync_turns_total", `result="ok"`)
		return n >= 1 && d >= 1 && turns >= 1
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestOpsTrackerMetrics: the tracker serves process metrics too.
func TestOpsTrackerMetrics(t *testing.T) {
	maddr := freeAddr(t)
	start(t, "tracker", nil, nil, "tracker", "--listen", freeAddr(t), "--metrics-listen", maddr)
	waitFor(t, 10*time.Second, "tracker metrics", func() bool {
		resp, err := http.Get("http://" + maddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `peerfs_build_info{component="tracker"`)
	})
}

// TestOpsMountHelper: mount -t fuse.peerfs through /sbin/mount.fuse.peerfs
// (a symlink to the binary) starts the daemon in the background; umount
// stops it.
func TestOpsMountHelper(t *testing.T) {
	needFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("skipping: mount(8) with a helper needs root")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("skipping: no mount(8)")
	}
	const helperPath = "/sbin/mount.fuse.peerfs"
	if _, err := os.Lstat(helperPath); err == nil {
		t.Skipf("skipping: %s exists already (not replacing an installed helper)", helperPath)
	}
	if err := os.Symlink(bin, helperPath); err != nil {
		t.Skipf("skipping: cannot install %s: %v", helperPath, err)
	}
	t.Cleanup(func() { os.Remove(helperPath) })

	c := newCluster(t)
	a := c.mount("alice")
	base := t.TempDir()
	export, mnt, cache := filepath.Join(base, "export"), filepath.Join(base, "mnt"), filepath.Join(base, "cache")
	for _, d := range []string{export, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte(clusterSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(base, "log", "carol.log")
	t.Cleanup(func() {
		ensureUnmounted(t, mnt)
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("---- carol's log ----\n%s", b)
		}
	})
	opts := strings.Join([]string{"rw", "nodev", "nosuid", "_netdev", "export=" + export, "name=carol", "secret_file=" + secret,
		"cache_dir=" + cache, "listen=" + freeAddr(t), "timeout=2s", "log_level=debug", "log_file=" + logFile}, ",")
	cmd := exec.Command("mount", "-t", "fuse.peerfs", c.tracker, mnt, "-o", opts)
	cmd.Env = append(os.Environ(), "PEERFS_SECRET=") // the secret comes from secret_file
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount -t fuse.peerfs: %v\n%s", err, out)
	}
	if !isMounted(mnt) {
		t.Fatal("mount returned before the mountpoint was mounted")
	}
	r := status(t, "--cache-dir", cache)
	if r.PID == 0 || r.Name != "carol" {
		t.Fatalf("status of the helper's daemon: %+v", r)
	}
	t.Cleanup(func() { syscall.Kill(r.PID, syscall.SIGKILL) })
	waitFor(t, 15*time.Second, "carol's mount listing alice", func() bool {
		names, err := readDirNames(mnt)
		return err == nil && strings.Contains(strings.Join(names, " "), "alice")
	})
	writeFile(t, filepath.Join(mnt, "alice", "from-carol.txt"), []byte("via mount(8)\n"))
	sameFile(t, filepath.Join(a.export, "from-carol.txt"), []byte("via mount(8)\n"))

	// A bad option fails the mount with the daemon's complaint.
	mnt2 := filepath.Join(base, "mnt2")
	os.Mkdir(mnt2, 0o755)
	out, err := exec.Command("mount", "-t", "fuse.peerfs", c.tracker, mnt2, "-o", "export="+export+",no_such_option=1,log_file="+logFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown option no_such_option=1") {
		t.Errorf("mount with a bad option: %v %s", err, out)
	}
	ensureUnmounted(t, mnt2)

	// umount stops the daemon (it drains and exits on an outside unmount).
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	waitFor(t, 15*time.Second, "the daemon to exit after umount", func() bool {
		return syscall.Kill(r.PID, 0) != nil
	})

	// The same through an fstab line (mount -T: another fstab file).
	fstab := filepath.Join(base, "fstab")
	writeFile(t, fstab, []byte(fmt.Sprintf("# peerfs\n%s %s fuse.peerfs %s,noauto,nofail 0 0\n", c.tracker, mnt, opts)))
	if out, err := exec.Command("mount", "-T", fstab, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount through fstab: %v\n%s", err, out)
	}
	r = status(t, "--cache-dir", cache)
	t.Cleanup(func() { syscall.Kill(r.PID, syscall.SIGKILL) })
	sameFile(t, filepath.Join(mnt, "alice", "from-carol.txt"), []byte("via mount(8)\n"))
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	waitFor(t, 15*time.Second, "the fstab daemon to exit after umount", func() bool {
		return syscall.Kill(r.PID, 0) != nil
	})
}

// TestOpsSigtermDrains: SIGTERM with an upload pending delivers it before
// the daemon exits, with exit code 0.
func TestOpsSigtermDrains(t *testing.T) {
	c := newCluster(t, "--peer-timeout", "30s")
	a := c.mount("alice", "--drain-timeout", "20s")
	b := c.mount("bob")
	a.sees(b)
	data := randBytes(1 << 20)
	defer syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	if err := writeThenStop(t, filepath.Join(a.dir(b), "late.bin"), data, b); err == nil {
		t.Fatal("close() reported success though bob is stopped")
	}
	if _, err := os.Stat(filepath.Join(b.export, "late.bin")); err == nil {
		t.Fatal("late.bin reached bob while he was stopped")
	}
	syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	if err := a.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("alice did not exit within 30s of SIGTERM")
	}
	if a.p.err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", a.p.err)
	}
	sameFile(t, filepath.Join(b.export, "late.bin"), data)
	if isMounted(a.mnt) {
		t.Error("still mounted after SIGTERM")
	}
	if !strings.Contains(a.p.log.String(), "stopping: uploading pending files") {
		t.Error("no drain on SIGTERM in the log")
	}
	// The control socket is gone with the daemon.
	if _, err := os.Stat(filepath.Join(a.cache, "control.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestOpsRestartAfterKill: after kill -9, the next daemon cleans the
// stale mount and the stale control socket, and answers status.
func TestOpsRestartAfterKill(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	status(t, "--cache-dir", a.cache)
	a.p.kill()
	if _, err := os.Stat(filepath.Join(a.cache, "control.sock")); err != nil {
		t.Fatalf("kill -9 should leave the socket file: %v", err)
	}
	a.start()
	a.sees(b)
	if r := status(t, "--cache-dir", a.cache); r.PID != a.p.cmd.Process.Pid {
		t.Errorf("status answered by pid %d, want the new daemon %d", r.PID, a.p.cmd.Process.Pid)
	}
}

// TestOpsExitCodes: the exit codes README.md documents.
func TestOpsExitCodes(t *testing.T) {
	code := func(args ...string) int {
		err := exec.Command(bin, args...).Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--version"}, 0},
		{[]string{"version"}, 0},
		{[]string{"mount", "--help"}, 0},
		{[]string{"mount", "--no-such-flag"}, 2},
		{[]string{"nonsense"}, 2},
		{[]string{"status", "--control", filepath.Join(t.TempDir(), "none.sock")}, 1},
		{[]string{"mount-helper", "only-one-arg"}, 2},
	} {
		if got := code(tc.args...); got != tc.want {
			t.Errorf("peerfs %v: exit %d, want %d", tc.args, got, tc.want)
		}
	}
}
