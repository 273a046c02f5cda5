package fusefs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// appendingStore appends a handle opened O_APPEND at the size its copy
// has, whatever offset the kernel gives, as remote's Store does
// (remote/handles.go WriteAt); a WriteAt takes a while, as a write to a
// cache file does.
type appendingStore struct {
	*localStore

	mu     sync.Mutex
	append map[uint64]bool
}

func (s *appendingStore) Open(ctx context.Context, peer, path string, flags int, mode os.FileMode) (uint64, os.FileInfo, error) {
	fh, info, err := s.localStore.Open(ctx, peer, path, flags, mode)
	if err == nil && flags&os.O_APPEND != 0 {
		s.mu.Lock()
		s.append[fh] = true
		s.mu.Unlock()
	}
	return fh, info, err
}

func (s *appendingStore) WriteAt(ctx context.Context, fh uint64, p []byte, off int64) (int, error) {
	s.mu.Lock()
	appending := s.append[fh]
	s.mu.Unlock()
	if appending {
		info, err := s.StatHandle(ctx, fh)
		if err != nil {
			return 0, err
		}
		off = info.Size()
	}
	time.Sleep(5 * time.Millisecond)
	return s.localStore.WriteAt(ctx, fh, p, off)
}

// One write(2) reaches the Store as WRITEs of at most max_write (1 MiB)
// each; the kernel must send them one after the other (no
// FUSE_ASYNC_DIO): a Store that appends at its own size, as remote's does
// for O_APPEND, then writes an O_DIRECT|O_APPEND write of 4 MiB in order.
// With FUSE_ASYNC_DIO (which bazil's Mount asked for too, with pieces of
// 128 KiB) the WRITEs come at once and are appended over each other.
func TestReviewDirectAppendInOrder(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE not available: %v", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed")
	}
	base := t.TempDir()
	store := &appendingStore{localStore: newLocalStore(base, "alice"), append: map[uint64]bool{}}
	writeFile(t, filepath.Join(base, "alice", "log"), "")
	mnt := t.TempDir()
	m, err := Mount(mnt, store, Options{Logger: testLogger(t)})
	if err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	primePoll(t, store.localStore, mnt)

	// Four MiB, each of its own byte.
	var want []byte
	for i := range 4 {
		want = append(want, bytes.Repeat([]byte{'a' + byte(i)}, 1<<20)...)
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, want, 0o644); err != nil {
		t.Fatal(err)
	}
	// Not from inside the mount: a child's chdir there needs this process.
	mustSh(t, t.TempDir(), "dd if="+src+" of="+filepath.Join(mnt, "alice", "log")+
		" bs=4M count=1 iflag=fullblock oflag=direct,append conv=notrunc status=none")
	got, err := os.ReadFile(filepath.Join(base, "alice", "log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		var firsts []byte
		for off := 0; off < len(got); off += 1 << 20 {
			firsts = append(firsts, got[off])
		}
		t.Errorf("after one O_DIRECT|O_APPEND write of 4 MiB: %d bytes, the MiBs begin %q; want 4 MiB, abcd", len(got), firsts)
	}
}
