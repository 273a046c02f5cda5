package e2e

// Round trips of real trees (issue #12, "done when"): tar of
// /usr/share/zoneinfo and of a Python virtualenv into a directory and
// back out, compared with the source by diff -r --no-dereference and by
// find's type, mode, link count, link target and size of every entry;
// git clone of a repository with symbolic links.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fixtures are the source trees the round trips share across targets,
// made once per test and removed at its end.
type fixtures struct {
	mu   sync.Mutex // protects the fields below
	dir  string
	made map[string]fixture
}

type fixture struct {
	path string
	err  error // why it could not be made: the round trip is skipped
}

// get returns the fixture name, made by make(path) the first time.
func (fx *fixtures) get(t testing.TB, name string, make func(path string) error) string {
	t.Helper()
	fx.mu.Lock()
	defer fx.mu.Unlock()
	f, ok := fx.made[name]
	if !ok {
		if fx.dir == "" {
			dir, err := os.MkdirTemp("", "peerfs-behaviour-")
			if err != nil {
				t.Fatal(err)
			}
			fx.dir, fx.made = dir, map[string]fixture{}
		}
		f.path = filepath.Join(fx.dir, name)
		f.err = make(f.path)
		fx.made[name] = f
	}
	if f.err != nil {
		t.Skipf("skipping: %v", f.err)
	}
	return f.path
}

func (fx *fixtures) remove() {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if fx.dir != "" {
		os.RemoveAll(fx.dir)
	}
}

// longRun skips a round trip under -short: each takes seconds to a
// quarter of a minute on a peer folder.
func longRun(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: a round trip of a real tree (-short)")
	}
}

func roundTrips(fx *fixtures) []behaviour {
	return []behaviour{
		{name: "roundtrip/tar-zoneinfo", check: func(t testing.TB, dir string) {
			longRun(t)
			const src = "/usr/share/zoneinfo"
			if _, err := os.Stat(src); err != nil {
				t.Skipf("skipping: %v (install tzdata)", err)
			}
			tarRoundTrip(t, src, dir)
		}},
		{name: "roundtrip/tar-venv", check: func(t testing.TB, dir string) {
			longRun(t)
			src := fx.get(t, "venv", func(path string) error {
				if out, err := exec.Command("python3", "-m", "venv", path).CombinedOutput(); err != nil {
					return &exec.Error{Name: "python3 -m venv: " + strings.TrimSpace(firstLines(string(out), 3)), Err: err}
				}
				return nil
			})
			tarRoundTrip(t, src, dir)
		}},
		{name: "roundtrip/git-clone-link", check: func(t testing.TB, dir string) {
			longRun(t)
			if _, err := exec.LookPath("git"); err != nil {
				t.Skip("skipping: git is not installed")
			}
			src := fx.get(t, "repo", makeLinkRepo)
			clone := join(dir, "clone")
			mustCommand(t, dir, "git", "clone", "-q", src, clone)
			// Unset (git config exits 1) or true: git made links; false:
			// it tried, failed, and checked links out as files.
			if out, _ := command(t, clone, "git", "config", "--bool", "core.symlinks"); strings.TrimSpace(out) == "false" {
				t.Errorf("git found no symbolic links in %s and checked them out as files (core.symlinks=false)", dir)
			}
			if out := mustCommand(t, clone, "git", "status", "--porcelain"); out != "" {
				t.Errorf("git status after the clone:\n%s", firstLines(out, 10))
			}
			for name, target := range repoLinks {
				isLink(t, join(clone, name), target)
			}
			if m := permOf(lstatOf(t, join(clone, "bin", "tool"))); m&0o111 == 0 {
				t.Errorf("bin/tool: mode %04o, not executable", m)
			}
		}},
	}
}

// repoLinks are the symbolic links of the repository makeLinkRepo makes.
var repoLinks = map[string]string{
	"README.link": "README", "bin.link": "bin", "docs/up": "../README",
	"dangling": "nowhere", "absolute": "/usr/bin/env",
}

// makeLinkRepo makes a git repository whose one commit holds files, an
// executable and the links of repoLinks.
func makeLinkRepo(path string) error {
	files := map[string]string{"README": "a repository with links\n", "bin/tool": "#!/bin/sh\necho tool\n", "docs/guide.md": "# guide\n"}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(path, name)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(path, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(path, "bin", "tool"), 0o755); err != nil {
		return err
	}
	for name, target := range repoLinks {
		if err := os.Symlink(target, filepath.Join(path, name)); err != nil {
			return err
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"commit", "-q", "-m", "files and links"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = path
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+path, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			return &exec.Error{Name: "git " + strings.Join(args, " ") + ": " + strings.TrimSpace(string(out)), Err: err}
		}
	}
	return nil
}

// tarRoundTrip extracts a tarball of src into dir, compares, archives
// dir's copy and extracts that on local disk, and compares again.
func tarRoundTrip(t testing.TB, src, dir string) {
	t.Helper()
	in, out := join(t.TempDir(), "in.tar"), join(t.TempDir(), "out.tar")
	mustCommand(t, "", "tar", "-C", src, "-cf", in, ".")
	copyIn := join(dir, "tree")
	okDo(t, os.Mkdir(copyIn, 0o755), "mkdir tree")
	mustCommand(t, copyIn, "tar", "-xf", in)
	sameTree(t, src, copyIn)
	mustCommand(t, copyIn, "tar", "-cf", out, ".")
	back := join(t.TempDir(), "back")
	okDo(t, os.Mkdir(back, 0o755), "mkdir back")
	mustCommand(t, back, "tar", "-xf", out)
	sameTree(t, src, back)
}

// sameTree compares two trees: diff -r --no-dereference (content, and
// link targets as links), then every entry's type, mode, link count,
// link target and size (but a directory's size, which is the
// filesystem's business) as find prints them.
func sameTree(t testing.TB, want, got string) {
	t.Helper()
	if out, err := command(t, "", "diff", "-r", "--no-dereference", want, got); err != nil {
		t.Errorf("diff -r --no-dereference %s %s: %v\n%s", want, got, err, firstLines(out, 10))
	}
	w, g := treeListing(t, want), treeListing(t, got)
	if slices.Equal(w, g) {
		return
	}
	var only []string
	for _, l := range w {
		if !slices.Contains(g, l) {
			only = append(only, "- "+l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			only = append(only, "+ "+l)
		}
	}
	t.Errorf("find -printf '%%P %%y %%m %%n %%l %%s' of %s (-) and %s (+) differ in %d lines:\n%s",
		want, got, len(only), firstLines(strings.Join(only, "\n"), 12))
}

func treeListing(t testing.TB, dir string) []string {
	t.Helper()
	out := mustCommand(t, dir, "find", ".", "(", "-type", "d", "-printf", `%P %y %m %n\n`, ")",
		"-o", "-printf", `%P %y %m %n %l %s\n`)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	slices.Sort(lines)
	return lines
}
