// Command posixcheck runs a few hundred small POSIX assertions against a
// directory and prints the ones that fail and how many: open and creat
// flags and errnos, unlink, rename, mkdir, rmdir, truncate, ftruncate,
// utimensat, link, symlink, readlink, chmod, chown, mkfifo, mknod, and
// access by other users, in the spirit of pjdfstest's core subset (but
// peerfs's own code). On a local directory every case passes; on a peer
// folder the count is what issue #12 brings down.
//
//	go run ./bench/posixcheck DIR            # as root: cases with other users need it
//	go run ./bench/posixcheck -run 'rename/' -v DIR
//	go run ./bench/posixcheck -list
//	bench/posix.sh                            # a local dir, a peer folder (and bindfs, sshfs)
//
// Each case runs in a fresh directory under DIR/.posixcheck-*, removed
// at the end (-keep keeps it). The calls run in worker processes (this
// program re-executed), one as the caller and one per test user, so a
// hung call on a FUSE mount is killed after -timeout and counted as a
// failure. Exit status: 0 if every case passed, 1 if some failed, 2 if
// the run could not start.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"time"
)

func main() {
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorker(os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command: args without the program name.
func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("posixcheck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	runRE := fl.String("run", "", "run only the cases whose group/name matches this regular expression")
	verbose := fl.Bool("v", false, "print every case, passed or not")
	list := fl.Bool("list", false, "list the cases and exit")
	keep := fl.Bool("keep", false, "keep the work directory")
	timeout := fl.Duration("timeout", 10*time.Second, "the longest one call may take")
	uid := fl.Uint("uid", 54321, "the test users are this uid and the next two (running as root)")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: posixcheck [flags] DIR\n\nRuns POSIX assertions in a fresh directory under DIR and reports the failures.")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	re, err := regexp.Compile(*runRE)
	if err != nil {
		fmt.Fprintln(stderr, "posixcheck: -run:", err)
		return 2
	}
	cases := allCases()
	if err := validate(cases); err != nil {
		fmt.Fprintln(stderr, "posixcheck:", err)
		return 2
	}
	cases = slices.DeleteFunc(cases, func(c testCase) bool { return !re.MatchString(c.id()) })
	if *list {
		for _, c := range cases {
			fmt.Fprintln(stdout, c.id())
		}
		return 0
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return 2
	}
	r, err := newRunner(fl.Arg(0), uint32(*uid), *timeout, selfWorker)
	if err != nil {
		fmt.Fprintln(stderr, "posixcheck:", err)
		return 2
	}
	defer r.close(*keep, stderr)
	if note := r.reachable(); note != "" {
		fmt.Fprintln(stdout, "note:", note)
	}
	rep := r.runAll(cases, stdout, *verbose)
	rep.print(stdout, fl.Arg(0))
	if rep.failed() > 0 {
		return 1
	}
	return 0
}

// validate parses every step of every case, so a typo in a case is a
// usage error, not a failure counted against the directory.
func validate(cases []testCase) error {
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.id()] {
			return fmt.Errorf("two cases are named %s", c.id())
		}
		seen[c.id()] = true
		for _, line := range c.steps {
			s, err := parseStep(line)
			if err != nil {
				return fmt.Errorf("%s: %w", c.id(), err)
			}
			if o := ops[s.op]; len(s.args) < o.min || len(s.args) > o.max {
				return fmt.Errorf("%s: step %q: usage: %s", c.id(), line, o.usage)
			}
		}
	}
	return nil
}
