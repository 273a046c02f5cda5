package fuseserve

// Whether the thread that made a request is being killed (inflight's
// rule for an INTERRUPT, server.go).

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// fatalSignalPending reports whether thread pid (a thread id, as a FUSE
// request's header gives it) has a fatal signal pending: when a process
// gets a signal that kills it, the kernel marks SIGKILL pending on each
// of its threads (kernel/signal.c, complete_signal), which
// /proc/PID/status shows in SigPnd. False if that cannot be read (a pid
// of another namespace, the thread gone).
func fatalSignalPending(pid uint32) bool {
	if pid == 0 {
		return false
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	return sigkillPending(f)
}

// sigkillPending reports whether the status text of /proc/PID/status in
// r says SIGKILL is pending for the thread (SigPnd) or its process
// (ShdPnd).
func sigkillPending(r io.Reader) bool {
	const sigkill = 9
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "SigPnd" && key != "ShdPnd") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err == nil && mask&(1<<(sigkill-1)) != 0 {
			return true
		}
	}
	return false
}
