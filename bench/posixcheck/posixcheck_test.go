package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorker(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// TestLocalDirectoryPassesEverything: on a local directory every case
// passes; a case that fails here is wrong, not the filesystem.
func TestLocalDirectoryPassesEverything(t *testing.T) {
	dir := t.TempDir()
	// The test users must reach it: t.TempDir's directories are 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var out, errs bytes.Buffer
	code := run([]string{dir}, &out, &errs)
	if code != 0 {
		t.Fatalf("posixcheck on a local directory exited %d:\n%s%s", code, out.String(), errs.String())
	}
	if os.Geteuid() != 0 && !strings.Contains(out.String(), "skipped") {
		t.Fatal("not root, yet no case was skipped")
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		want string
		r    result
		vars map[string]string
		ok   bool
	}{
		{"0", result{Value: "0"}, nil, true},
		{"0", result{Errno: "EPERM"}, nil, false},
		{"EPERM", result{Errno: "EPERM"}, nil, true},
		{"ENOTEMPTY|EEXIST", result{Errno: "EEXIST"}, nil, true},
		{"ENOTEMPTY|EEXIST", result{Value: "0"}, nil, false},
		{"0644", result{Value: "0644"}, nil, true},
		{"0644", result{Value: "0755"}, nil, false},
		{"%3x", result{Value: "xxx"}, nil, true},
		{"ok", result{Value: "anything"}, nil, true},
		{"ok", result{Errno: "ENOENT"}, nil, false},
		{"*", result{Errno: "ENOENT"}, nil, true},
		{"*", result{Err: "worker gone"}, nil, true},
		{"0", result{Err: "worker gone"}, nil, false},
		{">$t", result{Value: "10"}, map[string]string{"t": "9"}, true},
		{">$t", result{Value: "9"}, map[string]string{"t": "9"}, false},
		{">$t", result{Value: "10"}, nil, false}, // $t unset
		{"<=$t", result{Value: "9"}, map[string]string{"t": "9"}, true},
		{"=$U", result{Value: "54321"}, map[string]string{"U": "54321"}, true},
		{"!=$i", result{Value: "5"}, map[string]string{"i": "5"}, false},
		{">100", result{Value: "1000"}, nil, true}, // numeric, not string, order
		{"=abc", result{Value: "abc"}, nil, true},
		{">abc", result{Value: "abd"}, nil, false}, // no order between strings
	} {
		vars := tt.vars
		if vars == nil {
			vars = map[string]string{}
		}
		if err := check(tt.want, tt.r, vars); (err == nil) != tt.ok {
			t.Errorf("check(%q, %v) = %v, want ok=%v", tt.want, tt.r, err, tt.ok)
		}
	}
	vars := map[string]string{}
	if err := check("$x", result{Value: "42"}, vars); err != nil || vars["x"] != "42" {
		t.Errorf("check($x) kept %q, %v", vars["x"], err)
	}
}

func TestParseStepAndExpand(t *testing.T) {
	s, err := parseStep("EACCES @u open f O_RDONLY")
	if err != nil || s.want != "EACCES" || s.user != "u" || s.op != "open" || len(s.args) != 2 {
		t.Fatalf("parseStep = %+v, %v", s, err)
	}
	for _, bad := range []string{"", "0", "0 @x open f O_RDONLY", "0 @u", "0 nosuchcall f"} {
		if _, err := parseStep(bad); err == nil {
			t.Errorf("parseStep(%q) accepted", bad)
		}
	}
	vars := map[string]string{"U": "7"}
	for in, want := range map[string]string{"$U": "7", "%3": "nnn", "%2a/$U": "aa/7", "''": "", "plain": "plain"} {
		if got, err := expand(in, vars); err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := expand("$nope", vars); err == nil {
		t.Error("expand of an unset variable succeeded")
	}
	if err := validate(allCases()); err != nil {
		t.Fatal(err)
	}
}
