package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A testCase is a short script run in a fresh directory of its own. It
// fails at its first step whose result is not the one wanted; the steps
// after that are not run (they would only repeat the first failure).
type testCase struct {
	group, name string
	steps       []string
}

// id is how reports and -run name the case: "group/name".
func (c testCase) id() string { return c.group + "/" + c.name }

// tc builds a case.
func tc(group, name string, steps ...string) testCase {
	return testCase{group: group, name: name, steps: steps}
}

// A step is one line of a case: what is wanted, who runs the call, and
// the call.
//
//	WANT [@USER] OP ARGS...
//
// WANT is one of
//
//	0            the call succeeds (a call without a value answers "0")
//	EACCES       the call fails with this errno; "ENOTEMPTY|EEXIST" allows either
//	0644, dir... the call succeeds with exactly this value (stat fields, readlink...)
//	ok           the call succeeds, whatever its value
//	*            anything, failure included (cleanup that may or may not apply)
//	$x           the call succeeds; its value is kept as $x for later steps
//	=$x !=$x <$x <=$x >$x >=$x   the call succeeds and its value compares so
//	             with $x (numerically when both are integers); also =5, >0...
//
// USER is u, v or w (the test users, see users) or absent (root, or
// whoever runs posixcheck). In ARGS, $x is replaced by a kept value (and
// $U, $V, $W, $G, $G2, $G3 by the test users' ids), and %N or %Nc by N
// copies of the letter c ("n" if none): a name of N bytes; ” is an
// empty argument.
type step struct {
	want string
	user string
	op   string
	args []string
}

// parseStep splits a step line. Its arguments are expanded later, when
// the variables they name are known.
func parseStep(line string) (step, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return step{}, fmt.Errorf("step %q: want WANT [@USER] OP ARGS", line)
	}
	s := step{want: f[0]}
	f = f[1:]
	if u, ok := strings.CutPrefix(f[0], "@"); ok {
		if _, known := users[u]; !known {
			return step{}, fmt.Errorf("step %q: unknown user @%s", line, u)
		}
		s.user = u
		f = f[1:]
		if len(f) == 0 {
			return step{}, fmt.Errorf("step %q: no call after @%s", line, u)
		}
	}
	if _, known := ops[f[0]]; !known {
		return step{}, fmt.Errorf("step %q: unknown call %q", line, f[0])
	}
	s.op, s.args = f[0], f[1:]
	return s, nil
}

var (
	longName = regexp.MustCompile(`%(\d+)([a-z]?)`)
	varRef   = regexp.MustCompile(`\$[A-Za-z][A-Za-z0-9]*`)
)

// expand replaces variables and long-name shorthands in an argument;
// ” is the empty string.
func expand(arg string, vars map[string]string) (string, error) {
	if arg == "''" {
		return "", nil
	}
	var missing string
	arg = varRef.ReplaceAllStringFunc(arg, func(v string) string {
		val, ok := vars[v[1:]]
		if !ok {
			missing = v
		}
		return val
	})
	if missing != "" {
		return "", fmt.Errorf("%s is not set", missing)
	}
	return expandNames(arg), nil
}

// expandNames replaces the long-name shorthands %N and %Nc.
func expandNames(s string) string {
	return longName.ReplaceAllStringFunc(s, func(m string) string {
		sub := longName.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[1])
		c := sub[2]
		if c == "" {
			c = "n"
		}
		return strings.Repeat(c, n)
	})
}

// A result is what a worker answers for one call: a value ("0" for calls
// without one) or an errno's name, or a failure of the harness itself
// (a worker that died, a call that did not answer in time).
type result struct {
	Value string `json:"value,omitempty"`
	Errno string `json:"errno,omitempty"`
	Err   string `json:"error,omitempty"`
}

func (r result) String() string {
	switch {
	case r.Err != "":
		return "error: " + r.Err
	case r.Errno != "":
		return r.Errno
	default:
		return r.Value
	}
}

// check reports whether r is what want asks for, keeping a value in vars
// when want says so; the error says why not.
func check(want string, r result, vars map[string]string) error {
	if want == "*" {
		return nil
	}
	if r.Err != "" {
		return fmt.Errorf("%s, want %s", r, want)
	}
	if r.Errno != "" {
		for _, alt := range strings.Split(want, "|") {
			if alt == r.Errno {
				return nil
			}
		}
		return fmt.Errorf("%s, want %s", r.Errno, want)
	}
	if want == "ok" {
		return nil
	}
	if name, ok := strings.CutPrefix(want, "$"); ok {
		vars[name] = r.Value
		return nil
	}
	for _, rel := range []string{"<=", ">=", "!=", "<", ">", "="} {
		rhs, ok := strings.CutPrefix(want, rel)
		if !ok {
			continue
		}
		if v, isVar := strings.CutPrefix(rhs, "$"); isVar {
			val, set := vars[v]
			if !set {
				return fmt.Errorf("$%s is not set", v)
			}
			rhs = val
		}
		if compare(r.Value, rel, rhs) {
			return nil
		}
		return fmt.Errorf("%s, want %s %s", short(r.Value), rel, rhs)
	}
	if r.Value == expandNames(want) {
		return nil
	}
	return fmt.Errorf("%s, want %s", short(r.Value), want)
}

// compare applies a relation, numerically when both sides are integers.
func compare(a, rel, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA != nil || errB != nil {
		switch rel {
		case "=":
			return a == b
		case "!=":
			return a != b
		}
		return false
	}
	switch rel {
	case "<=":
		return x <= y
	case ">=":
		return x >= y
	case "!=":
		return x != y
	case "<":
		return x < y
	case ">":
		return x > y
	}
	return x == y
}

// short elides the middle of a long value (a long link target, say).
func short(s string) string {
	if len(s) <= 60 {
		return s
	}
	return fmt.Sprintf("%s...%s (%d bytes)", s[:20], s[len(s)-20:], len(s))
}
