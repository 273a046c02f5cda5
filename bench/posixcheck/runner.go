package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

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
