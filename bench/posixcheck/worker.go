package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// workerEnv, set in a process's environment, makes it a worker: it reads
// calls (JSON arrays of strings), one a line, and answers each with one
// line (a JSON result).
const workerEnv = "POSIXCHECK_WORKER"

// runWorker is a worker's life: the user it is to be (the value of
// workerEnv: "self", or "UID:GID:GROUP,GROUP..."), umask 0 so that modes
// are exactly those the steps give, then one call per line until its
// input ends.
func runWorker(in io.Reader, out io.Writer) int {
	if err := become(os.Getenv(workerEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "posixcheck worker:", err)
		return 2
	}
	unix.Umask(0)
	w := &worker{fds: map[string]int{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var c []string
		r := result{Err: "bad call line"}
		if json.Unmarshal(sc.Bytes(), &c) == nil {
			r = w.call(c)
		}
		if err := enc.Encode(r); err != nil {
			return 1
		}
	}
	return 0
}

// become switches the process to the user who (setgroups, setresgid,
// setresuid: in Go these apply to every thread). A worker drops its
// rights itself rather than being started as the user: that user may
// not be allowed to execute this program where it lies (a go build or
// go test cache is private to root).
func become(who string) error {
	if who == "self" {
		return nil
	}
	var uid, gid int
	var groups string
	if _, err := fmt.Sscanf(strings.ReplaceAll(who, ":", " "), "%d %d %s", &uid, &gid, &groups); err != nil {
		return fmt.Errorf("%s=%q: %w", workerEnv, who, err)
	}
	var gids []int
	for _, g := range strings.Split(groups, ",") {
		var n int
		if _, err := fmt.Sscan(g, &n); err != nil {
			return fmt.Errorf("%s=%q: %w", workerEnv, who, err)
		}
		gids = append(gids, n)
	}
	if err := syscall.Setgroups(gids); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	return nil
}

// selfWorker is the command of a worker: this program, re-executed, to
// become who (see become).
//
// The worker runs without the Go runtime's preemption signals: a signal
// that reaches a thread waiting in a FUSE request makes the kernel send
// the daemon an INTERRUPT, and a daemon may then fail the call with
// EINTR (peerfs did, for mkdir and chmod among others, until it let
// only a caller being killed interrupt a request). A C test program gets no such
// signals; the count is about the filesystem, not the language of its
// harness.
func selfWorker(who string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe)
	godebug := "asyncpreemptoff=1"
	if old := os.Getenv("GODEBUG"); old != "" {
		godebug = old + "," + godebug
	}
	cmd.Env = append(os.Environ(), workerEnv+"="+who, "GODEBUG="+godebug)
	return cmd
}

// users are the test users a step can run as, besides the caller (root),
// as workerEnv values (see become), from the first test uid b: u owns
// files, v shares u's primary group, w shares nothing. u is also in the
// group $G2, so that it may chgrp to it.
var users = map[string]func(b uint32) string{
	"u": func(b uint32) string { return fmt.Sprintf("%d:%d:%d,%d", b, b, b, b+1) },
	"v": func(b uint32) string { return fmt.Sprintf("%d:%d:%d", b+1, b, b) },
	"w": func(b uint32) string { return fmt.Sprintf("%d:%d:%d", b+2, b+2, b+2) },
}

// userVars are the ids the steps name: $U $V $W (uids), $G (the primary
// group of u and v), $G2 (u's other group), $G3 (w's group).
func userVars(b uint32) map[string]string {
	vars := map[string]string{}
	for i, name := range []string{"U", "V", "W"} {
		vars[name] = fmt.Sprint(b + uint32(i))
	}
	vars["G"], vars["G2"], vars["G3"] = fmt.Sprint(b), fmt.Sprint(b+1), fmt.Sprint(b+2)
	return vars
}

// workerProc is a running worker.
type workerProc struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	dead bool // killed after a timeout; the runner starts another
}

func startWorker(newCmd func(who string) *exec.Cmd, who string) (*workerProc, error) {
	cmd := newCmd(who)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a worker: %w", err)
	}
	return &workerProc{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

// call sends one call and waits up to timeout for its answer; a worker
// that does not answer in time is killed.
func (p *workerProc) call(c []string, timeout time.Duration) result {
	line, err := json.Marshal(c)
	if err != nil {
		return result{Err: err.Error()}
	}
	if _, err := p.in.Write(append(line, '\n')); err != nil {
		p.dead = true
		return result{Err: "worker gone: " + err.Error()}
	}
	answer := make(chan result, 1)
	go func() {
		var r result
		b, err := p.out.ReadBytes('\n')
		if err != nil {
			r = result{Err: "worker gone: " + err.Error()}
		} else if err := json.Unmarshal(b, &r); err != nil {
			r = result{Err: fmt.Sprintf("worker answered %q", b)}
		}
		answer <- r
	}()
	select {
	case r := <-answer:
		if strings.HasPrefix(r.Err, "worker gone") {
			p.dead = true
		}
		return r
	case <-time.After(timeout):
		p.dead = true
		_ = p.cmd.Process.Kill()
		select {
		case <-answer:
		case <-time.After(5 * time.Second):
			// A process stuck in the kernel; its reader goroutine
			// stays until it dies.
		}
		return result{Err: fmt.Sprintf("no answer within %v; the worker was killed", timeout)}
	}
}

// stop ends the worker: its input closes, it exits.
func (p *workerProc) stop() {
	p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
