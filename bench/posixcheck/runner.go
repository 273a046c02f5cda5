package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// EINTR (peerfs does, for mkdir and chmod among others). A C test
// program gets no such signals; the count is about the filesystem, not
// the language of its harness.
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

// runner runs cases in a work directory, one worker per user.
type runner struct {
	work    string // the work directory, DIR/.posixcheck-*
	base    uint32 // the first test uid
	timeout time.Duration
	newCmd  func(who string) *exec.Cmd // a worker that becomes who
	asRoot  bool
	workers map[string]*workerProc // by user; "" is the caller
}

func newRunner(dir string, base uint32, timeout time.Duration, newCmd func(who string) *exec.Cmd) (*runner, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	work, err := os.MkdirTemp(dir, ".posixcheck-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(work, 0o755); err != nil { // the test users enter it
		os.Remove(work)
		return nil, err
	}
	return &runner{work: work, base: base, timeout: timeout, newCmd: newCmd,
		asRoot: os.Geteuid() == 0, workers: map[string]*workerProc{}}, nil
}

// reachable says, if the test users cannot enter the work directory,
// what that means for the run.
func (r *runner) reachable() string {
	if !r.asRoot {
		return "not root: the cases with other users are skipped"
	}
	res := r.call("w", []string{"chdir", r.work})
	if res.Value == "0" {
		return ""
	}
	return fmt.Sprintf("the test users cannot enter %s (%s): every case with another user fails"+
		" (on a local directory: make its ancestors searchable, o+x; on a FUSE mount: allow_other)", r.work, res)
}

// call runs c as user, starting (or restarting) that user's worker.
func (r *runner) call(user string, c []string) result {
	p := r.workers[user]
	if p == nil || p.dead {
		if p != nil {
			go p.stop()
		}
		who := "self"
		if user != "" {
			who = users[user](r.base)
		}
		var err error
		if p, err = startWorker(r.newCmd, who); err != nil {
			return result{Err: err.Error()}
		}
		r.workers[user] = p
	}
	return p.call(c, r.timeout)
}

// outcome is how one case went.
type outcome struct {
	c       testCase
	err     error  // nil: passed
	skipped string // why it did not run
}

// runCase runs case number i in a fresh directory.
func (r *runner) runCase(i int, c testCase) outcome {
	parsed := make([]step, len(c.steps))
	for n, line := range c.steps {
		parsed[n], _ = parseStep(line) // validated before the run
		if parsed[n].user != "" && !r.asRoot {
			return outcome{c: c, skipped: "runs as another user: needs root"}
		}
	}
	dir := filepath.Join(r.work, fmt.Sprintf("%03d", i))
	if res := r.call("", []string{"mkdir", dir, "0755"}); res.Value != "0" {
		return outcome{c: c, err: fmt.Errorf("setup: mkdir %s: %s", dir, res)}
	}
	vars := userVars(r.base)
	vars["D"] = dir
	entered := map[string]bool{}
	defer func() {
		for user := range entered {
			r.call(user, []string{"reset"})
		}
	}()
	for n, s := range parsed {
		if !entered[s.user] {
			entered[s.user] = true
			if res := r.call(s.user, []string{"chdir", dir}); res.Value != "0" {
				return outcome{c: c, err: fmt.Errorf("%s cannot enter the case's directory: %s", who(s.user), res)}
			}
		}
		call := []string{s.op}
		for _, a := range s.args {
			x, err := expand(a, vars)
			if err != nil {
				return outcome{c: c, err: fmt.Errorf("step %d `%s`: %w", n+1, c.steps[n], err)}
			}
			call = append(call, x)
		}
		if err := check(s.want, r.call(s.user, call), vars); err != nil {
			return outcome{c: c, err: fmt.Errorf("step %d `%s`: %w", n+1, c.steps[n], err)}
		}
	}
	return outcome{c: c}
}

func who(user string) string {
	if user == "" {
		return "the caller"
	}
	return "user " + user
}

// runAll runs the cases in order, printing each failure as it happens
// (and each pass, if verbose).
func (r *runner) runAll(cases []testCase, w io.Writer, verbose bool) report {
	rep := report{start: time.Now()}
	for i, c := range cases {
		o := r.runCase(i, c)
		rep.outcomes = append(rep.outcomes, o)
		switch {
		case o.skipped != "":
			if verbose {
				fmt.Fprintf(w, "SKIP %s: %s\n", c.id(), o.skipped)
			}
		case o.err != nil:
			fmt.Fprintf(w, "FAIL %s: %v\n", c.id(), o.err)
		case verbose:
			fmt.Fprintf(w, "ok   %s\n", c.id())
		}
	}
	rep.took = time.Since(rep.start)
	return rep
}

// close stops the workers and removes the work directory (unless keep).
func (r *runner) close(keep bool, stderr io.Writer) {
	for _, p := range r.workers {
		p.stop()
	}
	if keep {
		fmt.Fprintln(stderr, "posixcheck: kept", r.work)
		return
	}
	if err := os.RemoveAll(r.work); err != nil {
		fmt.Fprintln(stderr, "posixcheck: removing the work directory:", err)
	}
}

// report is the result of a run.
type report struct {
	start    time.Time
	took     time.Duration
	outcomes []outcome
}

func (rep report) failed() int {
	n := 0
	for _, o := range rep.outcomes {
		if o.err != nil {
			n++
		}
	}
	return n
}

// print writes a table of the groups, then the total line:
//
//	posixcheck DIR: N cases, F failed, S skipped (took T)
func (rep report) print(w io.Writer, dir string) {
	type counts struct{ cases, failed, skipped int }
	by := map[string]*counts{}
	var groups []string
	skipped := 0
	for _, o := range rep.outcomes {
		g := by[o.c.group]
		if g == nil {
			g = &counts{}
			by[o.c.group] = g
			groups = append(groups, o.c.group)
		}
		g.cases++
		switch {
		case o.skipped != "":
			g.skipped++
			skipped++
		case o.err != nil:
			g.failed++
		}
	}
	slices.Sort(groups)
	fmt.Fprintf(w, "\n%-10s %6s %6s\n", "group", "cases", "failed")
	for _, g := range groups {
		fmt.Fprintf(w, "%-10s %6d %6d\n", g, by[g].cases, by[g].failed)
	}
	fmt.Fprintf(w, "posixcheck %s: %d cases, %d failed", dir, len(rep.outcomes), rep.failed())
	if skipped > 0 {
		fmt.Fprintf(w, ", %d skipped (not root)", skipped)
	}
	fmt.Fprintf(w, " (took %v)\n", rep.took.Round(time.Millisecond))
}
