package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
)

// opCounter counts the FUSE requests a mount answers, by operation.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *opCounter) observe(op string, _ time.Duration, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[op]++
}

func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// A listing carries each entry's attributes (READDIRPLUS): `ls -l` of a
// directory the kernel has never seen costs no LOOKUP per entry, and the
// lookups it counts are the kernel's: after the kernel forgets them all
// (drop_caches), every name is found again and nothing is stale.
func TestMountListingCarriesAttributes(t *testing.T) {
	const n = 300
	base := t.TempDir()
	store := newLocalStore(base, "alice")
	dir := filepath.Join(base, "alice", "many")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), make([]byte, i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ops := &opCounter{n: map[string]int{}}
	mnt, _ := mountStore(t, store, Options{Observe: ops.observe, AttrTimeout: time.Minute, EntryTimeout: time.Minute})
	mustSh(t, mnt, "stat alice/many > /dev/null")
	ops.take()

	out := mustSh(t, mnt, "ls -l alice/many")
	got := ops.take()
	if got["readdirplus"] == 0 {
		t.Fatalf("ls -l made no READDIRPLUS (requests: %v)", got)
	}
	if got["lookup"] != 0 || got["getattr"] != 0 {
		t.Errorf("ls -l of %d entries made %d lookups and %d getattrs, want none (requests: %v)", n, got["lookup"], got["getattr"], got)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != n+1 { // "total" first
		t.Fatalf("ls -l printed %d lines, want %d", len(lines), n+1)
	}
	if f := strings.Fields(lines[1+123]); len(f) < 9 || f[4] != "123" || f[8] != "f123" || f[0] != "-rw-r--r--" {
		t.Errorf("ls -l line for f123: %q", lines[1+123])
	}

	// The sizes are the files' (a stat of each needs no request either).
	mustSh(t, mnt, `for f in alice/many/f0*; do stat -c %s "$f"; done > /dev/null`)
	if got := ops.take(); got["lookup"] != 0 {
		t.Errorf("stat after ls -l made %d lookups", got["lookup"])
	}

	// The kernel forgets the nodes READDIRPLUS gave it as it forgets
	// looked-up ones; found again, they are the same files.
	dropKernelCaches(t)
	if out := mustSh(t, mnt, "cat alice/many/f005 | wc -c; stat -c %s alice/many/f299"); strings.Fields(out)[0] != "5" || strings.Fields(out)[1] != "299" {
		t.Errorf("after the kernel forgot the nodes: %q", out)
	}
	mustSh(t, mnt, "ls -l alice/many > /dev/null; rm -r alice/many")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("rm -r after ls -l: the directory is still there (%v)", err)
	}
}

// dropKernelCaches makes the kernel forget the dentries and inodes it can
// (FORGETs to the mount); skipped where that is not allowed.
func dropKernelCaches(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Skipf("cannot drop the kernel's caches: %v", err)
	}
}

// A large write reaches the mount in requests of up to 1 MiB (FUSE_MAX_PAGES),
// not 128 KiB: dd of 8 MiB in 1 MiB blocks is at most a dozen WRITEs.
func TestMountLargeWrites(t *testing.T) {
	base := t.TempDir()
	store := newLocalStore(base, "alice")
	ops := &opCounter{n: map[string]int{}}
	mnt, _ := mountStore(t, store, Options{Observe: ops.observe})
	mustSh(t, mnt, "stat alice > /dev/null")
	ops.take()
	mustSh(t, mnt, "dd if=/dev/zero of=alice/big bs=1M count=8 status=none")
	if got := ops.take(); got["write"] > 12 || got["write"] == 0 {
		t.Errorf("8 MiB in 1 MiB blocks took %d WRITEs, want 8 to 12 (requests: %v)", got["write"], got)
	}
	if fi, err := os.Stat(filepath.Join(base, "alice", "big")); err != nil || fi.Size() != 8<<20 {
		t.Errorf("the file: %v, %v", fi, err)
	}
	awaitReleased(t, store)
}

// awaitReleased waits until the kernel has released every file of store:
// a RELEASE is sent after close(2) has returned, and an unmount aborts
// what is still queued, so a test ending right after a close would leave
// a handle open.
func awaitReleased(t *testing.T, store *localStore) {
	t.Helper()
	testutil.Eventually(t, "the kernel's RELEASEs", func() bool { return store.open() == 0 })
}

// Overwriting a file (a shell's `>`, cp over it) is one OPEN with
// O_TRUNC (FUSE_ATOMIC_O_TRUNC), not a SETATTR of size 0 before the
// OPEN: the file is truncated by the open, and its old content is gone.
func TestMountOpenTruncates(t *testing.T) {
	base := t.TempDir()
	store := newLocalStore(base, "alice")
	ops := &opCounter{n: map[string]int{}}
	mnt, _ := mountStore(t, store, Options{Observe: ops.observe})
	mustSh(t, mnt, "printf 'old and longer content\\n' > alice/f")
	ops.take()
	mustSh(t, mnt, "printf 'new\\n' > alice/f")
	if got := ops.take(); got["setattr"] != 0 || got["open"] != 1 {
		t.Errorf("overwriting took %d SETATTRs and %d OPENs, want 0 and 1 (requests: %v)", got["setattr"], got["open"], got)
	}
	if out := mustSh(t, mnt, "cat alice/f"); out != "new\n" {
		t.Errorf("after the overwrite: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(base, "alice", "f")); err != nil || string(b) != "new\n" {
		t.Errorf("the store's file: %q, %v", b, err)
	}
	// Read-only with O_TRUNC truncates too, as on a local disk.
	mustSh(t, mnt, `perl -e 'use Fcntl; sysopen(F, "alice/f", O_RDONLY|O_TRUNC) or die "$!"; close F'`)
	if out := mustSh(t, mnt, "stat -c %s alice/f"); out != "0\n" {
		t.Errorf("size after open(O_RDONLY|O_TRUNC): %q", out)
	}
	awaitReleased(t, store)
}
