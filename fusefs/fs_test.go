package fusefs

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Real mounts, driven by ordinary programs run as child processes, so
// that no syscall against the mount is made by the process serving it.

// mountStore mounts store in a temp dir and unmounts it at cleanup. It
// skips when FUSE is unavailable.
func mountStore(t *testing.T, store *localStore, opts Options) (string, *Mounted) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE not available: %v", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed (apt-get install fuse3)")
	}
	mnt := t.TempDir()
	opts.Logger = testLogger(t)
	m, err := Mount(mnt, store, opts)
	if err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	primePoll(t, store, mnt)
	t.Cleanup(func() {
		select {
		case <-m.Done():
			// The test unmounted and checked the result itself.
			_ = m.Close()
		default:
			if err := m.Close(); err != nil {
				t.Errorf("unmount: %v", err)
				_ = Unmount(mnt)
			}
		}
		if mounted(mnt) {
			t.Errorf("%s still mounted", mnt)
			_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
		if n := store.open(); n != 0 {
			t.Errorf("%d store handles left open", n)
		}
	})
	return mnt, m
}

// primePoll makes the kernel learn, before the test opens anything on
// mount mnt, that the file system answers no POLL. The first epoll_ctl
// on a FUSE file asks the server (FUSE_POLL), and package os registers
// every file it opens with the runtime's poller, whose epoll_ctl is a raw
// system call: the goroutine keeps its P while the kernel waits for the
// answer. Here the server is this very process, so a garbage collection
// starting then waits for that P while the P's goroutine waits for the
// server, which cannot run: the test hangs (it did, in about one run of
// TestMountStickyDir in fifty). An epoll_ctl made here through package
// syscall, which lets the P go, takes the first POLL; the server answers
// ENOSYS, and the kernel asks no more for this mount.
func primePoll(t *testing.T, store *localStore, mnt string) {
	t.Helper()
	peers, err := os.ReadDir(store.base)
	if err != nil || len(peers) == 0 {
		return // no peer folder: nothing opens a file here
	}
	const name = ".poll-prime"
	back := filepath.Join(store.base, peers[0].Name(), name)
	if err := os.WriteFile(back, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(back)
	fd, err := syscall.Open(filepath.Join(mnt, peers[0].Name(), name), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("priming the mount's POLL: %v", err)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	// Not syscall.EpollCtl: it is a raw system call too.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
	_, _, e := syscall.Syscall6(syscall.SYS_EPOLL_CTL, uintptr(ep), syscall.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	syscall.Close(ep)
	syscall.Close(fd)
	if e != 0 {
		t.Fatalf("priming the mount's POLL: %v", e)
	}
	// The kernel sends the file's RELEASE after close returns, in the
	// background: a test that unmounts at once (TestUnmountExternally)
	// could lose it, and find the handle left open.
	deadline := time.Now().Add(10 * time.Second)
	for store.open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the priming file's handle was never released")
		}
		time.Sleep(time.Millisecond)
	}
}

func mounted(dir string) bool {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// sh runs script with sh -c in dir and returns its combined output.
//
// The shell changes into dir itself: the child os/exec starts must not
// (cmd.Dir). It is made with vfork, and its chdir into a mount this test
// process serves waits for an answer from this process; if the garbage
// collector stops the world meanwhile, it waits for the vforking thread,
// which waits for the child, which waits for the server: the test hangs.
func sh(t *testing.T, dir, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `cd -- "$PEERFS_TEST_DIR" || exit 125`+"\n"+script)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC", "PEERFS_TEST_DIR="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustSh(t *testing.T, dir, script string) string {
	t.Helper()
	out, err := sh(t, dir, script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// eventually retries script until its output is want.
func eventually(t *testing.T, dir, script, want string) {
	t.Helper()
	var out string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, _ = sh(t, dir, script)
		if out == want {
			return
		}
	}
	t.Errorf("%s: got %q, want %q", script, out, want)
}

// behaviours is the suite of ordinary file operations run both in a local
// directory (the reference) and in a peer folder of the mount.
const behaviours = `
set -e
mkdir d
echo hello > d/a
printf 'line1\nline2\n' > d/b
cp d/a d/c
cat d/c
mv d/c d/e
ls d
sed -i s/line1/LINE1/ d/b
cat d/b
echo over > d/x
mv d/x d/a
cat d/a
ls d
mkdir -p d/sub/deeper
echo deep > d/sub/deeper/f
mv d/sub d/sub2
cat d/sub2/deeper/f
stat -c '%n %s %F %a' d/a d/b d/sub2 d/sub2/deeper/f
chmod 600 d/b
stat -c '%n %a' d/b
truncate -s 3 d/b
cat d/b; echo
echo appended >> d/a
cat d/a
touch -d '2020-01-02 03:04:05' d/a
stat -c '%n %Y' d/a
seq 1 200000 > big
cp big big2
cmp big big2
wc -c big2
dd if=big of=part bs=1000 skip=7 count=3 2>/dev/null
md5sum part
rm d/e
rmdir d/sub2/deeper 2>&1 || echo rmdir failed
mkdir d 2>&1 || echo mkdir failed
cat d/missing 2>&1 || echo cat failed
rm -r d/sub2
ls -l d | tail -n +2 | awk '{print $1, $5, $9}'
rm big2 part
mv big moved
ls
`

func TestMountBehavesLikeLocalDir(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice")
	mnt, _ := mountStore(t, store, Options{})
	want := mustSh(t, t.TempDir(), behaviours)
	got := mustSh(t, filepath.Join(mnt, "alice"), behaviours)
	if got != want {
		t.Errorf("mount output differs from a local directory\n--- mount:\n%s\n--- local:\n%s", got, want)
	}
	// And the peer's export holds the result.
	if out := mustSh(t, filepath.Join(store.base, "alice"), "cat d/a; ls"); out != "over\nappended\nd\nmoved\n" {
		t.Errorf("backing directory: %q", out)
	}
}

func TestMountRoot(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice", "bob")
	writeFile(t, filepath.Join(store.base, "bob", "f.txt"), "from bob\n")
	mnt, _ := mountStore(t, store, Options{})
	if out := mustSh(t, mnt, "ls; ls -ld alice | cut -c1"); out != "alice\nbob\nd\n" {
		t.Errorf("root listing: %q", out)
	}
	if out := mustSh(t, mnt, "cat bob/f.txt"); out != "from bob\n" {
		t.Errorf("cat: %q", out)
	}
	for _, script := range []string{"mkdir carol", "touch x", "rmdir alice", "mv alice carol"} {
		if out, err := sh(t, mnt, script); err == nil || !strings.Contains(out, "ermission denied") {
			t.Errorf("%s in root: %v %q, want permission denied", script, err, out)
		}
	}
	// Statfs at a peer folder and at the root.
	mustSh(t, mnt, "stat -f alice >/dev/null && stat -f . >/dev/null && df . >/dev/null")
	// Across peers mv copies (the kernel gets EXDEV), and so does ln.
	mustSh(t, mnt, "mv bob/f.txt alice/f.txt")
	if out := mustSh(t, store.base, "ls alice bob"); out != "alice:\nf.txt\n\nbob:\n" {
		t.Errorf("after mv across peers: %q", out)
	}
	if out, err := sh(t, mnt, "ln alice/f.txt bob/hard"); err == nil || !strings.Contains(out, "cross-device") {
		t.Errorf("ln across peers: %v %q, want EXDEV", err, out)
	}
	if out, err := sh(t, mnt, "ln -s x sym"); err == nil || !strings.Contains(out, "ermission denied") {
		t.Errorf("ln -s in the root: %v %q, want permission denied", err, out)
	}
}

func TestMountFlushErrorReachesClose(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice")
	mnt, _ := mountStore(t, store, Options{})
	dir := filepath.Join(mnt, "alice")
	mustSh(t, dir, "echo fine > ok")
	store.failFlush.Store(true)
	defer store.failFlush.Store(false)
	for _, script := range []string{"cp ok copy", "/bin/echo x > out"} {
		out, err := sh(t, dir, script)
		if err == nil || !strings.Contains(out, "Input/output error") {
			t.Errorf("%s with failing Flush: %v %q, want an I/O error from close", script, err, out)
		}
	}
}

func TestMountWatchInvalidates(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice", "bob")
	writeFile(t, filepath.Join(store.base, "alice", "f"), "one\n")
	writeFile(t, filepath.Join(store.base, "alice", "sub", "g"), "g1\n")
	// Long timeouts: without invalidation the kernel would keep answering
	// from its caches.
	mnt, _ := mountStore(t, store, Options{AttrTimeout: time.Hour, EntryTimeout: time.Hour})
	// Only stat: reading a file makes the kernel refresh its attributes.
	mustSh(t, mnt, "ls; stat bob alice/f alice/sub/g")

	if err := os.RemoveAll(filepath.Join(store.base, "bob")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(store.base, "carol"), 0o755); err != nil {
		t.Fatal(err)
	}
	store.notify("", "")
	eventually(t, mnt, "ls; stat -c %n bob 2>/dev/null; stat -c %n carol", "alice\ncarol\ncarol\n")

	writeFile(t, filepath.Join(store.base, "alice", "f"), "two, longer\n")
	store.notify("alice", "")
	eventually(t, mnt, "stat -c %s alice/f", "12\n")

	writeFile(t, filepath.Join(store.base, "alice", "sub", "g"), "g2 changed\n")
	if err := os.Remove(filepath.Join(store.base, "alice", "f")); err != nil {
		t.Fatal(err)
	}
	store.notify("alice", "sub")
	eventually(t, mnt, "stat -c %s alice/sub/g", "11\n")
	store.notify("alice", "")
	eventually(t, mnt, "stat alice/f 2>/dev/null || echo gone", "gone\n")
}

func TestMountUnmountBusy(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice")
	mnt, m := mountStore(t, store, Options{UnmountTimeout: 200 * time.Millisecond})
	// A process whose working directory is in the mount keeps it busy
	// (the shell changes into it, not the child os/exec starts: see sh).
	cmd := exec.Command("sh", "-c", `cd -- "$1" && exec sleep 30`, "sh", filepath.Join(mnt, "alice"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	err := m.Close()
	t.Logf("close of a busy mount: %v", err)
	if mounted(mnt) {
		t.Error("busy mount not lazily detached")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after the last user left")
	}
	if err := m.Err(); err != nil {
		t.Errorf("Err after unmount: %v", err)
	}
}

func TestUnmountExternally(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice")
	mnt, m := mountStore(t, store, Options{})
	if err := Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after an external unmount")
	}
	if err := Unmount(mnt); err == nil {
		t.Error("Unmount of a directory that is not mounted succeeded")
	}
}

// A request that waits (a lookup stalled in the Store, as on a slow peer)
// holds up no other: requests the server answers on the goroutine that
// read them hand reading over to another goroutine when they take long.
func TestMountStalledLookupBlocksNoOther(t *testing.T) {
	store := newLocalStore(t.TempDir(), "bob")
	release := make(chan struct{})
	store.stall.Store(&release)
	mnt, _ := mountStore(t, store, Options{})
	mustSh(t, mnt, "echo hello > bob/f")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stalled := make(chan error, 1)
	go func() {
		stalled <- exec.CommandContext(ctx, "stat", filepath.Join(mnt, "bob", "slow")).Run()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for store.stalled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the lookup of bob/slow never reached the store")
		}
		time.Sleep(time.Millisecond)
	}

	began := time.Now()
	if got := mustSh(t, mnt, "cat bob/f; ls bob; stat -c %s bob/f"); got != "hello\nf\n6\n" {
		t.Errorf("while a lookup waits: got %q", got)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("other requests took %v while a lookup waited", d)
	}
	select {
	case err := <-stalled:
		t.Fatalf("the stalled stat returned before the store let it: %v", err)
	default:
	}
	close(release)
	if err := <-stalled; err == nil {
		t.Error("stat of a missing name succeeded")
	}
}

// A fatal signal to a program waiting in a stalled lookup (SIGINT to
// stat, which does not catch it) ends it: the kernel's INTERRUPT cancels
// the request's context, as the caller is being killed, instead of
// waiting for the peer. (A signal it survives does not: see
// TestMetadataNotInterrupted in e2e.)
func TestMountInterruptStalledLookup(t *testing.T) {
	store := newLocalStore(t.TempDir(), "bob")
	release := make(chan struct{})
	defer close(release)
	store.stall.Store(&release)
	mnt, _ := mountStore(t, store, Options{})
	cmd := exec.Command("stat", filepath.Join(mnt, "bob", "slow"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for store.stalled.Load() == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the lookup of bob/slow never reached the store")
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err == nil {
			t.Error("interrupted stat succeeded")
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Error("SIGINT did not end a lookup stalled in the store")
	}
}

// A sticky directory shows its sticky bit (which bazil's answers could
// not carry; fusedev's encoding does), and the kernel enforces it: another user cannot delete a file of
// root's in it.
func TestMountStickyDir(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice")
	mnt, _ := mountStore(t, store, Options{AllowOther: true})
	if err := os.Chmod(filepath.Dir(mnt), 0o755); err != nil { // t.TempDir's: 0700
		t.Fatal(err)
	}
	d := filepath.Join(mnt, "alice", "tmp")
	if err := os.Mkdir(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(d, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o1777 {
		t.Errorf("mode of a sticky directory: %04o, want 1777", st.Mode&0o7777)
	}
	if err := os.WriteFile(filepath.Join(d, "f"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		return // the rest needs another user
	}
	cmd := exec.Command("rm", "-f", filepath.Join(d, "f"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("another user removed root's file from a sticky directory")
	} else if !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("rm as another user: %v: %s, want EPERM (the sticky bit)", err, out)
	}
	if _, err := os.Stat(filepath.Join(d, "f")); err != nil {
		t.Errorf("after the refused rm: %v", err)
	}
}

// A file still open when the connection ends (aborted after a lazy
// unmount here; the kernel also drops the RELEASEs it queued when an
// unmount comes right after a close) gets no RELEASE: the server lets
// the Store go of it itself, or the Store's handle leaks.
func TestMountAbortReleasesOpenFiles(t *testing.T) {
	needFusectl(t)
	store := newLocalStore(t.TempDir(), "alice")
	writeFile(t, filepath.Join(store.base, "alice", "f"), "held open\n")
	mnt, m := mountStore(t, store, Options{UnmountTimeout: 200 * time.Millisecond})
	cmd := exec.Command("sh", "-c", `exec 3< "$1" && echo ready && exec sleep 30`, "sh", filepath.Join(mnt, "alice", "f"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("the holder did not open the file: %q, %v", line, err)
	}
	if n := store.open(); n != 1 {
		t.Fatalf("%d store handles open while the holder runs, want 1", n)
	}
	if err := m.Close(); err != nil {
		t.Skipf("cannot abort a busy mount here: %v", err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after the abort")
	}
	if n := store.open(); n != 0 {
		t.Errorf("%d store handles open after the connection ended, want 0", n)
	}
}

// needFusectl makes sure fusectl, through which a busy mount is aborted,
// is mounted (systemd mounts it; a container often does not), and
// unmounts it at cleanup if it mounted it. It skips when it cannot.
func needFusectl(t *testing.T) {
	t.Helper()
	const dir = "/sys/fs/fuse/connections"
	data, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(data), " "+dir+" fusectl ") {
		return
	}
	if err := syscall.Mount("fusectl", dir, "fusectl", 0, ""); err != nil {
		t.Skipf("fusectl is not mounted and cannot be: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount fusectl: %v", err)
		}
	})
}
