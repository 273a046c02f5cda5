package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMetadataNotInterrupted: a signal reaching a thread that waits in a
// FUSE request makes the kernel send the mount an INTERRUPT, and Go
// programs get signals all the time (SIGURG, the runtime's preemption).
// A local disk never fails mkdir, chmod, rename or unlink with EINTR, so
// no program retries them (package os does, most C programs do not): a
// peer folder must not either. The calls are raw system calls, which do
// not retry EINTR, on a thread that another goroutine keeps signalling.
func TestMetadataNotInterrupted(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	a.sees(b)
	dir := a.dir(b)

	done := make(chan struct{})
	tid := make(chan int, 1)
	var wg sync.WaitGroup
	var failures []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		defer close(done)
		failures = interruptedCalls(dir, 100)
	}()
	signalled := signalThread(<-tid, done)
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if n := <-signalled; n == 0 {
		t.Error("no signal was sent: the test tested nothing")
	} else {
		t.Logf("%d signals sent to the calling thread", n)
	}
}

// signalThread sends SIGURG (which the Go runtime takes as a preemption
// request and otherwise ignores) to thread tid of this process until done
// is closed, and then says how many it sent.
func signalThread(tid int, done <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				out <- n
				return
			default:
			}
			if unix.Tgkill(unix.Getpid(), tid, unix.SIGURG) == nil {
				n++
			}
			runtime.Gosched()
		}
	}()
	return out
}

// interruptedCalls runs rounds of metadata system calls in dir and
// returns those that failed (with EINTR or otherwise), at most ten.
func interruptedCalls(dir string, rounds int) []string {
	var failures []string
	call := func(what string, err error) {
		if err != nil && len(failures) < 10 {
			if errors.Is(err, syscall.EINTR) {
				what += " (EINTR: interrupted by a signal)"
			}
			failures = append(failures, fmt.Sprintf("%s: %v", what, err))
		}
	}
	for i := range rounds {
		d := filepath.Join(dir, fmt.Sprintf("d%d", i))
		l := filepath.Join(dir, fmt.Sprintf("l%d", i))
		call("mkdir "+d, syscall.Mkdir(d, 0o755))
		call("chmod "+d, syscall.Chmod(d, 0o700))
		call("symlink "+l, syscall.Symlink("target", l))
		call("rename "+l, syscall.Rename(l, l+"x"))
		call("unlink "+l+"x", syscall.Unlink(l+"x"))
		call("rmdir "+d, syscall.Rmdir(d))
	}
	return failures
}
