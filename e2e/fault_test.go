package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
)

// The harness runs mounts with --timeout 2s; an operation on an
// unreachable peer must fail within that, and we allow three times as much.
const faultDeadline = 6 * time.Second

// logRecord is the part of a JSON log line the fault tests look at.
type logRecord struct {
	Message string `json:"message"`
	Peer    string `json:"peer"`
	Round   uint64 `json:"round"`
}

// logRecords parses p's JSON log.
func (p *proc) logRecords() []logRecord {
	var recs []logRecord
	for _, line := range strings.Split(p.log.String(), "\n") {
		var rec logRecord
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Message != "" {
			recs = append(recs, rec)
		}
	}
	return recs
}

// joined reports whether the tracker p logged every named peer joining.
func (p *proc) joined(names ...string) bool {
	recs := p.logRecords()
	for _, n := range names {
		if !slices.ContainsFunc(recs, func(r logRecord) bool { return r.Message == "peer joined" && r.Peer == n }) {
			return false
		}
	}
	return true
}

// childOp is a program run against a mount by a test, watched so that a
// process stuck in the kernel is seen rather than waited for.
type childOp struct {
	what  string
	cmd   *exec.Cmd
	out   syncBuffer
	begin time.Time
	done  chan struct{}
	took  time.Duration
	err   error
}

func startOp(t *testing.T, what string, name string, args ...string) *childOp {
	t.Helper()
	op := &childOp{what: what, done: make(chan struct{})}
	op.cmd = exec.Command(name, args...)
	op.cmd.Stdout, op.cmd.Stderr = &op.out, &op.out
	op.begin = time.Now()
	if err := op.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	go func() {
		op.err = op.cmd.Wait()
		op.took = time.Since(op.begin)
		close(op.done)
	}()
	t.Cleanup(func() {
		select {
		case <-op.done:
		default:
			_ = op.cmd.Process.Kill()
			select {
			case <-op.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not die on SIGKILL", what, op.cmd.Process.Pid)
			}
		}
	})
	return op
}

// childrenInDState lists this test process's children that are in
// uninterruptible sleep (D), as "pid comm".
func childrenInDState() []string {
	var stuck []string
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == me && f[0] == "D" {
			stuck = append(stuck, fmt.Sprintf("%d %s", pid, s[strings.IndexByte(s, '(')+1:i]))
		}
	}
	return stuck
}

// expectEIOWithin waits for ops, each of which must fail with EIO within
// faultDeadline of its start. One still running then is in the kernel:
// its process state (D = uninterruptible) is noted and it gets until
// faultDeadline+20s to fail; what fails late is returned, one line each.
func expectEIOWithin(t *testing.T, ops ...*childOp) (late []string) {
	t.Helper()
	// The state of each operation at its deadline.
	state := make([]string, len(ops))
	for i, op := range ops {
		select {
		case <-op.done:
		case <-time.After(time.Until(op.begin.Add(faultDeadline))):
			state[i] = testutil.ProcState(op.cmd.Process.Pid)
		}
	}
	for i, op := range ops {
		select {
		case <-op.done:
		case <-time.After(time.Until(op.begin.Add(faultDeadline + 20*time.Second))):
			t.Errorf("%s still running %v after it started (process state %q)", op.what, faultDeadline+20*time.Second, testutil.ProcState(op.cmd.Process.Pid))
			continue
		}
		if op.took > faultDeadline {
			late = append(late, fmt.Sprintf("%s failed after %v (process state %q at the %v deadline)", op.what, op.took.Round(time.Millisecond), state[i], faultDeadline))
		}
		out := op.out.String()
		switch {
		case op.err == nil:
			t.Errorf("%s succeeded on an unreachable peer: %q", op.what, out)
		case !strings.Contains(out, "Input/output error"):
			t.Errorf("%s: %v %q, want EIO", op.what, op.err, out)
		default:
			t.Logf("%s: EIO after %v", op.what, op.took.Round(time.Millisecond))
		}
	}
	if stuck := childrenInDState(); len(stuck) > 0 {
		t.Errorf("child processes in D state after every operation ended: %v", stuck)
	}
	return late
}

// TestFaultPeerKilledMidPut: bob is killed (SIGKILL) while alice's cp of a
// 64 MiB file into bob's folder uploads it. cp reports the failed close;
// bob's export keeps the old content; the interrupted upload's temporary
// file is removed when bob restarts; alice delivers the new content once
// bob is back at the same address.
func TestFaultPeerKilledMidPut(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	old := []byte("the old content\n")
	writeFile(t, filepath.Join(b.export, "big.bin"), old)
	data := randBytes(64 << 20)
	src := filepath.Join(t.TempDir(), "big.bin")
	writeFile(t, src, data)

	cp := startOp(t, "cp into bob's folder", "cp", src, filepath.Join(a.dir(b), "big.bin"))
	// Kill bob once the upload is under way: its temporary file is growing.
	var stale string
	waitFor(t, 30*time.Second, "bob receiving the upload", func() bool {
		for _, name := range tempFiles(t, b.export) {
			if fi, err := os.Stat(name); err == nil && fi.Size() > 0 {
				stale = name
				return true
			}
		}
		select {
		case <-cp.done:
			t.Fatalf("cp ended before bob was seen receiving the upload: %v %q", cp.err, cp.out.String())
		default:
		}
		return false
	})
	b.p.kill()
	select {
	case <-cp.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("cp still running 30s after bob was killed (state %q)", testutil.ProcState(cp.cmd.Process.Pid))
	}
	if cp.err == nil || !strings.Contains(cp.out.String(), "Input/output error") {
		t.Errorf("cp to a peer killed mid-upload: %v %q, want a failure with EIO", cp.err, cp.out.String())
	}
	sameFile(t, filepath.Join(b.export, "big.bin"), old)

	ensureUnmounted(t, b.mnt)
	b.start()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the interrupted upload's temporary file %s survived bob's restart: %v", stale, err)
	}
	waitFor(t, 30*time.Second, "alice delivering the new content to the restarted bob", func() bool {
		fi, err := os.Stat(filepath.Join(b.export, "big.bin"))
		if err != nil || fi.Size() != int64(len(data)) {
			return false
		}
		got, err := os.ReadFile(filepath.Join(b.export, "big.bin"))
		return err == nil && bytes.Equal(got, data)
	})
	noTemps(t, b.export)
}

// TestFaultStalledPeer: with bob stopped (SIGSTOP: sockets open, nothing
// answers), ls, stat, cat and cp in bob's folder all fail with EIO within
// the timeout, no process is stuck in D state, and all of them work again
// after SIGCONT.
func TestFaultStalledPeer(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	for _, n := range []string{"f1", "f2"} {
		writeFile(t, filepath.Join(b.export, n), []byte("content of "+n+"\n"))
	}
	src := filepath.Join(t.TempDir(), "in.txt")
	writeFile(t, src, []byte("copied in\n"))
	bob := a.dir(b)

	stopProc(t, b.p)
	// Nothing in bob's folder was looked at before: no cached answer. The
	// four run at once, as in a busy shell or file manager.
	late := expectEIOWithin(t,
		startOp(t, "ls", "ls", "-l", bob),
		startOp(t, "stat", "stat", filepath.Join(bob, "f1")),
		startOp(t, "cat", "cat", filepath.Join(bob, "f2")),
		startOp(t, "cp in", "cp", src, filepath.Join(bob, "in.txt")),
	)
	if len(late) > 0 {
		// Once a known bug: waiters for a LIST in flight retried with
		// their own when it failed, so the N-th lookup failed after N
		// timeouts. remote.(*Store).listing now shares the failure.
		t.Errorf("concurrent operations in the folder of a stalled peer (SIGSTOP) fail one --timeout after another, "+
			"not all within the timeout: %s", strings.Join(late, ", "))
	}

	contProc(t, b.p)
	waitFor(t, 20*time.Second, "bob's folder working again", func() bool {
		_, err := runCmd(t, 10*time.Second, "", "ls", "-l", bob)
		return err == nil
	})
	mustRun(t, "", "stat", filepath.Join(bob, "f1"))
	if got := mustRun(t, "", "cat", filepath.Join(bob, "f2")); got != "content of f2\n" {
		t.Errorf("cat after SIGCONT: %q", got)
	}
	mustRun(t, "", "cp", src, filepath.Join(bob, "in.txt"))
	sameFile(t, filepath.Join(b.export, "in.txt"), []byte("copied in\n"))
}

// stopProc SIGSTOPs p; it is continued at the end of the test in any case.
func stopProc(t *testing.T, p *proc) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT) })
}

func contProc(t *testing.T, p *proc) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// fsyncWrite writes data to path and fsyncs it before closing, from a
// child process (dd conv=fsync).
func fsyncWrite(t *testing.T, path string, data []byte) (time.Duration, error) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "fsync-src")
	writeFile(t, src, data)
	begin := time.Now()
	out, err := runCmd(t, 30*time.Second, "", "dd", "if="+src, "of="+path, "conv=fsync", "status=none")
	if err != nil {
		err = fmt.Errorf("%w: %s", err, out)
	}
	return time.Since(begin), err
}

// TestFaultTrackerRestart: the tracker is killed; the mounts keep reading
// and writing in peer folders meanwhile; it restarts at the same address;
// the peers register again by themselves and the next SYNC round (an
// fsync from a mount) completes.
func TestFaultTrackerRestart(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	b.sees(a)

	c.tproc.kill()
	writeFile(t, filepath.Join(a.dir(b), "while-down.txt"), []byte("written without a tracker\n"))
	sameFile(t, filepath.Join(b.export, "while-down.txt"), []byte("written without a tracker\n"))
	writeFile(t, filepath.Join(a.export, "from-alice.txt"), []byte("alice's\n"))
	sameFile(t, filepath.Join(b.dir(a), "from-alice.txt"), []byte("alice's\n"))
	if names, err := readDirNames(a.mnt); err != nil || !slices.Contains(names, "bob") {
		t.Errorf("alice's mount root without a tracker: %v %v", names, err)
	}

	tr := start(t, "tracker (restarted)", nil, nil, "tracker", "--listen", c.tracker, "--log-level", "debug")
	c.tproc = tr
	waitFor(t, 20*time.Second, "alice and bob registering with the restarted tracker", func() bool {
		return tr.joined("alice", "bob")
	})
	a.sees(b)
	b.sees(a)
	if took, err := fsyncWrite(t, filepath.Join(a.dir(b), "after.txt"), []byte("fsynced after the restart\n")); err != nil {
		t.Fatalf("fsync after the tracker restart (%v): %v", took, err)
	}
	sameFile(t, filepath.Join(b.export, "after.txt"), []byte("fsynced after the restart\n"))
	waitFor(t, 10*time.Second, "the SYNC round ending on the restarted tracker", func() bool {
		return slices.ContainsFunc(tr.logRecords(), func(r logRecord) bool { return r.Message == "sync: round ended" })
	})
}

// writeFsyncClose writes data to path from a child process (the
// write-fsync helper), and times fsync(2) and the close(2) that follows
// apart.
func writeFsyncClose(t *testing.T, path string, data []byte) (fsyncTook, closeTook time.Duration, err error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=write-fsync", "PEERFS_E2E_DATA="+string(data))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		line := make([]byte, len("fsynced\n"))
		_, err := io.ReadFull(stdout, line)
		if err == nil && string(line) != "fsynced\n" {
			err = fmt.Errorf("helper said %q", line)
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		err = errors.New("fsync still running after 30s")
	}
	fsyncTook = time.Since(begin)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fsyncTook, 0, fmt.Errorf("%w: %s", err, stderr.String())
	}
	begin = time.Now()
	stdin.Close()
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		err = fmt.Errorf("close still running after 60s: %w", <-done)
	}
	closeTook = time.Since(begin)
	if err != nil {
		err = fmt.Errorf("close: %w: %s", err, stderr.String())
	}
	return fsyncTook, closeTook, err
}

// TestFaultLeaseExpired: bob is stopped (SIGSTOP), then alice's fsync
// starts a round in which bob's turn comes; bob never finishes it, the
// tracker revokes the token when the lease (3s) runs out and the round
// ends. Alice's fsync returns after her own turn, before the lease.
func TestFaultLeaseExpired(t *testing.T) {
	const lease = 3 * time.Second
	c := newCluster(t, "--lease", lease.String())
	a := c.mount("alice")
	b := c.mount("bob")
	cl := c.mount("carol")
	a.sees(b, cl)
	writeFile(t, filepath.Join(b.export, "b.txt"), []byte("bob's\n"))

	stopProc(t, b.p)
	fsyncTook, closeTook, err := writeFsyncClose(t, filepath.Join(a.dir(cl), "synced.txt"), []byte("fsynced while bob sleeps\n"))
	if err != nil {
		t.Fatalf("alice's fsync with bob stopped: %v", err)
	}
	if fsyncTook >= lease {
		t.Errorf("alice's fsync took %v, want well under the %v lease (her turn is first)", fsyncTook, lease)
	}
	if closeTook >= lease {
		// Once a known bug: upload waited for the round to end before
		// looking whether the file had changes at all.
		t.Errorf("close(2) right after a successful fsync(2), with nothing left to upload, took %v: "+
			"it waited for the SYNC round to end", closeTook.Round(time.Millisecond))
	}
	sameFile(t, filepath.Join(cl.export, "synced.txt"), []byte("fsynced while bob sleeps\n"))

	var expired logRecord
	waitFor(t, lease+10*time.Second, "bob's lease expiring and the round ending", func() bool {
		recs := c.tproc.logRecords()
		i := slices.IndexFunc(recs, func(r logRecord) bool { return r.Message == "sync: lease expired, token revoked" })
		if i < 0 {
			return false
		}
		expired = recs[i]
		return slices.ContainsFunc(recs[i:], func(r logRecord) bool { return r.Message == "sync: round ended" && r.Round == recs[i].Round })
	})
	if expired.Peer != "bob" {
		t.Errorf("the lease expired for %q, want bob", expired.Peer)
	}

	contProc(t, b.p)
	waitFor(t, 20*time.Second, "bob's folder working after SIGCONT", func() bool {
		got, err := os.ReadFile(filepath.Join(a.dir(b), "b.txt"))
		return err == nil && string(got) == "bob's\n"
	})
	if took, err := fsyncWrite(t, filepath.Join(a.dir(b), "later.txt"), []byte("next round\n")); err != nil {
		t.Errorf("fsync after bob woke up (%v): %v", took, err)
	}
}

// netnsLink is a network namespace joined to the host by a veth pair.
type netnsLink struct {
	ns, hostDev, nsDev string
	hostIP, nsIP       string
	subnet             string // hostIP and nsIP's /30
}

// newNetnsLink creates a namespace and a veth pair with a /30 of
// 10.213.0.0/16 and removes both at the end of the test; it skips the test
// where namespaces cannot be made.
func newNetnsLink(t *testing.T) *netnsLink {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is missing")
	}
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(r[:])
	l := &netnsLink{ns: "peerfs-e2e-" + id, hostDev: "pfh" + id, nsDev: "pfn" + id}
	if out, err := exec.Command("ip", "netns", "add", l.ns).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create a network namespace (needs root and netns support): %v %s", err, out)
	}
	t.Cleanup(func() {
		if l.hostIP != "" {
			_ = exec.Command("ip", "route", "del", "blackhole", l.subnet).Run()
		}
		_ = exec.Command("ip", "link", "del", l.hostDev).Run()
		if out, err := exec.Command("ip", "netns", "del", l.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", l.ns, err, out)
		}
	})
	// A /30 nobody on this host uses (concurrent runs pick others).
	for range 20 {
		sub := fmt.Sprintf("10.213.%d.%d", r[0], r[1]&^3)
		if out, _ := exec.Command("ip", "-o", "addr", "show", "to", sub+"/30").Output(); len(bytes.TrimSpace(out)) == 0 {
			base := net.ParseIP(sub).To4()
			l.hostIP = net.IPv4(base[0], base[1], base[2], base[3]+1).String()
			l.nsIP = net.IPv4(base[0], base[1], base[2], base[3]+2).String()
			l.subnet = sub + "/30"
			break
		}
		_, _ = rand.Read(r[:2])
	}
	if l.hostIP == "" {
		t.Fatal("no free /30 in 10.213.0.0/16")
	}
	for _, args := range [][]string{
		// Whatever state the link is in, packets for the namespace never
		// take the default route out of this machine.
		{"route", "add", "blackhole", l.subnet, "metric", "4242"},
		{"link", "add", l.hostDev, "type", "veth", "peer", "name", l.nsDev, "netns", l.ns},
		{"addr", "add", l.hostIP + "/30", "dev", l.hostDev},
		{"link", "set", l.hostDev, "up"},
		{"-n", l.ns, "addr", "add", l.nsIP + "/30", "dev", l.nsDev},
		{"-n", l.ns, "link", "set", l.nsDev, "up"},
		{"-n", l.ns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	return l
}

// setLink brings the namespace's end of the veth pair up or down: for the
// host the link loses its carrier, packets to the namespace go nowhere
// (its route stays, marked linkdown), as when a cable is pulled at the
// far end.
func (l *netnsLink) setLink(t *testing.T, state string) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", l.ns, "link", "set", l.nsDev, state).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set %s %s: %v %s", l.ns, l.nsDev, state, err, out)
	}
}

// freeAddrOn returns ip:port with a port free right now on ip.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startIn is start for a peerfs process run inside network namespace ns
// (ip netns exec replaces itself with peerfs, so signals reach peerfs).
func startIn(t *testing.T, ns, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	p.cmd.Env = append(os.Environ(), "PEERFS_LOG_FORMAT=json", "PEERFS_SECRET="+clusterSecret)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = daemonAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("---- log of %s ----\n%s", name, p.log.String())
		}
	})
	return p
}

// TestNetnsLinkDown: bob runs in his own network namespace behind a veth
// pair; the link goes down in the middle of alice's read of a large file
// of bob's: the read fails with EIO within the timeout, alice's mount
// stays usable (carol, on the host, still answers), and bob's folder works
// again once the link is back up.
func TestNetnsLinkDown(t *testing.T) {
	needFUSE(t)
	l := newNetnsLink(t)
	taddr := freeAddrOn(t, l.hostIP)
	tr := start(t, "tracker", nil, nil, "tracker", "--listen", taddr, "--log-level", "debug")
	c := &cluster{t: t, tracker: taddr, tproc: tr}
	waitListening(t, taddr)

	bobExport, carolExport := t.TempDir(), t.TempDir()
	big := randBytes(48 << 20)
	writeFile(t, filepath.Join(bobExport, "big.bin"), big)
	writeFile(t, filepath.Join(bobExport, "small.txt"), []byte("bob across the link\n"))
	writeFile(t, filepath.Join(carolExport, "ok.txt"), []byte("carol on the host\n"))
	startIn(t, l.ns, "bob", "peer", "--shell", "off", "--name", "bob", "--export", bobExport,
		"--listen", net.JoinHostPort(l.nsIP, "7071"), "--tracker", taddr, "--timeout", "2s", "--log-level", "debug")
	start(t, "carol", nil, nil, "peer", "--shell", "off", "--name", "carol", "--export", carolExport,
		"--listen", freeAddrOn(t, l.hostIP), "--tracker", taddr, "--log-level", "debug")
	a := c.mount("alice")
	bob, carol := &node{name: "bob"}, &node{name: "carol"}
	a.sees(bob, carol)
	sameFile(t, filepath.Join(a.dir(bob), "small.txt"), []byte("bob across the link\n"))

	// Read the first MiB, report, wait for the go-ahead, read the rest.
	reader := exec.Command("sh", "-c", `exec 3<"$1" || exit 1
dd bs=1M count=1 <&3 >/dev/null 2>&1 || exit 1
echo started
read -r _
cat <&3 >/dev/null`, "sh", filepath.Join(a.dir(bob), "big.bin"))
	stdin, err := reader.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := reader.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	reader.Stderr = &stderr
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan error, 1)
	t.Cleanup(func() {
		_ = reader.Process.Kill()
		<-readerDone
	})
	started := make(chan error, 1)
	go func() {
		line := make([]byte, len("started\n"))
		_, err := io.ReadFull(stdout, line)
		if err == nil && string(line) != "started\n" {
			err = fmt.Errorf("reader said %q", line)
		}
		started <- err
		readerDone <- reader.Wait()
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("reader: %v %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reader did not read its first MiB within 20s")
	}

	l.setLink(t, "down")
	begin := time.Now()
	stdin.Close()
	select {
	case err := <-readerDone:
		took := time.Since(begin)
		readerDone <- err // for the cleanup
		if err == nil {
			t.Errorf("reading bob's file across a downed link succeeded")
		} else if !strings.Contains(stderr.String(), "Input/output error") {
			t.Errorf("reading across a downed link: %v %q, want EIO", err, stderr.String())
		} else if took > faultDeadline {
			// Once a known bug, before fail-fast: each FUSE read the
			// kernel sends for the same pages waited out its own timeout.
			t.Errorf("a read(2) across a link that went down fails with EIO only after %v (--timeout 2s)",
				took.Round(time.Millisecond))
		} else {
			t.Logf("read across a downed link: EIO after %v", took.Round(time.Millisecond))
		}
	case <-time.After(faultDeadline + 20*time.Second):
		t.Errorf("reader still blocked %v after the link went down (state %q)", faultDeadline+20*time.Second, testutil.ProcState(reader.Process.Pid))
	}
	if stuck := childrenInDState(); len(stuck) > 0 {
		t.Errorf("child processes in D state: %v", stuck)
	}

	// Alice's mount stays usable.
	if _, err := readDirNames(a.mnt); err != nil {
		t.Errorf("alice's mount root with bob's link down: %v", err)
	}
	sameFile(t, filepath.Join(a.dir(carol), "ok.txt"), []byte("carol on the host\n"))

	l.setLink(t, "up")
	waitFor(t, 30*time.Second, "bob's folder working after the link came back", func() bool {
		got, err := os.ReadFile(filepath.Join(a.dir(bob), "small.txt"))
		return err == nil && string(got) == "bob across the link\n"
	})
	mustRun(t, "", "cmp", "-s", filepath.Join(a.dir(bob), "big.bin"), filepath.Join(bobExport, "big.bin"))
}

// TestFaultPeerKilledAfterChangeInPlace: bob is killed (SIGKILL) right
// after each of alice's appends to a 16 MiB file in his folder. The
// change went into bob's file in place (ext4 shares no blocks), and bob
// ends it (removes its undo record) just after his PUT DONE
// (export/put_undo.go): killed in between or after, his next start must
// keep every change alice was told is stored, leave no undo record, and
// alice reads the file back whole.
func TestFaultPeerKilledAfterChangeInPlace(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	want := randBytes(16 << 20)
	writeFile(t, filepath.Join(b.export, "big.log"), want)
	src := filepath.Join(t.TempDir(), "add")
	path := filepath.Join(a.dir(b), "big.log")
	for i := range 3 {
		add := randBytes(4096)
		writeFile(t, src, add)
		mustRun(t, "", "dd", "if="+src, "of="+path, "bs=4096", "oflag=append", "conv=notrunc", "status=none")
		b.p.kill()
		want = append(want, add...)
		ensureUnmounted(t, b.mnt)
		b.start()
		sameFile(t, filepath.Join(b.export, "big.log"), want)
		if left, _ := filepath.Glob(filepath.Join(b.export, ".peerfs-tmp-*")); len(left) != 0 {
			t.Errorf("append %d: left in bob's export after his restart: %v", i, left)
		}
	}
	a.sees(b)
	waitFor(t, 30*time.Second, "alice reading the file with every append", func() bool {
		got, err := os.ReadFile(path)
		return err == nil && bytes.Equal(got, want)
	})
}
