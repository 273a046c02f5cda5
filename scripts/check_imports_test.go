package scripts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckImportsCatchesViolations runs check-imports.sh on copies of the
// module: a faithful copy passes, and each copy with one planted import
// that breaks a rule fails, naming it.
func TestCheckImportsCatchesViolations(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping under -short: copies the module and runs the script nine times")
	}
	for _, tool := range []string{"go", "git", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := moduleFiles(t, root)

	t.Run("clean", func(t *testing.T) {
		t.Parallel()
		out, err := checkImports(t, copyModule(t, root, files))
		if err != nil {
			t.Fatalf("the module as it is breaks a rule (%v):\n%s", err, out)
		}
	})
	// Each copy gets the plants of one group; each plant must fail the
	// script with its own line (a line per broken rule and package).
	type plant struct {
		dir, pkg, imp string
		want          []string // in one line of the script's output
	}
	for name, plants := range map[string][]plant{
		"direct and transitive": {
			// An anchored pattern: net/http is net too.
			{"fusefs", "fusefs", "net/http", []string{"fusefs reaches ", " net/http "}},
			// net itself, which the logger's own dependencies include.
			{"cache", "cache", "net", []string{"cache reaches net "}},
			// Only through the standard library: a transitive rule.
			{"peerproto", "peerproto", "log/syslog", []string{"peerproto reaches net "}},
			{"tracker", "tracker", "github.com/kelseyhightower/envconfig", []string{"tracker imports github.com/kelseyhightower/envconfig (only cmd/peerfs may"}},
			{"remote", "remote", "bazil.org/fuse", []string{"remote imports bazil.org/fuse (only "}},
			{"shell", "shell", "github.com/peerfs/peerfs/export/jail", []string{"shell imports github.com/peerfs/peerfs/export/jail (only export may"}},
			{"export", "export", "github.com/peerfs/peerfs/peer", []string{"export imports github.com/peerfs/peerfs/peer ("}},
		},
		"logging in the codec": {
			{"peerproto", "peerproto", "github.com/rs/zerolog", []string{"peerproto reaches ", "github.com/rs/zerolog "}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := copyModule(t, root, files)
			for _, p := range plants {
				src := "package " + p.pkg + "\n\nimport _ \"" + p.imp + "\"\n"
				if err := os.WriteFile(filepath.Join(dir, p.dir, "zz_planted.go"), []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := checkImports(t, dir)
			if err == nil {
				t.Fatalf("planted imports passed:\n%s", out)
			}
			for _, p := range plants {
				if !hasLine(out, p.want) {
					t.Errorf("%s importing %s: no line with %q in:\n%s", p.dir, p.imp, p.want, out)
				}
			}
		})
	}
}

// hasLine reports whether a line of out contains every one of want.
func hasLine(out string, want []string) bool {
	for _, line := range strings.Split(out, "\n") {
		line += " "
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// moduleFiles lists what go list needs of the module at root (its Go
// files, go.mod, go.sum) and the script: tracked files and new ones git
// does not ignore.
func moduleFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("skipping: not a git checkout (%v)", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasSuffix(f, ".go") || f == "go.mod" || f == "go.sum" || f == "scripts/check-imports.sh" {
			files = append(files, f)
		}
	}
	return files
}

// copyModule copies files from root to a new temporary directory.
func copyModule(t *testing.T, root string, files []string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkImports runs the copy's check-imports.sh and returns its output.
func checkImports(t *testing.T, dir string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(dir, "scripts", "check-imports.sh"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
