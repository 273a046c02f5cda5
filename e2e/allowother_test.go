package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAllowOther: a mount started with --allow-other lets the machine's
// other users in, the kernel checking their permissions as on a local
// disk (default_permissions); a mount without it lets none in.
func TestAllowOther(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	a := c.mount("alice", "--allow-other")
	b := c.mount("bob")
	a.sees(b)
	reachable(t, a.mnt, b.mnt)
	if !strings.Contains(mountOptions(t, a.mnt), "allow_other") {
		t.Errorf("alice's mount options: %s, want allow_other", mountOptions(t, a.mnt))
	}

	dir := a.dir(b)
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "f"), []byte("for everyone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "shared"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "shared"), 0o777); err != nil { // past the umask
		t.Fatal(err)
	}

	for _, tc := range []struct {
		script string
		want   string
	}{
		{"cat d/f", "for everyone\n"},
		{"ls d", "f\n"},
		{"touch d/g 2>&1 || echo refused", "refused"},
		{"ls private 2>&1 || echo refused", "refused"},
		{"echo mine > shared/n && cat shared/n && stat -c %u shared/n", "mine\n0\n"}, // shown as the mounting user
	} {
		out, err := asNobody(t, dir, tc.script)
		if err != nil {
			t.Errorf("as nobody, %s: %v\n%s", tc.script, err, out)
			continue
		}
		if !strings.Contains(out, tc.want) || (tc.want == "refused" && !strings.Contains(out, "Permission denied")) {
			t.Errorf("as nobody, %s: %q, want %q (Permission denied where refused)", tc.script, out, tc.want)
		}
	}

	// Without --allow-other not even a listing.
	if out, err := asNobody(t, b.mnt, "ls"); err == nil {
		t.Errorf("as nobody, ls in a mount without --allow-other: %q", out)
	}
}

// reachable lets other users reach each path: t.TempDir's directories
// are 0700, so the directories above each (up to the temp dir) become
// 0755.
func reachable(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		for d := filepath.Dir(p); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// asNobody runs script with sh in dir as user and group 65534.
func asNobody(t *testing.T, dir, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "cd \"$0\" && "+script, dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		defer close(done)
		out, err = cmd.CombinedOutput()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("as nobody, %s: no end after 30s", script)
	}
	return string(out), err
}

// mountOptions returns the options of the mount at mnt in /proc/mounts.
func mountOptions(t *testing.T, mnt string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == mnt {
			return f[3]
		}
	}
	t.Fatalf("%s is not in /proc/mounts", mnt)
	return ""
}

// TestAllowOtherClearsSetuid: another user's write, truncation or open
// with O_TRUNC clears a file's setuid bit (and its setgid bit where its
// group may execute it), and a chown clears both, in a trusting peer's
// folder as on a local disk, on the peer's disk too. The mount does it
// (FUSE_HANDLE_KILLPRIV_V2), not the kernel. Root's write keeps them,
// and the file its owner, there too: the mount's PUT says setid, and the
// peer gives the new content the owner and bits of the file it replaces
// (keep-owner) before it takes the name, with no chown after (which
// would clear them).
func TestAllowOtherClearsSetuid(t *testing.T) {
	needRoot(t)
	c := newCluster(t)
	a := c.mount("alice", "--allow-other")
	carol := c.mount("carol", trustedPeer(t)...)
	a.sees(carol)
	local := t.TempDir()
	reachable(t, local, a.mnt)
	dir := filepath.Join(a.dir(carol), "shared")
	for _, d := range []string{local, dir} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		nobody     bool // run as nobody, else as root
		script     string
		from, want uint32
	}{
		{"write by another user", true, "printf x >> f", 0o4777, 0o777},
		{"write by another user, group-executable setgid", true, "printf x >> f", 0o6777, 0o777},
		{"truncation by another user", true, "truncate -s 1 f", 0o4777, 0o777},
		{"open with O_TRUNC by another user", true, ": > f", 0o4777, 0o777},
		{"chown by root", false, "chown 0:0 f", 0o6755, 0o755},
		{"write by root", false, "printf x >> f", 0o6755, 0o6755},
		{"write by root to another user's program", false, "chown nobody f && chmod 4755 f && printf x >> f", 0o644, 0o4755},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			modes := map[string]uint32{}
			uids := map[string]uint32{}
			for _, d := range []string{local, dir} {
				f := filepath.Join(d, "f")
				if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Chmod(f, tc.from); err != nil {
					t.Fatal(err)
				}
				var out string
				var err error
				if tc.nobody {
					out, err = asNobody(t, d, tc.script)
				} else {
					out, err = runCmd(t, 30*time.Second, d, "sh", "-c", tc.script)
				}
				if err != nil {
					t.Fatalf("%s in %s: %v: %s", tc.script, d, err, out)
				}
				var st syscall.Stat_t
				if err := syscall.Stat(f, &st); err != nil {
					t.Fatal(err)
				}
				modes[d], uids[d] = st.Mode&0o7777, st.Uid
			}
			if modes[local] != tc.want {
				t.Fatalf("on a local disk: %04o, want %04o (the case is wrong)", modes[local], tc.want)
			}
			if modes[dir] != modes[local] || uids[dir] != uids[local] {
				t.Errorf("in carol's folder: %04o uid %d, a local disk's %04o uid %d", modes[dir], uids[dir], modes[local], uids[local])
			}
			// On carol's disk once stored (fsync: a SYNC round).
			syncDir(t, dir)
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(carol.export, "shared", "f"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode&0o7777 != tc.want || st.Uid != uids[local] {
				t.Errorf("on carol's disk: %04o uid %d, want %04o uid %d", st.Mode&0o7777, st.Uid, tc.want, uids[local])
			}
		})
	}

	// Another writer's chmod on the peer while root has the file open
	// stays: nothing puts back the mode this mount saw at open.
	t.Run("chmod_on_the_peer_while_open", func(t *testing.T) {
		f := filepath.Join(dir, "prog")
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(f, 0o4755); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteString("a"); err != nil {
			t.Fatal(err)
		}
		onDisk := filepath.Join(carol.export, "shared", "prog")
		if err := syscall.Chmod(onDisk, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteString("b"); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		syncDir(t, dir)
		var st syscall.Stat_t
		if err := syscall.Stat(onDisk, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != 0o755 {
			t.Errorf("on carol's disk: %04o, want 0755 (the chmod made there while the file was open)", st.Mode&0o7777)
		}
	})
}
