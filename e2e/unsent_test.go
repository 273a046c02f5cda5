package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRefusedUploadDoesNotPoisonFsync: a file whose upload its peer
// refuses for good (its folder was removed behind the writer's back)
// fails its own close, and nothing else: fsync of other files, an
// editor's save and unmount go on as usual, also after a restart of the
// mount. The data is kept and readable under .peerfs/unsent, listed by
// peerfs status, and `peerfs unsent retry` stores it once the folder is
// back.
func TestRefusedUploadDoesNotPoisonFsync(t *testing.T) {
	c := newCluster(t)
	a := c.mount("a", "--drain-timeout", "30s")
	bob := c.mount("bob")
	a.sees(bob)
	if err := os.Mkdir(filepath.Join(a.dir(bob), "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Open, write, then lose the folder, then close.
	w := startWriteWaitClose(t, filepath.Join(a.dir(bob), "d", "f"), []byte("precious\n"))
	if err := os.Remove(filepath.Join(bob.export, "d")); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("close of the refused file: %v, want ENOENT", err)
	}

	healthy := func(round string) {
		t.Helper()
		if out, err := helper(t, "write-fsync", filepath.Join(a.dir(bob), "g"), []byte("fine "+round+"\n")); err != nil {
			t.Fatalf("%s: fsync of an unrelated file: %v\n%s", round, err, out)
		}
		t.Setenv("PEERFS_E2E_DATA", "")
		if out, err := helper(t, "editor-save", filepath.Join(a.dir(bob), "h"), []byte("saved "+round+"\n")); err != nil {
			t.Fatalf("%s: an editor's save: %v\n%s", round, err, out)
		}
	}
	healthy("before a restart")

	// Kept, readable, and reported.
	kept := filepath.Join(a.mnt, ".peerfs", "unsent", "bob", "d", "f")
	if b, err := os.ReadFile(kept); err != nil || string(b) != "precious\n" {
		t.Fatalf("%s: %q %v", kept, b, err)
	}
	control := filepath.Join(a.cache, "control.sock")
	status := mustRun(t, "", bin, "status", "--control", control)
	if !strings.Contains(status, "unsent") || !strings.Contains(status, "bob/d/f") {
		t.Errorf("peerfs status does not tell of the unsent copy:\n%s", status)
	}

	// Unmount does not wait out the drain timeout for it.
	began := time.Now()
	a.p.stop(t)
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("unmount took %v (drain timeout 30s): it waited for the refused file", took)
	}
	a.start()
	a.sees(bob)
	healthy("after a restart")
	list := mustRun(t, "", bin, "unsent", "--control", control)
	if !strings.Contains(list, "bob/d/f") || !strings.Contains(list, "no such directory") {
		t.Errorf("peerfs unsent after a restart:\n%s", list)
	}

	// The folder is back: a retry stores it.
	if err := os.Mkdir(filepath.Join(bob.export, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", bin, "unsent", "--control", control, "retry", "bob/d/f")
	if b, err := os.ReadFile(filepath.Join(bob.export, "d", "f")); err != nil || string(b) != "precious\n" {
		t.Fatalf("after retry: %q %v", b, err)
	}
	if _, err := os.Stat(kept); !os.IsNotExist(err) {
		t.Errorf("still among the unsent copies after the retry: %v", err)
	}
}

// TestPendingUploadStaysInItsCluster: a file written for peer bob whose
// upload is still pending when the mount is restarted into another
// cluster (another secret, another tracker) is not delivered to that
// cluster's bob, another export that happens to have the name: it is set
// aside, and bob's export stays as it was.
func TestPendingUploadStaysInItsCluster(t *testing.T) {
	first := newCluster(t)
	a := first.mount("a", "--drain-timeout", "1s")
	bob := first.mount("bob")
	a.sees(bob)
	// Written while bob answers; closed (the upload) once it does not.
	w := startWriteWaitClose(t, filepath.Join(a.dir(bob), "notes.txt"), []byte("for the first cluster's bob\n"))
	if err := bob.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err == nil {
		t.Fatal("close with bob stopped succeeded")
	}
	a.p.stop(t)
	bob.p.cmd.Process.Signal(syscall.SIGCONT)
	bob.p.stop(t)

	second := newClusterEnv(t, []string{"PEERFS_SECRET=another-" + clusterSecret})
	bob2 := second.mount("bob")
	a.c = second
	a.start() // the same cache directory, now in the second cluster
	a.sees(bob2)
	control := filepath.Join(a.cache, "control.sock")
	delivered := func() bool {
		_, err := os.Stat(filepath.Join(bob2.export, "notes.txt"))
		return !os.IsNotExist(err)
	}
	waitFor(t, 20*time.Second, "the pending file set aside", func() bool {
		if delivered() {
			t.Fatal("the file pending for the first cluster's bob reached the second's")
		}
		out, _ := runCmd(t, 5*time.Second, "", bin, "unsent", "--control", control)
		return strings.Contains(out, "bob/notes.txt")
	})
	if delivered() {
		t.Fatal("the file pending for the first cluster's bob reached the second's")
	}
	if b, err := os.ReadFile(filepath.Join(a.mnt, ".peerfs", "unsent", "bob", "notes.txt")); err != nil || string(b) != "for the first cluster's bob\n" {
		t.Errorf("the kept copy: %q %v", b, err)
	}
}

// writeWaitClose is a child that has opened a file and written to it, and
// closes it when told.
type writeWaitClose struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
}

// startWriteWaitClose has a child open path, write data and wait.
func startWriteWaitClose(t *testing.T, path string, data []byte) *writeWaitClose {
	t.Helper()
	w := &writeWaitClose{cmd: exec.Command(os.Args[0], "-test.run=^$", path)}
	w.cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=write-wait-close", "PEERFS_E2E_DATA="+string(data))
	w.stdin, _ = w.cmd.StdinPipe()
	stdout, _ := w.cmd.StdoutPipe()
	w.cmd.Stderr = &w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	line := make([]byte, 8)
	if n, _ := io.ReadFull(stdout, line); string(line[:n]) != "written\n" {
		t.Fatalf("writer of %s: %q %s", path, line[:n], w.out.String())
	}
	return w
}

// close has the child close the file and returns what close said.
func (w *writeWaitClose) close() error {
	w.stdin.Close()
	if err := w.cmd.Wait(); err != nil {
		return errors.New(strings.TrimSpace(w.out.String()))
	}
	return nil
}
