package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConcurrentWritersNeverMix: three mounts open the same file in a
// fourth peer's folder, then write and fsync at once. The file ends as one
// writer's complete content; every other writer is told (fsync or close
// fails with ESTALE) and its data is kept whole as a conflict copy beside
// it: no acknowledged write vanishes, nothing is mixed.
func TestConcurrentWritersNeverMix(t *testing.T) {
	c := newCluster(t)
	store := c.mount("store")
	writers := []*node{c.mount("w1"), c.mount("w2"), c.mount("w3")}
	for _, w := range writers {
		w.sees(store)
	}
	writeFile(t, filepath.Join(store.export, "doc.txt"), []byte("original\n"))

	type writer struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		out    *bufio.Reader
		data   []byte
		result string
	}
	ws := make([]*writer, len(writers))
	for i, w := range writers {
		data := bytes.Repeat([]byte(fmt.Sprintf("writer %d line\n", i+1)), 20000) // ~300 KB
		dataFile := filepath.Join(t.TempDir(), "data")
		writeFile(t, dataFile, data)
		cmd := exec.Command(os.Args[0], "-test.run=^$", filepath.Join(w.dir(store), "doc.txt"))
		cmd.Env = append(os.Environ(), "PEERFS_E2E_HELPER=open-wait-write", "PEERFS_E2E_DATA_FILE="+dataFile)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		ws[i] = &writer{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), data: data}
		if line, err := ws[i].out.ReadString('\n'); err != nil || line != "opened\n" {
			t.Fatalf("writer %d: %q %v", i+1, line, err)
		}
	}
	for _, w := range ws { // go
		w.stdin.Write([]byte("\n"))
	}
	for i, w := range ws {
		line, err := w.out.ReadString('\n')
		if err != nil {
			t.Fatalf("writer %d: %v", i+1, err)
		}
		w.result = strings.TrimSpace(line)
		w.cmd.Wait()
	}

	// Wait for everything to settle, then look at the store's export.
	var final []byte
	var copies map[string][]byte
	waitFor(t, 20*time.Second, "the file and its conflict copies", func() bool {
		final, _ = os.ReadFile(filepath.Join(store.export, "doc.txt"))
		copies = map[string][]byte{}
		entries, _ := os.ReadDir(store.export)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "doc.txt.conflict-") {
				copies[e.Name()], _ = os.ReadFile(filepath.Join(store.export, e.Name()))
			}
		}
		return len(copies) == len(ws)-1
	})
	winners, kept := 0, 0
	for i, w := range ws {
		ok := w.result == "fsync=<nil> close=<nil>"
		inFinal := bytes.Equal(final, w.data)
		inCopy := false
		for name, b := range copies {
			if bytes.Equal(b, w.data) {
				inCopy = true
				if !strings.Contains(name, writers[i].name) {
					t.Errorf("writer %d's data kept as %s, which does not name it", i+1, name)
				}
			}
		}
		switch {
		case inFinal && ok:
			winners++
		case inCopy && !ok && strings.Contains(w.result, "stale"):
			kept++
		default:
			t.Errorf("writer %d: result %q, in the file: %v, in a conflict copy: %v", i+1, w.result, inFinal, inCopy)
		}
	}
	if winners != 1 || kept != len(ws)-1 {
		t.Fatalf("%d winners and %d conflict copies, want 1 and %d (file now %d bytes)", winners, kept, len(ws)-1, len(final))
	}
}
