package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// runHelper performs one filesystem operation in a child process, so that
// syscalls on a mount never run inside a process that could deadlock with
// its FUSE server. It prints the outcome and returns the exit code.
//
//	editor-save PATH   write PATH~tmp, fsync, close, rename over PATH (content from PEERFS_E2E_DATA)
//	write-fsync PATH   open PATH, write, fsync, report, wait for stdin EOF, close
//	write-wait-close PATH  open PATH, write, report, wait for stdin EOF, close
//	open-wait-close PATH   open PATH (O_TRUNC), report, wait for a line, write, close, report
//	read PATH          read PATH to stdout, reporting the error
//	getcwd PATH        in PATH (reported), call getcwd(2) 120 times 50 ms apart, print the failures
//	start-and-die PATH start the peerfs binary PATH as a tracker (daemonAttr), print its pid, exit
func runHelper(kind, path string) int {
	data := []byte(os.Getenv("PEERFS_E2E_DATA"))
	if f := os.Getenv("PEERFS_E2E_DATA_FILE"); f != "" {
		var err error
		if data, err = os.ReadFile(f); err != nil {
			return fail(err)
		}
	}
	switch kind {
	case "editor-save":
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
		f, err := os.Create(tmp)
		if err != nil {
			return fail(err)
		}
		if _, err := f.Write(data); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("fsync: %w", err))
		}
		if err := f.Close(); err != nil {
			return fail(fmt.Errorf("close: %w", err))
		}
		if err := os.Rename(tmp, path); err != nil {
			return fail(err)
		}
		return 0
	case "write-fsync":
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fail(err)
		}
		if _, err := f.Write(data); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("fsync: %w", err))
		}
		fmt.Println("fsynced")
		// Keep the file open until the test has looked from elsewhere.
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		if err := f.Close(); err != nil {
			return fail(fmt.Errorf("close: %w", err))
		}
		return 0
	case "write-wait-close":
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fail(err)
		}
		if _, err := f.Write(data); err != nil {
			return fail(err)
		}
		fmt.Println("written")
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		if err := f.Close(); err != nil {
			return fail(fmt.Errorf("close: %w", err))
		}
		return 0
	case "open-wait-write":
		// Open first; write, fsync and close only when told (a line on
		// stdin), so that several writers can start from one version.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fail(err)
		}
		fmt.Println("opened")
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		if _, err := f.Write(data); err != nil {
			return fail(err)
		}
		serr := f.Sync()
		cerr := f.Close()
		fmt.Printf("fsync=%v close=%v\n", serr, cerr)
		return 0
	case "open-wait-close":
		// Open (truncating) first; write and close only when told, so
		// that several writers start from one version.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return fail(err)
		}
		fmt.Println("opened")
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		if _, err := f.Write(data); err != nil {
			return fail(err)
		}
		fmt.Printf("close=%v\n", f.Close())
		return 0
	case "read":
		b, err := os.ReadFile(path)
		if err != nil {
			return fail(err)
		}
		os.Stdout.Write(b)
		return 0
	case "getcwd":
		// In path, getcwd(2) every 50 ms for 6 s: the failures counted.
		if err := os.Chdir(path); err != nil {
			return fail(err)
		}
		fmt.Println("in")
		fails := 0
		for range 120 {
			if _, err := syscall.Getwd(); err != nil {
				fails++
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Println(fails)
		return 0
	case "start-and-die":
		// PATH is the peerfs binary: a tracker started as the harness
		// starts every daemon, its pid reported, and this process gone
		// at once, with nothing cleaned up (as go test's timeout does).
		cmd := exec.Command(path, "tracker", "--listen", "127.0.0.1:0", "--insecure", "--log-format", "json")
		cmd.SysProcAttr = daemonAttr()
		logs, err := cmd.StderrPipe()
		if err != nil {
			return fail(err)
		}
		if err := cmd.Start(); err != nil {
			return fail(err)
		}
		// Serving first: a tracker that failed to start ends anyway.
		lines := bufio.NewScanner(logs)
		for lines.Scan() {
			if strings.Contains(lines.Text(), `"tracker ready"`) {
				fmt.Printf("pid %d\n", cmd.Process.Pid)
				return 0
			}
		}
		return fail(fmt.Errorf("the tracker ended before it was ready: %v", cmd.Wait()))
	}
	return fail(fmt.Errorf("unknown helper %q", kind))
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "ERROR:", err)
	return 1
}
