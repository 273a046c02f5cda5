package fusefs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestSetidReviewKillBeforeOTrunc: TestMountKillBeforeTruncate for an
// open with O_TRUNC by another user (": > f"; the mount has atomic
// O_TRUNC, so no SETATTR size= comes): file.Open calls Store.Open, which
// truncates, and clears the bits only after (killOnWrite). A Store upload
// that keeps the bits (remote's setid PUT) can carry the truncated content
// (remote TestSetidReviewOTruncRidesSetidPut).
func TestSetidReviewKillBeforeOTrunc(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: another user's truncation")
	}
	base := t.TempDir()
	store := newLocalStore(base, "alice")
	mnt, _ := mountStore(t, store, Options{AllowOther: true})
	for _, d := range []string{filepath.Dir(mnt), filepath.Dir(base), base, filepath.Join(base, "alice")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shared := filepath.Join(mnt, "alice", "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(shared, "f")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(f, 0o4777); err != nil {
		t.Fatal(err)
	}
	store.takeCalls()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", ": > f")
	cmd.Dir = shared
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4321, Gid: 4321}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("open(O_TRUNC) as 4321: %v: %s", err, out)
	}
	calls := store.takeCalls()
	chmod, truncate := slices.Index(calls, "chmod"), slices.Index(calls, "truncate")
	if chmod < 0 || truncate < 0 || chmod > truncate {
		t.Errorf("another user's open(O_TRUNC) of a setuid file: the Store saw %v, want the chmod that clears the bits before the truncation", calls)
	}
}
