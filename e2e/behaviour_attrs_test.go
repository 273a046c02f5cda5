package e2e

// Behaviours of owners, modes, times and directory counts (issue #12,
// items 4 and 5).

import (
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func chmod(t testing.TB, path string, mode uint32) {
	t.Helper()
	okDo(t, again(func() error { return unix.Chmod(path, mode) }), "chmod "+path)
}

func utimens(t testing.TB, path string, atime, mtime int64) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	if atime < 0 {
		ts[0] = unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	okDo(t, again(func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, 0) }), "utimensat "+path)
}

// nsec is a time in ns since 1970.
func nsec(ts unix.Timespec) int64 { return ts.Nano() }

// mark is a moment between two pauses: a time a filesystem stamps on a
// change made after mark returns is not before it, whatever its clock's
// granularity (the kernel's coarse clock lags by a tick at most).
func mark() time.Time {
	pause()
	t0 := time.Now()
	pause()
	return t0
}

// stamped checks that a time read after a change made after t0 is t0 or
// later: the change was stamped with the clock, not left with an older
// time (or one cached from before).
func stamped(t testing.TB, what string, t0 time.Time, ts unix.Timespec) {
	t.Helper()
	if got := time.Unix(0, ts.Nano()); got.Before(t0) {
		t.Errorf("%s: %s, before the change (made after %s)", what, got.UTC().Format(time.RFC3339Nano), t0.UTC().Format(time.RFC3339Nano))
	}
}

func attrBehaviours() []behaviour {
	const atime, mtime = 1_500_000_000_123_456_789, 1_600_000_000_987_654_321
	return []behaviour{
		{name: "owners/chown", trusted: true, check: func(t testing.TB, dir string) {
			needRoot(t)
			putFile(t, join(dir, "f"), "x")
			okDo(t, again(func() error { return unix.Chown(join(dir, "f"), 4321, 4322) }), "chown f")
			if st := lstatOf(t, join(dir, "f")); st.Uid != 4321 || st.Gid != 4322 {
				t.Errorf("after chown 4321:4322: %d:%d", st.Uid, st.Gid)
			}
		}},
		{name: "owners/chgrp", trusted: true, check: func(t testing.TB, dir string) {
			needRoot(t)
			putFile(t, join(dir, "f"), "x")
			uid := lstatOf(t, join(dir, "f")).Uid
			okDo(t, again(func() error { return unix.Chown(join(dir, "f"), -1, 4321) }), "chgrp f")
			if st := lstatOf(t, join(dir, "f")); st.Uid != uid || st.Gid != 4321 {
				t.Errorf("after chgrp 4321: %d:%d", st.Uid, st.Gid)
			}
		}},
		{name: "owners/lchown", trusted: true, check: func(t testing.TB, dir string) {
			needRoot(t)
			putFile(t, join(dir, "f"), "x")
			symlink(t, "f", join(dir, "l"))
			okDo(t, again(func() error { return unix.Lchown(join(dir, "l"), 4321, 4321) }), "lchown l")
			if st := lstatOf(t, join(dir, "l")); st.Uid != 4321 {
				t.Errorf("the link's owner after lchown: %d", st.Uid)
			}
			if st := lstatOf(t, join(dir, "f")); st.Uid == 4321 {
				t.Error("lchown of the link changed its target's owner")
			}
		}},
		{name: "modes/mkdir-exact", check: func(t testing.TB, dir string) {
			withUmask(0, func() {
				for _, m := range []uint32{0o777, 0o700, 0o751, 0o000} {
					d := join(dir, "d"+os.FileMode(m).String())
					okDo(t, again(func() error { return unix.Mkdir(d, m) }), "mkdir")
					if got := permOf(lstatOf(t, d)); got != m {
						t.Errorf("mkdir %04o under umask 0: mode %04o", m, got)
					}
				}
			})
		}},
		{name: "modes/create-exact", check: func(t testing.TB, dir string) {
			withUmask(0, func() {
				for _, m := range []uint32{0o777, 0o640, 0o400, 0o000} {
					f := join(dir, "f"+os.FileMode(m).String())
					okDo(t, again(func() error {
						fd, err := unix.Open(f, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, m)
						if err == nil {
							err = unix.Close(fd)
						}
						return err
					}), "create")
					if got := permOf(lstatOf(t, f)); got != m {
						t.Errorf("create %04o under umask 0: mode %04o", m, got)
					}
				}
			})
		}},
		{name: "modes/chmod-exact", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			for _, m := range []uint32{0o000, 0o123, 0o640, 0o777, 0o555} {
				chmod(t, join(dir, "f"), m)
				if got := permOf(lstatOf(t, join(dir, "f"))); got != m {
					t.Errorf("chmod %04o: mode %04o", m, got)
				}
			}
		}},
		{name: "modes/sticky", check: func(t testing.TB, dir string) {
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			chmod(t, join(dir, "d"), 0o1777)
			if got := permOf(lstatOf(t, join(dir, "d"))); got != 0o1777 {
				t.Errorf("chmod 1777 of a directory: mode %04o", got)
			}
		}},
		{name: "modes/setuid", trusted: true, check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "#!/bin/sh\n")
			for _, m := range []uint32{0o4755, 0o2755, 0o6755} {
				chmod(t, join(dir, "f"), m)
				if got := permOf(lstatOf(t, join(dir, "f"))); got != m {
					t.Errorf("chmod %04o: mode %04o", m, got)
				}
			}
		}},
		{name: "modes/setgid-dir", trusted: true, check: func(t testing.TB, dir string) {
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			chmod(t, join(dir, "d"), 0o2775)
			if got := permOf(lstatOf(t, join(dir, "d"))); got != 0o2775 {
				t.Errorf("chmod 2775 of a directory: mode %04o", got)
			}
		}},

		{name: "times/mtime", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			utimens(t, join(dir, "f"), -1, mtime)
			if got := nsec(lstatOf(t, join(dir, "f")).Mtim); got != mtime {
				t.Errorf("mtime %d, want %d", got, int64(mtime))
			}
		}},
		{name: "times/atime", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			for _, p := range []string{join(dir, "f"), join(dir, "d")} {
				utimens(t, p, atime, mtime)
				if st := lstatOf(t, p); nsec(st.Atim) != atime || nsec(st.Mtim) != mtime {
					t.Errorf("%s: atime %d mtime %d, want %d %d", p, nsec(st.Atim), nsec(st.Mtim), int64(atime), int64(mtime))
				}
			}
		}},
		{name: "times/omit", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			utimens(t, join(dir, "f"), atime, atime)
			utimens(t, join(dir, "f"), -1, mtime) // UTIME_OMIT for atime
			if st := lstatOf(t, join(dir, "f")); nsec(st.Atim) != atime || nsec(st.Mtim) != mtime {
				t.Errorf("atime %d mtime %d, want %d (kept) %d", nsec(st.Atim), nsec(st.Mtim), int64(atime), int64(mtime))
			}
		}},
		{name: "times/ctime-chmod", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			t0 := mark()
			chmod(t, join(dir, "f"), 0o600)
			stamped(t, "ctime after chmod", t0, lstatOf(t, join(dir, "f")).Ctim)
		}},
		{name: "times/ctime-rename", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			t0 := mark()
			okDo(t, renameErr(join(dir, "f"), join(dir, "g")), "rename f g")
			stamped(t, "ctime after rename", t0, lstatOf(t, join(dir, "g")).Ctim)
		}},
		{name: "times/ctime-write", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			t0 := mark()
			putFile(t, join(dir, "f"), "written again")
			st := lstatOf(t, join(dir, "f"))
			stamped(t, "ctime after a write", t0, st.Ctim)
			stamped(t, "mtime after a write", t0, st.Mtim)
		}},
		{name: "times/ctime-not-future", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			future := time.Now().Add(365 * 24 * time.Hour).UnixNano()
			utimens(t, join(dir, "f"), -1, future)
			now := time.Now()
			st := lstatOf(t, join(dir, "f"))
			if nsec(st.Mtim) != future {
				t.Errorf("mtime %d, want %d", nsec(st.Mtim), future)
			}
			if ctime := time.Unix(0, nsec(st.Ctim)); ctime.After(now) || ctime.Before(now.Add(-time.Minute)) {
				t.Errorf("ctime after setting a future mtime: %v, want about now (%v)", ctime.UTC(), now.UTC())
			}
		}},
		{name: "times/parent-on-create", check: func(t testing.TB, dir string) {
			for _, create := range []struct {
				what string
				do   func(string) error
			}{
				{"creating a file", func(p string) error { return os.WriteFile(p, nil, 0o644) }},
				{"mkdir", func(p string) error { return os.Mkdir(p, 0o755) }},
			} {
				lstatOf(t, dir) // its attributes known before the change
				t0 := mark()
				okDo(t, create.do(join(dir, "new "+create.what)), create.what)
				after := lstatOf(t, dir)
				stamped(t, "the directory's mtime after "+create.what, t0, after.Mtim)
				stamped(t, "the directory's ctime after "+create.what, t0, after.Ctim)
			}
		}},
		{name: "times/parent-on-remove", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
			for _, name := range []string{"f", "d"} {
				lstatOf(t, dir)
				t0 := mark()
				okDo(t, os.Remove(join(dir, name)), "remove "+name)
				after := lstatOf(t, dir)
				stamped(t, "the directory's mtime after removing "+name, t0, after.Mtim)
				stamped(t, "the directory's ctime after removing "+name, t0, after.Ctim)
			}
		}},

		{name: "dirs/nlink", check: func(t testing.TB, dir string) {
			d := join(dir, "d")
			okDo(t, os.Mkdir(d, 0o755), "mkdir d")
			if n := lstatOf(t, d).Nlink; n != 2 {
				t.Errorf("an empty directory: nlink %d, want 2", n)
			}
			for _, sub := range []string{"a", "b", "c"} {
				okDo(t, os.Mkdir(join(d, sub), 0o755), "mkdir "+sub)
			}
			putFile(t, join(d, "f"), "files do not count")
			if n := lstatOf(t, d).Nlink; n != 5 {
				t.Errorf("3 subdirectories and a file: nlink %d, want 5", n)
			}
			okDo(t, os.Remove(join(d, "a")), "rmdir a")
			if n := lstatOf(t, d).Nlink; n != 4 {
				t.Errorf("after rmdir of one: nlink %d, want 4", n)
			}
		}},
		{name: "dirs/dot-dotdot", check: func(t testing.TB, dir string) {
			putFile(t, join(dir, "f"), "x")
			names := direntNames(t, dir)
			slices.Sort(names)
			if !slices.Equal(names, []string{".", "..", "f"}) {
				t.Errorf("getdents: %q, want . .. f", names)
			}
		}},
	}
}

// chownRefused is owners/chown and owners/chgrp on a peer that keeps no
// owners: EPERM, the owner unchanged.
func chownRefused(t testing.TB, dir string, uid, gid int) {
	putFile(t, join(dir, "f"), "x")
	before := lstatOf(t, join(dir, "f"))
	wantErr(t, again(func() error { return unix.Chown(join(dir, "f"), uid, gid) }), unix.EPERM, "chown")
	if st := lstatOf(t, join(dir, "f")); st.Uid != before.Uid || st.Gid != before.Gid {
		t.Errorf("owner %d:%d after a refused chown, was %d:%d", st.Uid, st.Gid, before.Uid, before.Gid)
	}
}

// lchownRefused is owners/lchown on a peer that keeps no owners.
func lchownRefused(t testing.TB, dir string) {
	symlink(t, "nowhere", join(dir, "l"))
	wantErr(t, again(func() error { return unix.Lchown(join(dir, "l"), 4321, 4321) }), unix.EPERM, "lchown")
}

// setuidStripped is modes/setuid on a peer without --allow-setuid: the
// chmod succeeds, the setuid and setgid bits are dropped.
func setuidStripped(t testing.TB, dir string) {
	putFile(t, join(dir, "f"), "#!/bin/sh\n")
	for _, m := range []uint32{0o4755, 0o2755, 0o6755} {
		chmod(t, join(dir, "f"), m)
		if got := permOf(lstatOf(t, join(dir, "f"))); got != 0o755 {
			t.Errorf("chmod %04o: mode %04o, want 0755 (stripped)", m, got)
		}
	}
}

// setgidDirStripped is modes/setgid-dir on a peer without --allow-setuid.
func setgidDirStripped(t testing.TB, dir string) {
	okDo(t, os.Mkdir(join(dir, "d"), 0o755), "mkdir d")
	chmod(t, join(dir, "d"), 0o2775)
	if got := permOf(lstatOf(t, join(dir, "d"))); got != 0o775 {
		t.Errorf("chmod 2775 of a directory: mode %04o, want 0775 (stripped)", got)
	}
}
