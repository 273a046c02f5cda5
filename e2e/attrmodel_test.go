package e2e

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// modelEntry is what a name in the model directory is: a file of size
// bytes or a directory, with permission bits mode.
type modelEntry struct {
	dir  bool
	mode fs.FileMode
	size int64
}

// TestAttributesMatchAModel: one mount is the only writer of a directory
// in its peer's folder, and makes random changes to it in quick
// succession, as programs do (a shell's redirection, chmod, mv over, rm,
// truncate, an append, mkdir, rmdir, a directory's chmod); after each,
// what the mount shows of every name (listed first or not: `ls -l` then
// `stat`) must be exactly what the changes made, whatever order the
// peer's answers and its reports of the changes come in; another mount
// of the same folder comes to show the same within moments (every 50
// changes: what the peer reports, or its attribute timeout, brings it);
// at the end the peer's disk holds the same. The seed is in the failure's message
// (PEERFS_MODEL_SEED replays one; PEERFS_MODEL_OPS runs more).
func TestAttributesMatchAModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PEERFS_MODEL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	ops := 300
	if s := os.Getenv("PEERFS_MODEL_OPS"); s != "" {
		ops, _ = strconv.Atoi(s)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	perm := func(m fs.FileMode) fs.FileMode { return m &^ fs.FileMode(umask) }

	c := newCluster(t)
	a := c.mount("alice")
	b := c.mount("bob")
	carol := c.mount("carol")
	a.sees(b)
	carol.sees(b)
	dir := filepath.Join(a.dir(b), "model")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := []string{"f0", "f1", "f2", "f3", "f4"}
	dirs := []string{"d0", "d1"}
	names := append(slices.Clone(files), dirs...) // every name a change may make
	model := map[string]*modelEntry{}
	// written records that file n now holds size bytes (made 0644 if new).
	written := func(n string, size int64) {
		e, ok := model[n]
		if !ok {
			e = &modelEntry{mode: perm(0o644)}
			model[n] = e
		}
		e.size = size
	}
	pick := func(names []string) string { return names[rng.IntN(len(names))] }
	existing := func(wantDir bool) []string {
		var out []string
		for n, e := range model {
			if e.dir == wantDir {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	content := func() []byte { return []byte(strings.Repeat("x", rng.IntN(64))) }
	fileModes := []fs.FileMode{0o600, 0o640, 0o644, 0o700, 0o755}
	dirModes := []fs.FileMode{0o700, 0o750, 0o755}

	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, after:\n  %s\n%s", seed, strings.Join(log, "\n  "), fmt.Sprintf(format, args...))
	}
	do := func(what string, err error) {
		t.Helper()
		log = append(log, what)
		if len(log) > 12 {
			log = log[1:]
		}
		if err != nil {
			fail("%s: %v", what, err)
		}
	}

	for i := range ops {
		p := func(n string) string { return filepath.Join(dir, n) }
		switch op := rng.IntN(10); {
		case op < 2: // a shell's redirection: the file's first close comes while it is empty
			n := pick(files)
			if e, ok := model[n]; !ok || !e.dir {
				data := content()
				_, err := runCmd(t, 30*time.Second, "", "sh", "-c", `printf %s "$2" > "$1"`, "sh", p(n), string(data))
				do(fmt.Sprintf("printf %d bytes > %s", len(data), n), err)
				written(n, int64(len(data)))
			}
		case op == 2: // a program's write
			n := pick(files)
			if e, ok := model[n]; !ok || !e.dir {
				data := content()
				do(fmt.Sprintf("write %d bytes to %s", len(data), n), os.WriteFile(p(n), data, 0o644))
				written(n, int64(len(data)))
			}
		case op == 3:
			if names := existing(false); len(names) > 0 {
				n, m := pick(names), fileModes[rng.IntN(len(fileModes))]
				do(fmt.Sprintf("chmod %o %s", m, n), os.Chmod(p(n), m))
				model[n].mode = m
			}
		case op == 4:
			if names := existing(false); len(names) > 0 {
				from, to := pick(names), pick(files)
				do(fmt.Sprintf("mv %s %s", from, to), os.Rename(p(from), p(to)))
				e := model[from]
				delete(model, from)
				model[to] = e
			}
		case op == 5:
			if names := existing(false); len(names) > 0 {
				n := pick(names)
				do("rm "+n, os.Remove(p(n)))
				delete(model, n)
			}
		case op == 6:
			if names := existing(false); len(names) > 0 {
				n, size := pick(names), int64(rng.IntN(100))
				do(fmt.Sprintf("truncate -s %d %s", size, n), os.Truncate(p(n), size))
				model[n].size = size
			}
		case op == 7:
			if names := existing(false); len(names) > 0 {
				n, data := pick(names), content()
				f, err := os.OpenFile(p(n), os.O_WRONLY|os.O_APPEND, 0)
				if err == nil {
					_, err = f.Write(data)
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				do(fmt.Sprintf("append %d bytes to %s", len(data), n), err)
				model[n].size += int64(len(data))
			}
		case op == 8:
			n := pick(dirs)
			if _, ok := model[n]; !ok {
				do("mkdir "+n, os.Mkdir(p(n), 0o755))
				model[n] = &modelEntry{dir: true, mode: perm(0o755)}
			} else {
				do("rmdir "+n, os.Remove(p(n)))
				delete(model, n)
			}
		default:
			if names := existing(true); len(names) > 0 {
				n, m := pick(names), dirModes[rng.IntN(len(dirModes))]
				do(fmt.Sprintf("chmod %o %s", m, n), os.Chmod(p(n), m))
				model[n].mode = m
			}
		}
		// What the mount shows: after a listing (ls -l: its entries'
		// attributes come with it), or a stat alone.
		if rng.IntN(2) == 0 {
			ents, err := os.ReadDir(dir)
			if err != nil {
				fail("op %d: ls: %v", i, err)
			}
			var got, want []string
			for _, e := range ents {
				got = append(got, e.Name())
			}
			for n := range model {
				want = append(want, n)
			}
			sort.Strings(want)
			if !slices.Equal(got, want) {
				fail("op %d: ls shows %q, want %q", i, got, want)
			}
		}
		if err := matchModel(dir, model, names); err != nil {
			fail("op %d: %v", i, err)
		}
		if i%50 == 49 {
			if err := settles(10*time.Second, func() error {
				return matchModel(filepath.Join(carol.dir(b), "model"), model, names)
			}); err != nil {
				fail("op %d: in another mount, after 10 s: %v", i, err)
			}
		}
	}
	// And the peer's disk, once the changes written behind have reached it.
	if err := settles(15*time.Second, func() error {
		return matchModel(filepath.Join(b.export, "model"), model, names)
	}); err != nil {
		fail("on the peer's disk, after 15 s: %v", err)
	}
}

// settles polls check until it returns nil, or timeout passed: then its
// last error.
func settles(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// matchModel compares what lstat says of each of names in dir with model.
func matchModel(dir string, model map[string]*modelEntry, names []string) error {
	for _, n := range names {
		fi, err := os.Lstat(filepath.Join(dir, n))
		want, ok := model[n]
		switch {
		case !ok && err == nil:
			return fmt.Errorf("%s exists (%v), want none", n, fi.Mode())
		case !ok && !os.IsNotExist(err):
			return fmt.Errorf("stat %s: %v, want ENOENT", n, err)
		case !ok:
		case err != nil:
			return fmt.Errorf("stat %s: %v", n, err)
		case fi.IsDir() != want.dir || fi.Mode().Perm() != want.mode:
			return fmt.Errorf("%s is %v, want dir %v, mode %o", n, fi.Mode(), want.dir, want.mode)
		case !want.dir && fi.Size() != want.size:
			return fmt.Errorf("%s is %d bytes, want %d", n, fi.Size(), want.size)
		}
	}
	return nil
}
