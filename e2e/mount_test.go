package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helper runs this test binary as a child doing one filesystem operation.
func helper(t *testing.T, kind, path string, data []byte) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER="+kind, "PEERFS_E2E_DATA="+string(data))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameSoon is sameFile once a change written behind (a rename, a removal:
// CONSISTENCY.md) has reached the peer whose export holds path: within
// seconds, without an fsync.
func sameSoon(t *testing.T, path string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := os.ReadFile(path)
		if err == nil && bytes.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			sameFile(t, path, want)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes (sha %x), want %d bytes (sha %x)", path, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// TestMountListCopy: peers appear as folders; ls, ls -l, cp in and out,
// cp -r, mkdir, rmdir, rm and mv work in a peer folder.
func TestMountListCopy(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	b.sees(a)

	// Files bob exports show up in alice's view of bob.
	writeFile(t, filepath.Join(b.export, "hello.txt"), []byte("hello from bob\n"))
	if err := os.Mkdir(filepath.Join(b.export, "sub dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(b.export, "sub dir", "nested é.txt"), []byte("nested\n"))
	bob := a.dir(b)
	out := mustRun(t, "", "ls", bob)
	if !strings.Contains(out, "hello.txt") || !strings.Contains(out, "sub dir") {
		t.Fatalf("ls %s = %q", bob, out)
	}
	out = mustRun(t, "", "ls", "-l", filepath.Join(bob, "sub dir"))
	if !strings.Contains(out, "nested é.txt") || !strings.Contains(out, " 7 ") {
		t.Fatalf("ls -l = %q", out)
	}
	if got := mustRun(t, "", "cat", filepath.Join(bob, "hello.txt")); got != "hello from bob\n" {
		t.Fatalf("cat = %q", got)
	}

	// cp in: lands in bob's export, byte for byte.
	src := t.TempDir()
	big := randBytes(9<<20 + 123)
	writeFile(t, filepath.Join(src, "big.bin"), big)
	mustRun(t, "", "cp", filepath.Join(src, "big.bin"), bob+"/")
	sameFile(t, filepath.Join(b.export, "big.bin"), big)
	// cp out.
	dst := t.TempDir()
	mustRun(t, "", "cp", filepath.Join(bob, "big.bin"), dst+"/")
	sameFile(t, filepath.Join(dst, "big.bin"), big)

	// cp -r of a tree, and back out.
	tree := filepath.Join(src, "tree")
	files := map[string][]byte{}
	for i := 0; i < 30; i++ {
		rel := filepath.Join("d"+string(rune('a'+i%3)), "e"+string(rune('a'+i%2)), "f"+string(rune('a'+i))+".dat")
		files[rel] = randBytes(1 + i*7919)
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tree, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(tree, rel), files[rel])
	}
	mustRun(t, "", "cp", "-r", tree, bob+"/")
	for rel, data := range files {
		sameFile(t, filepath.Join(b.export, "tree", rel), data)
	}
	mustRun(t, "", "cp", "-r", filepath.Join(bob, "tree"), filepath.Join(dst, "tree"))
	for rel, data := range files {
		sameFile(t, filepath.Join(dst, "tree", rel), data)
	}

	// mkdir, mv between folders, rm, rmdir.
	mustRun(t, "", "mkdir", filepath.Join(bob, "newdir"))
	mustRun(t, "", "mv", filepath.Join(bob, "hello.txt"), filepath.Join(bob, "newdir", "moved.txt"))
	sameSoon(t, filepath.Join(b.export, "newdir", "moved.txt"), []byte("hello from bob\n"))
	if _, err := os.Stat(filepath.Join(b.export, "hello.txt")); !os.IsNotExist(err) {
		t.Fatalf("source still exists after mv: %v", err)
	}
	if out, err := runCmd(t, 10*time.Second, "", "rmdir", filepath.Join(bob, "newdir")); err == nil || !strings.Contains(out, "not empty") {
		t.Fatalf("rmdir of a non-empty dir: %v %q", err, out)
	}
	// Removals are written behind (CONSISTENCY.md): gone here at once,
	// on bob's disk moments later.
	mustRun(t, "", "rm", filepath.Join(bob, "newdir", "moved.txt"))
	mustRun(t, "", "rmdir", filepath.Join(bob, "newdir"))
	if names, err := readDirNames(bob); err != nil || slices.Contains(names, "newdir") {
		t.Errorf("alice's view of bob's folder after rmdir: %q %v", names, err)
	}
	waitFor(t, 10*time.Second, "rmdir carried out on bob", func() bool {
		_, err := os.Stat(filepath.Join(b.export, "newdir"))
		return os.IsNotExist(err)
	})
	mustRun(t, "", "rm", "-r", filepath.Join(bob, "tree"))
	waitFor(t, 10*time.Second, "rm -r carried out on bob", func() bool {
		_, err := os.Stat(filepath.Join(b.export, "tree"))
		return os.IsNotExist(err)
	})
	// Errors map through.
	if out, err := runCmd(t, 10*time.Second, "", "cat", filepath.Join(bob, "missing")); err == nil || !strings.Contains(out, "No such file") {
		t.Fatalf("cat missing: %v %q", err, out)
	}
	// A hard link is one on the peer's disk too (issue #12).
	mustRun(t, "", "ln", filepath.Join(bob, "big.bin"), filepath.Join(bob, "hard"))
	fi1, err1 := os.Stat(filepath.Join(b.export, "big.bin"))
	fi2, err2 := os.Stat(filepath.Join(b.export, "hard"))
	if err1 != nil || err2 != nil || !os.SameFile(fi1, fi2) {
		t.Fatalf("ln: in the export big.bin (%v) and hard (%v) are not one file", err1, err2)
	}
}

// TestMountWriteVisibleToOthers: what alice writes into carol's folder bob
// reads after close, and after fsync (before close).
func TestMountWriteVisibleToOthers(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	cl := c.mount("carol")
	a.sees(b, cl)
	b.sees(a, cl)

	// After close.
	writeFile(t, filepath.Join(a.dir(cl), "shared.txt"), []byte("version 1\n"))
	sameFile(t, filepath.Join(cl.export, "shared.txt"), []byte("version 1\n"))
	sameFile(t, filepath.Join(b.dir(cl), "shared.txt"), []byte("version 1\n"))

	// After fsync, with the writer's file still open.
	cmd := exec.Command(os.Args[0], "-test.run=^$", filepath.Join(a.dir(cl), "shared.txt"))
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=write-fsync", "PEERFS_E2E_DATA=version 2 after fsync\n")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line := make([]byte, len("fsynced\n"))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "fsynced\n" {
		t.Fatalf("writer: %q %v", line, err)
	}
	sameFile(t, filepath.Join(cl.export, "shared.txt"), []byte("version 2 after fsync\n"))
	// bob may hold attributes for up to the attribute timeout (1s) unless
	// the SYNC round invalidated them; either way he sees version 2 soon.
	waitFor(t, 3*time.Second, "bob reading version 2", func() bool {
		got, _ := os.ReadFile(filepath.Join(b.dir(cl), "shared.txt"))
		return string(got) == "version 2 after fsync\n"
	})
}

// TestMountEditorSave: write temp + fsync + rename over the original, and
// sed -i, in a peer folder.
func TestMountEditorSave(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	doc := filepath.Join(a.dir(b), "doc.txt")
	writeFile(t, doc, []byte("line one\nline two\n"))
	for i := 0; i < 5; i++ {
		want := []byte(strings.Repeat("saved ", i+1) + "\n")
		if out, err := helper(t, "editor-save", doc, want); err != nil {
			t.Fatalf("editor save %d: %v %s", i, err, out)
		}
		sameSoon(t, filepath.Join(b.export, "doc.txt"), want)
		sameFile(t, doc, want)
	}
	writeFile(t, doc, []byte("alpha\nbeta\ngamma\n"))
	mustRun(t, "", "sed", "-i", "s/beta/BETA/", doc)
	sameSoon(t, filepath.Join(b.export, "doc.txt"), []byte("alpha\nBETA\ngamma\n"))
	entries, _ := os.ReadDir(b.export)
	for _, e := range entries {
		if e.Name() != "doc.txt" {
			t.Errorf("leftover in export: %s", e.Name())
		}
	}
}

// TestMountGitTar: git init/add/commit and tar x inside a peer folder.
func TestMountGitTar(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	repo := filepath.Join(a.dir(b), "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, repo, "git", "init", "-q")
	writeFile(t, filepath.Join(repo, "README"), []byte("a repository on a peer\n"))
	writeFile(t, filepath.Join(repo, "main.go"), []byte("package main\n"))
	mustRun(t, repo, "git", "add", ".")
	mustRun(t, repo, "git", "commit", "-q", "-m", "first")
	if out := mustRun(t, repo, "git", "log", "--oneline"); !strings.Contains(out, "first") {
		t.Fatalf("git log: %q", out)
	}
	// The repository is whole on bob's side.
	if out := mustRun(t, filepath.Join(b.export, "repo"), "git", "status", "--porcelain"); out != "" {
		t.Fatalf("git status on bob's export: %q", out)
	}

	// tar x into the peer folder.
	src := t.TempDir()
	for i := 0; i < 10; i++ {
		writeFile(t, filepath.Join(src, "f"+string(rune('0'+i))), randBytes(1000*i+1))
	}
	tarball := filepath.Join(t.TempDir(), "t.tar")
	mustRun(t, src, "tar", "cf", tarball, ".")
	dest := filepath.Join(a.dir(b), "untarred")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dest, "tar", "xf", tarball)
	for i := 0; i < 10; i++ {
		name := "f" + string(rune('0'+i))
		want, _ := os.ReadFile(filepath.Join(src, name))
		sameFile(t, filepath.Join(b.export, "untarred", name), want)
	}
}

// TestMountDeadPeer: a peer killed mid-read gives EIO within the timeout,
// the mount stays usable, and the dead peer's folder stays (EIO) until an
// operator forgets it.
func TestMountDeadPeer(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	cl := c.mount("carol")
	a.sees(b, cl)
	big := randBytes(64 << 20)
	writeFile(t, filepath.Join(b.export, "big.bin"), big)
	writeFile(t, filepath.Join(cl.export, "ok.txt"), []byte("still here\n"))

	// Stop bob dead (SIGSTOP: the socket stays open, nothing answers).
	if err := syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	begin := time.Now()
	out, err := runCmd(t, 30*time.Second, "", "cat", filepath.Join(a.dir(b), "big.bin"))
	took := time.Since(begin)
	if err == nil {
		t.Fatalf("reading from a stopped peer succeeded")
	}
	if !strings.Contains(out, "Input/output error") && !strings.Contains(out, "No such file") {
		t.Fatalf("want EIO (or the folder gone), got %v: %q", err, out[:min(len(out), 200)])
	}
	if took > 12*time.Second {
		t.Fatalf("failure took %v, want within a few seconds", took)
	}
	// The mount stays usable for the other peers.
	sameFile(t, filepath.Join(a.dir(cl), "ok.txt"), []byte("still here\n"))

	// Bob comes back and is used again without a remount.
	syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	waitFor(t, 20*time.Second, "bob readable again", func() bool {
		f, err := os.Open(filepath.Join(a.dir(b), "big.bin"))
		if err != nil {
			return false
		}
		defer f.Close()
		buf := make([]byte, 4096)
		n, _ := f.ReadAt(buf, 1<<20)
		return n == 4096 && bytes.Equal(buf, big[1<<20:1<<20+4096])
	})
	// Killed outright: once the tracker notices, his folder stays (a
	// crash is no leave) and says EIO, until an operator forgets him.
	b.p.kill()
	waitFor(t, 20*time.Second, "the tracker to drop bob", func() bool { return c.tproc.left("bob") })
	if names, err := readDirNames(a.mnt); err != nil || !slices.Contains(names, "bob") {
		t.Errorf("alice's mount root after bob was killed: %q %v; want bob's folder kept", names, err)
	}
	if out, err := runCmd(t, 30*time.Second, "", "ls", a.dir(b)); err == nil || !strings.Contains(out, "Input/output error") {
		t.Errorf("ls of a killed peer's folder: %v %q, want EIO", err, out)
	}
	mustRun(t, "", bin, "forget", "--cache-dir", a.cache, "bob")
	waitFor(t, 20*time.Second, "bob's folder gone", func() bool {
		names, err := readDirNames(a.mnt)
		return err == nil && !strings.Contains(strings.Join(names, " "), "bob")
	})
}

// TestMountCrashKeepsDirty: a write whose upload fails stays in the cache
// (close reports the error), survives kill -9 of the mount, and is
// delivered after restart; also with the cache on a file system without
// user extended attributes (ramfs), where the cache keeps its records in
// files of their own (cache/xattr.go).
func TestMountCrashKeepsDirty(t *testing.T) {
	t.Run("cache", func(t *testing.T) {
		// The file whose upload failed has a record file (a durable
		// record: older versions read those); files uploaded at once
		// keep their record in an attribute.
		if metas, datas := cacheFiles(t, crashKeepsDirty(t)); len(metas) >= len(datas) {
			t.Errorf("a cache on %s holds %d record files for %d cached files; want fewer", os.TempDir(), len(metas), len(datas))
		}
	})
	t.Run("cache without attributes", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("mounting a ramfs needs root")
		}
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "ramfs", "ramfs", dir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a ramfs: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
		if err := syscall.Setxattr(dir, "user.probe", []byte("1"), 0); err == nil {
			t.Fatal("ramfs kept a user attribute: the test needs a file system without them")
		}
		crashKeepsDirty(t, "--cache-dir", filepath.Join(dir, "cache"))
		if metas, datas := cacheFiles(t, filepath.Join(dir, "cache")); len(metas) != len(datas) {
			t.Errorf("a cache on a ramfs holds %d record files for %d cached files; want one each", len(metas), len(datas))
		}
	})
}

// cacheFiles returns the record files and the data files in cache's
// entries/.
func cacheFiles(t *testing.T, cache string) (metas, datas []string) {
	t.Helper()
	metas, err := filepath.Glob(filepath.Join(cache, "entries", "*.meta"))
	if err != nil {
		t.Fatal(err)
	}
	if datas, _ = filepath.Glob(filepath.Join(cache, "entries", "*.data")); len(datas) == 0 {
		t.Fatalf("no cached files in %s", cache)
	}
	return metas, datas
}

// crashKeepsDirty is TestMountCrashKeepsDirty with the writer's mount
// started with extra; it returns that mount's default cache directory.
// Besides the file whose upload fails it writes two that are uploaded
// at once.
func crashKeepsDirty(t *testing.T, extra ...string) string {
	c := newCluster(t, "--peer-timeout", "30s")
	a := c.mount("alice", extra...)
	b := c.mount("bob")
	a.sees(b)
	writeFile(t, filepath.Join(b.export, "keep.txt"), []byte("old content\n"))
	for _, name := range []string{"plain1.txt", "plain2.txt"} {
		writeFile(t, filepath.Join(a.dir(b), name), []byte("uploaded at close\n"))
	}

	target := filepath.Join(a.dir(b), "new.txt")
	// The peer stops answering between the write and the close.
	if err := writeThenStop(t, target, []byte("precious data\n"), b); err == nil {
		t.Fatal("close() reported success though the peer could not store the file")
	}
	// Old content on bob's side is untouched.
	sameFile(t, filepath.Join(b.export, "keep.txt"), []byte("old content\n"))

	a.p.kill() // crash: no chance to upload
	ensureUnmounted(t, a.mnt)
	syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	a.start()
	waitFor(t, 30*time.Second, "the pending file delivered to bob", func() bool {
		got, err := os.ReadFile(filepath.Join(b.export, "new.txt"))
		return err == nil && string(got) == "precious data\n"
	})
	return a.cache
}

// TestMountCacheBound: a small cache evicts clean copies and keeps dirty
// ones.
func TestMountCacheBound(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice", "--cache-size-mb", "2")
	b := c.mount("bob")
	a.sees(b)
	for i := 0; i < 8; i++ {
		writeFile(t, filepath.Join(b.export, "f"+string(rune('0'+i))), randBytes(1<<20))
	}
	for i := 0; i < 8; i++ {
		mustRun(t, "", "cat", filepath.Join(a.dir(b), "f"+string(rune('0'+i))))
	}
	// The copy cat read last is evicted once its handle is released,
	// which the kernel sends after cat's close returned.
	waitFor(t, 10*time.Second, "the cache back within its 2 MiB bound", func() bool {
		return dirSize(t, a.cache) <= 3<<20
	})
	// Dirty data is never evicted: 3 MiB written while bob stops answering.
	dirty := randBytes(3 << 20)
	defer syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	if err := writeThenStop(t, filepath.Join(a.dir(b), "dirty.bin"), dirty, b); err == nil {
		t.Fatal("close() reported success though the peer could not store the file")
	}
	for i := 0; i < 8; i++ { // more reads that want cache space
		runCmd(t, 10*time.Second, "", "cat", filepath.Join(a.dir(b), "f"+string(rune('0'+i))))
	}
	if size := dirSize(t, a.cache); size < 3<<20 {
		t.Fatalf("cache holds %d bytes: the unuploaded 3 MiB were dropped", size)
	}
	syscall.Kill(b.p.cmd.Process.Pid, syscall.SIGCONT)
	waitFor(t, 30*time.Second, "dirty file delivered", func() bool {
		got, err := os.ReadFile(filepath.Join(b.export, "dirty.bin"))
		return err == nil && bytes.Equal(got, dirty)
	})
}

// writeThenStop writes data to path from a child process, SIGSTOPs the
// peer that stores it, then closes the file; it returns close()'s error.
func writeThenStop(t *testing.T, path string, data []byte, stopped *node) error {
	t.Helper()
	dataFile := filepath.Join(t.TempDir(), "data")
	writeFile(t, dataFile, data)
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=write-wait-close", "PEERFS_E2E_DATA_FILE="+dataFile)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("written\n"))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "written\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer: %q %v %s", line, err, stderr.String())
	}
	if err := syscall.Kill(stopped.p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	err := cmd.Wait()
	if err != nil && !strings.Contains(stderr.String(), "input/output error") {
		t.Fatalf("close failed, but not with EIO: %s", stderr.String())
	}
	return err
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
