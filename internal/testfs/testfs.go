// Package testfs makes the filesystems tests need beyond the one the
// temporary directory is on: a loop-mounted ext4 with 128-byte inodes,
// whose timestamps have whole seconds only, as on FAT, HFS+ and many NAS
// shares; a loop-mounted XFS whose files can share blocks (reflinks); and
// an export whose symbolic links lead out of it. It is
// imported by tests only, and imports nothing of peerfs, so every
// package's tests may use it.
package testfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Coarse returns the root of a fresh ext4 filesystem of sizeMB MiB made
// with 128-byte inodes (whole-second timestamps), loop-mounted for the
// test and unmounted (lazily, if busy) at its end. It skips the test
// where that cannot be done: not root, no mkfs.ext4, no loop devices.
func Coarse(t testing.TB, sizeMB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a filesystem image needs root")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("skipping: mkfs.ext4 (e2fsprogs) is missing")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "coarse.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	// -I 128: no room for nanoseconds (or dates past 2038) in an inode.
	if out, err := exec.Command(mkfs, "-q", "-F", "-I", "128", "-E", "lazy_itable_init=0,lazy_journal_init=0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	// The test's files are written by other users' processes too (a
	// peer daemon run as the test's user is root here, but keep it open).
	mnt := loopMount(t, img, filepath.Join(dir, "mnt"))
	probe := filepath.Join(mnt, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(probe)
	if err != nil {
		t.Fatal(err)
	}
	if fi.ModTime().Nanosecond() != 0 {
		t.Fatalf("%s keeps sub-second times (%v): not a coarse filesystem", mnt, fi.ModTime())
	}
	os.Remove(probe)
	return mnt
}

// Reflink returns the root of a fresh XFS filesystem made with reflink=1
// (files can share blocks: FICLONE works), loop-mounted for the test and
// unmounted at its end; its image is sparse, so only what the test writes
// takes space. It skips the test where that cannot be done: not root, no
// mkfs.xfs (xfsprogs), no loop devices.
func Reflink(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a filesystem image needs root")
	}
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		t.Skip("skipping: mkfs.xfs (xfsprogs) is missing")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "reflink.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// XFS's smallest filesystem is 300 MiB.
	if err := os.Truncate(img, 320<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-f", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Skipf("skipping: mkfs.xfs -m reflink=1: %v: %s", err, out)
	}
	return loopMount(t, img, filepath.Join(dir, "mnt"))
}

// loopMount mounts image img at mnt (made here) for the test, unmounting
// it (lazily, if busy) at its end, and returns mnt, open to every user.
func loopMount(t testing.TB, img, mnt string) string {
	t.Helper()
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot loop-mount a filesystem image: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		// Lazily if something still holds it: the image file goes with
		// the temporary directory either way.
		if err := exec.Command("umount", mnt).Run(); err != nil {
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	if err := os.Chmod(mnt, 0o777); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// SameSecond waits, if needed, until at least want of the current second
// is left, so that what a test does next happens within one tick of a
// coarse filesystem's clock.
func SameSecond(want time.Duration) {
	now := time.Now()
	if left := time.Second - time.Duration(now.Nanosecond()); left < want {
		time.Sleep(left)
	}
}

// Escapes builds base/export (to be served) next to base/outside (with a
// secret, secret.txt), and symbolic links from the export both ways:
// out, abs, outdir, absdir and sub/sneaky lead outside; in, indir and
// sub/up stay inside (to hello.txt and sub/inner.txt); loop is a loop.
func Escapes(t testing.TB) (export, outside string) {
	t.Helper()
	base := t.TempDir()
	export = filepath.Join(base, "export")
	outside = filepath.Join(base, "outside")
	for _, f := range []struct{ dir, name, data string }{
		{outside, "secret.txt", "secret"},
		{export, "hello.txt", "hello"},
		{export, "sub/inner.txt", "inner"},
	} {
		p := filepath.Join(f.dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"out":        "../outside/secret.txt",
		"abs":        filepath.Join(outside, "secret.txt"),
		"outdir":     "../outside",
		"absdir":     outside,
		"sub/sneaky": "../../outside/secret.txt",
		"in":         "hello.txt",
		"indir":      "sub",
		"sub/up":     "../hello.txt",
		"loop":       "loop",
	} {
		if err := os.Symlink(target, filepath.Join(export, link)); err != nil {
			t.Fatal(err)
		}
	}
	return export, outside
}
