package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMountListingNoStorm: `ls -l` of 5000 entries costs a LIST round
// trip or a few, never a STAT per file.
func TestMountListingNoStorm(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	dir := filepath.Join(b.export, "many")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5000; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%04d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	statsBefore, _ := b.p.requests("STAT")
	listsBefore, _ := b.p.requests("LIST")
	out := mustRun(t, "", "ls", "-l", filepath.Join(a.dir(b), "many"))
	if n := strings.Count(out, "file-"); n != 5000 {
		t.Fatalf("ls -l listed %d entries, want 5000", n)
	}
	stats, _ := b.p.requests("STAT")
	lists, _ := b.p.requests("LIST")
	// A storm is one request per entry (thousands). A few LISTs more
	// than one happen when the listing's cache expires during a slow
	// ls (a loaded machine: 4 seen), which is no storm.
	if stats-statsBefore > 10 || lists-listsBefore > 6 {
		t.Fatalf("ls -l of 5000 entries cost %d STAT and %d LIST requests", stats-statsBefore, lists-listsBefore)
	}
}

// TestMountRangedRead: reading 4 KiB of a 1 GiB file fetches about that
// much, not the file.
func TestMountRangedRead(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	f, err := os.Create(filepath.Join(b.export, "huge.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse: instant
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("needle in a haystack"), 600<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := mustRun(t, "", "dd", "if="+filepath.Join(a.dir(b), "huge.img"), "bs=4096", "count=1", "skip="+fmt.Sprint((600<<20)/4096), "status=none")
	if !strings.HasPrefix(out, "needle in a haystack") {
		t.Fatalf("read %q", out[:min(40, len(out))])
	}
	_, bytes := b.p.requests("GET")
	if bytes > 1<<20 {
		t.Fatalf("reading 4 KiB of a 1 GiB file fetched %d bytes", bytes)
	}
}

// TestMountAttrsAndErrors: chmod, truncate, utimens and statfs reach the
// peer; EEXIST, EACCES and ENOENT map through.
func TestMountAttrsAndErrors(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	bob := a.dir(b)
	writeFile(t, filepath.Join(bob, "f.txt"), []byte("0123456789abcdef"))

	mustRun(t, "", "chmod", "600", filepath.Join(bob, "f.txt"))
	mustRun(t, "", "truncate", "-s", "10", filepath.Join(bob, "f.txt"))
	mustRun(t, "", "touch", "-m", "-d", "2020-02-03 04:05:06 UTC", filepath.Join(bob, "f.txt"))
	fi, err := os.Stat(filepath.Join(b.export, "f.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != 10 || fi.ModTime().UTC().Format(time.DateTime) != "2020-02-03 04:05:06" {
		t.Fatalf("bob's file: mode %v size %d mtime %v", fi.Mode(), fi.Size(), fi.ModTime().UTC())
	}
	sameFile(t, filepath.Join(bob, "f.txt"), []byte("0123456789"))

	// A new file keeps the creator's mode and a preserved mtime (cp -p).
	src := filepath.Join(t.TempDir(), "script.sh")
	writeFile(t, src, []byte("#!/bin/sh\necho hi\n"))
	os.Chmod(src, 0o750)
	old := time.Date(2019, 5, 6, 7, 8, 9, 0, time.UTC)
	os.Chtimes(src, old, old)
	mustRun(t, "", "cp", "-p", src, bob+"/")
	fi, err = os.Stat(filepath.Join(b.export, "script.sh"))
	if err != nil || fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(old) {
		t.Fatalf("cp -p: %v mode %v mtime %v", err, fi.Mode(), fi.ModTime())
	}

	// statfs reports bob's filesystem.
	var want, got syscall.Statfs_t
	if err := syscall.Statfs(b.export, &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Statfs(bob, &got); err != nil {
		t.Fatal(err)
	}
	wantTotal, gotTotal := want.Blocks*uint64(want.Bsize), got.Blocks*uint64(got.Bsize)
	if gotTotal == 0 || gotTotal > wantTotal+wantTotal/100 || gotTotal < wantTotal-wantTotal/100 {
		t.Fatalf("statfs in bob's folder: %d bytes total, bob's disk has %d", gotTotal, wantTotal)
	}

	// Errors.
	if out, err := runCmd(t, 10*time.Second, "", "mkdir", filepath.Join(bob, "f.txt")); err == nil || !strings.Contains(out, "File exists") {
		t.Fatalf("mkdir over a file: %v %q", err, out)
	}
	if out, err := runCmd(t, 10*time.Second, "", "touch", filepath.Join(a.mnt, "not-a-peer-file")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("creating a file in the mount root: %v %q", err, out)
	}
	if out, err := runCmd(t, 10*time.Second, "", "rm", filepath.Join(bob, "nope")); err == nil || !strings.Contains(out, "No such file") {
		t.Fatalf("rm of a missing file: %v %q", err, out)
	}
	if out, err := runCmd(t, 10*time.Second, "", "sh", "-c", "set -C; echo x > '"+filepath.Join(bob, "f.txt")+"'"); err == nil || !strings.Contains(out, "exists") {
		t.Fatalf("O_EXCL create over an existing file: %v %q", err, out)
	}
}

// TestMountNoSpace: a peer whose disk is full refuses the upload: the
// writer gets ENOSPC, the old content stays intact.
func TestMountNoSpace(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	small := filepath.Join(b.export, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })
	writeFile(t, filepath.Join(small, "keep.txt"), []byte("old content\n"))

	src := filepath.Join(t.TempDir(), "big.bin")
	writeFile(t, src, randBytes(8<<20))
	out, err := runCmd(t, 30*time.Second, "", "cp", src, filepath.Join(a.dir(b), "small", "keep.txt"))
	if err == nil || !strings.Contains(out, "No space left") {
		t.Fatalf("cp onto a full peer: %v %q", err, out)
	}
	sameFile(t, filepath.Join(small, "keep.txt"), []byte("old content\n"))
	entries, _ := os.ReadDir(small)
	if len(entries) != 1 {
		t.Fatalf("leftovers on the full disk: %v", entries)
	}
}

// TestMountFsyncRunsRound: fsync from a mount runs a SYNC round that every
// mount takes part in.
func TestMountFsyncRunsRound(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	b.sees(a)
	doc := filepath.Join(a.dir(b), "doc.txt")
	if out, err := helper(t, "editor-save", doc, []byte("fsynced content\n")); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	waitFor(t, 10*time.Second, "the tracker to end round 1", func() bool {
		return strings.Contains(c.tproc.log.String(), `"round":1`) && strings.Contains(c.tproc.log.String(), "round ended")
	})
	sameFile(t, filepath.Join(b.export, "doc.txt"), []byte("fsynced content\n"))
}

// TestMountStaleCleanup: a mount whose daemon was killed is cleaned by the
// next daemon on the same mountpoint, and by `peerfs unmount`.
func TestMountStaleCleanup(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	a.p.kill()
	if _, err := os.Stat(a.mnt); err == nil {
		t.Fatal("a killed daemon's mountpoint still answers")
	}
	a.start() // must clean the stale mount itself
	a.sees(b)
	a.p.kill()
	out, err := exec.Command(bin, "unmount", a.mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("peerfs unmount of a stale mount: %v %s", err, out)
	}
	waitFor(t, 5*time.Second, "the stale mount gone", func() bool { return !isMounted(a.mnt) })
}

// TestMountPeerKilledMidRead: killing the serving peer during a long read
// fails the read with EIO within the timeout.
func TestMountPeerKilledMidRead(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	f, err := os.Create(filepath.Join(b.export, "huge.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(4 << 30)
	f.Close()
	cmd := exec.Command("dd", "if="+filepath.Join(a.dir(b), "huge.img"), "of=/dev/null", "bs=1M")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, 10*time.Second, "the read under way", func() bool {
		_, bytes := b.p.requests("GET")
		return bytes > 8<<20
	})
	b.p.kill()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(out.String(), "Input/output error") {
			t.Fatalf("dd after the peer died: %v %q", err, out.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("read did not fail within 15s of the peer dying")
	}
}
