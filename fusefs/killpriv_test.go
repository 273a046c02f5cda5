package fusefs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killCase is one way of changing a file that clears its setuid and
// setgid bits on a local filesystem: a command run in the file's
// directory as uid (65534, who has no CAP_FSETID, or 0, who has it),
// and the modes before and after; group, if not 0, is the file's group
// (which needs a mount that keeps owners).
type killCase struct {
	name       string
	uid        uint32
	cmd        string
	from, want uint32
	group      int
}

var killCases = []killCase{
	{"write by another user clears setuid", 65534, "printf x >> f", 0o4777, 0o777, 0},
	{"write by another user clears setgid of a group-executable file", 65534, "printf x >> f", 0o2777, 0o777, 0},
	{"write by another user outside the group clears setgid without group execute", 65534, "printf x >> f", 0o2767, 0o767, 0},
	{"write by a member of the group keeps setgid without group execute", 65534, "printf x >> f", 0o2767, 0o2767, 65534},
	{"write by another user clears both", 65534, "printf x >> f", 0o6777, 0o777, 0},
	{"write by root keeps them", 0, "printf x >> f", 0o6777, 0o6777, 0},
	{"truncation by another user", 65534, "truncate -s 0 f", 0o4777, 0o777, 0},
	{"truncation of an unlinked file leaves the new file at its name alone", 65534,
		"umask 022; exec 3<>f; rm f; echo new > f; truncate -s 0 /proc/self/fd/3", 0o4777, 0o644, 0},
	{"open with O_TRUNC by another user", 65534, ": > f", 0o4777, 0o777, 0},
	{"chown by root", 0, "chown 0:0 f", 0o6755, 0o755, 0},
	{"chown of neither owner nor group by root (-1, -1)", 0, "chown : f", 0o6755, 0o755, 0},
	{"chmod by root after a write keeps what it asks", 0, "printf x >> f && chmod 6755 f", 0o4777, 0o6755, 0},
}

// runKillCase makes dir/f with c.from's mode, runs c's command and
// returns the file's mode after it, as stat sees it.
func runKillCase(t *testing.T, dir string, c killCase) uint32 {
	t.Helper()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c.group != 0 {
		if err := os.Chown(f, -1, c.group); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Chmod(f, c.from); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", c.cmd)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.uid}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s as %d: %v: %s", c.cmd, c.uid, err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(f, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

// With FUSE_HANDLE_KILLPRIV_V2 the mount, not the kernel, clears setuid
// and setgid bits on writes, truncations and chowns: a file changes mode
// through the mount as it does on a local disk, and stat right after the
// change shows it.
func TestMountKillSuidgid(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: another user's writes")
	}
	local := t.TempDir()
	if err := os.Chmod(local, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(local), 0o755); err != nil { // t.TempDir's: 0700
		t.Fatal(err)
	}
	// A Store that keeps owners (the chown reaches the peer's disk,
	// which clears the bits itself) and one that does not (the mount
	// shows its user as every file's owner, and clears them).
	for _, owners := range []bool{false, true} {
		t.Run(fmt.Sprintf("owners=%v", owners), func(t *testing.T) {
			base := t.TempDir()
			store := newLocalStore(base, "alice")
			store.owners.Store(owners)
			mnt, _ := mountStore(t, store, Options{AllowOther: true})
			if err := os.Chmod(filepath.Dir(mnt), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{filepath.Dir(base), base, filepath.Join(base, "alice")} {
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
			for _, c := range killCases {
				t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
					if c.group != 0 && !owners {
						t.Skip("every file's group is the mounting user's here")
					}
					onDisk := runKillCase(t, local, c)
					if onDisk != c.want {
						t.Fatalf("on a local disk: mode %04o, want %04o (the case is wrong)", onDisk, c.want)
					}
					if got := runKillCase(t, shared, c); got != onDisk {
						t.Errorf("through the mount: mode %04o, a local disk's %04o", got, onDisk)
					}
				})
			}
		})
	}
}

// A truncation by another user, through truncate(2) (SETATTR size=) or
// open(O_TRUNC) (": > f": the mount has atomic O_TRUNC), clears the setuid
// bits before it truncates (the Store's Chmod first): a Store whose
// upload keeps the bits makes the Chmod wait for it, so the truncated
// content never goes in one. (file.Open truncated first until a review
// of bb24729.)
func TestMountKillBeforeTruncate(t *testing.T) {
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
	for _, c := range []struct {
		cmd  string
		size int64
	}{{"truncate -s 2 f", 2}, {": > f", 0}} {
		f := filepath.Join(shared, "f")
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(f, 0o4777); err != nil {
			t.Fatal(err)
		}
		store.takeCalls()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "sh", "-c", c.cmd)
		cmd.Dir = shared
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4321, Gid: 4321}}
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s as 4321: %v: %s", c.cmd, err, out)
		}
		calls := store.takeCalls()
		chmod, truncate := slices.Index(calls, "chmod"), slices.Index(calls, "truncate")
		if chmod < 0 || truncate < 0 || chmod > truncate {
			t.Errorf("%s by another user, of a setuid file: the Store saw %v, want the chmod that clears the bits before the truncation", c.cmd, calls)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(f, &st); err != nil || st.Mode&0o6000 != 0 || st.Size != c.size {
			t.Errorf("after %s: %v, mode %04o size %d, want no setuid bit, %d bytes", c.cmd, err, st.Mode&0o7777, st.Size, c.size)
		}
	}
}

// Writes to a file ask for security.capability once, before the first
// (FUSE_HANDLE_KILLPRIV_V2: the kernel then marks the file as having
// none), not before each: a GETXATTR round trip per write is gone.
func TestMountOneCapabilityQueryPerFile(t *testing.T) {
	store := newLocalStore(t.TempDir(), "alice")
	ops := &opCounter{n: map[string]int{}}
	mnt, _ := mountStore(t, store, Options{Observe: ops.observe})
	p := filepath.Join(mnt, "alice", "many-writes")
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	ops.take()
	const writes = 50
	for i := range writes {
		if _, err := fmt.Fprintf(fh, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	// A request is counted once answered: the last may come after the
	// write(2) returned.
	n := map[string]int{}
	for deadline := time.Now().Add(5 * time.Second); n["write"] < writes && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		for op, k := range ops.take() {
			n[op] += k
		}
	}
	if n["write"] != writes {
		t.Fatalf("%d writes reached the mount as %d WRITEs", writes, n["write"])
	}
	if n["getxattr"] > 1 {
		t.Errorf("%d writes to one file cost %d GETXATTRs (security.capability), want at most 1", writes, n["getxattr"])
	}
	got, err := os.ReadFile(p)
	if err != nil || !strings.HasSuffix(string(got), fmt.Sprintf("line %d\n", writes-1)) {
		t.Errorf("read back: %v, %d bytes", err, len(got))
	}
}
