package e2e

// A bounded soak test: three mounts create, write, rename, delete, read and
// fsync files in each other's folders while peers are stopped and killed.
//
// Short form (part of the suite, ~300 operations):
//
//	PEERFS_E2E_NORACE=1 go test -count=1 -run TestSoak -v ./e2e/
//
// Long run, with a given seed to replay one (the seed is printed):
//
//	PEERFS_SOAK_OPS=5000 PEERFS_SOAK_SEED=42 PEERFS_E2E_NORACE=1 go test -count=1 -timeout 2h -run TestSoak -v ./e2e/

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// absent stands for "no such file" in a soakModel's sets of contents.
const absent = "\x00absent"

// soakKey names a file: the mount that works on it (its subdirectory in
// every peer's export), the peer that stores it, and its name.
type soakKey struct {
	mount, peer int
	name        string
}

// soakModel holds, for each file, every content it may have: exactly one
// after an acknowledged operation; more after one that failed, since a
// failed operation may still take effect (a request the stopped peer
// runs once continued, a dirty copy the mount delivers later).
type soakModel map[soakKey]map[string]bool

func (m soakModel) get(k soakKey) map[string]bool {
	if s, ok := m[k]; ok {
		return s
	}
	return map[string]bool{absent: true}
}

func (m soakModel) set(k soakKey, contents ...string) {
	s := map[string]bool{}
	for _, c := range contents {
		s[c] = true
	}
	m[k] = s
}

// widen adds the contents of from to k's set.
func (m soakModel) widen(k soakKey, from map[string]bool) {
	s := m.get(k)
	for c := range from {
		s[c] = true
	}
	m[k] = s
}

func describe(set map[string]bool) string {
	var d []string
	for c := range set {
		if c == absent {
			d = append(d, "absent")
		} else {
			d = append(d, fmt.Sprintf("%d bytes %.12q", len(c), c))
		}
	}
	sort.Strings(d)
	return "{" + strings.Join(d, ", ") + "}"
}

// soakNames are the file names each mount uses in each subdirectory.
var soakNames = []string{"a", "b", "c", "d", "e"}

// soak is one run: the cluster, the model and the counters.
type soak struct {
	t      *testing.T
	rng    *rand.Rand
	nodes  []*node
	model  soakModel
	serial int

	ops, failed, faults int
	down                map[int]string // node index -> "stopped" or "killed"
	unexpected          []string       // operations that failed with no fault injected
}

// view is the path of k's file in its mount; disk is the same file in the
// storing peer's export.
func (s *soak) view(k soakKey) string {
	return filepath.Join(s.nodes[k.mount].dir(s.nodes[k.peer]), s.nodes[k.mount].name, k.name)
}

func (s *soak) disk(k soakKey) string {
	return filepath.Join(s.nodes[k.peer].export, s.nodes[k.mount].name, k.name)
}

// within runs fn with a deadline: an operation on a mount that never
// returns fails the test instead of hanging it.
func (s *soak) within(what string, fn func() error) error {
	s.t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		s.t.Fatalf("soak: %s still running after 30s", what)
		return nil
	}
}

// content makes a new file content, mostly small, now and then 1 MiB.
func (s *soak) content() string {
	s.serial++
	head := fmt.Sprintf("op %d seed-content %x\n", s.serial, s.rng.Uint64())
	n := s.rng.IntN(4 << 10)
	if s.rng.IntN(10) == 0 {
		n = 1 << 20
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + (i+s.serial)%26)
	}
	return head + string(b)
}

// pick chooses a mount that is up and a peer other than it, preferring
// peer target when target >= 0.
func (s *soak) pick(target int) (soakKey, bool) {
	var mounts []int
	for i := range s.nodes {
		if s.down[i] == "" && i != target {
			mounts = append(mounts, i)
		}
	}
	if len(mounts) == 0 {
		return soakKey{}, false
	}
	m := mounts[s.rng.IntN(len(mounts))]
	p := target
	if p < 0 || s.rng.IntN(10) < 4 {
		p = (m + 1 + s.rng.IntN(len(s.nodes)-1)) % len(s.nodes)
	}
	return soakKey{mount: m, peer: p, name: soakNames[s.rng.IntN(len(soakNames))]}, true
}

// step runs one random operation; during a fault (faulty) errors are
// expected, otherwise only "no such file" where the model allows it.
func (s *soak) step(target int, faulty bool) {
	t := s.t
	t.Helper()
	k, ok := s.pick(target)
	if !ok {
		return
	}
	s.ops++
	cur := s.model.get(k)
	var what string
	var err error
	switch r := s.rng.IntN(100); {
	case r < 35 || (r < 40 && faulty): // write (create or replace)
		c := s.content()
		what = "write " + s.view(k)
		err = s.within(what, func() error { return os.WriteFile(s.view(k), []byte(c), 0o644) })
		if err == nil {
			s.model.set(k, c)
		} else {
			s.model.widen(k, map[string]bool{c: true})
		}
	case r < 40: // write + fsync: a SYNC round
		c := s.content()
		what = "write+fsync " + s.view(k)
		err = s.within(what, func() error {
			f, err := os.OpenFile(s.view(k), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := f.WriteString(c); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		})
		if err == nil {
			s.model.set(k, c)
		} else {
			s.model.widen(k, map[string]bool{c: true})
		}
	case r < 55: // rename within the subdirectory
		to := k
		to.name = soakNames[s.rng.IntN(len(soakNames))]
		if to.name == k.name {
			return
		}
		what = "rename " + s.view(k) + " -> " + to.name
		err = s.within(what, func() error { return os.Rename(s.view(k), s.view(to)) })
		switch {
		case err == nil:
			if cur[absent] && len(cur) == 1 {
				t.Errorf("soak: %s succeeded, but the model says the source is absent", what)
			}
			delete(cur, absent)
			s.model[to] = cur
			s.model.set(k, absent)
		case errors.Is(err, os.ErrNotExist) && !faulty:
			if !cur[absent] {
				t.Errorf("soak: %s: %v, but the model says the source is %s", what, err, describe(cur))
			}
			s.model.set(k, absent)
			return
		default:
			s.model.widen(to, cur)
			s.model.widen(k, map[string]bool{absent: true})
		}
	case r < 65: // delete
		what = "delete " + s.view(k)
		err = s.within(what, func() error { return os.Remove(s.view(k)) })
		switch {
		case err == nil:
			if cur[absent] && len(cur) == 1 {
				t.Errorf("soak: %s succeeded, but the model says it is absent", what)
			}
			s.model.set(k, absent)
		case errors.Is(err, os.ErrNotExist) && !faulty:
			if !cur[absent] {
				t.Errorf("soak: %s: %v, but the model says it is %s", what, err, describe(cur))
			}
			s.model.set(k, absent)
			return
		default:
			s.model.widen(k, map[string]bool{absent: true})
		}
	case r < 97: // read
		what = "read " + s.view(k)
		var got []byte
		err = s.within(what, func() error {
			var err error
			got, err = os.ReadFile(s.view(k))
			return err
		})
		switch {
		case err == nil:
			if !cur[string(got)] {
				t.Errorf("soak: %s: %d bytes %.40q, the model allows %s", what, len(got), got, describe(cur))
			}
		case errors.Is(err, os.ErrNotExist) && !faulty:
			if !cur[absent] {
				t.Errorf("soak: %s: %v, the model says %s", what, err, describe(cur))
			}
			return
		}
	default: // a SYNC round through the control folder
		what = "sync from " + s.nodes[k.mount].name
		err = s.within(what, func() error {
			return os.WriteFile(filepath.Join(s.nodes[k.mount].mnt, ".peerfs", "sync"), []byte("\n"), 0o644)
		})
	}
	if err != nil {
		s.failed++
		if !faulty {
			// Counted as not acknowledged (the model allows both
			// outcomes), and reported as a bug at the end.
			t.Logf("soak: %s failed with no fault injected: %v", what, err)
			s.unexpected = append(s.unexpected, fmt.Sprintf("%s: %v", what, err))
		}
	}
}

// recover waits until every mount is up and reaches every subdirectory.
func (s *soak) recover() {
	t := s.t
	t.Helper()
	waitFor(t, 40*time.Second, "every mount reaching every peer again", func() bool {
		for mi, m := range s.nodes {
			for pi, p := range s.nodes {
				if mi == pi {
					continue
				}
				if _, err := os.ReadDir(filepath.Join(m.dir(p), m.name)); err != nil {
					return false
				}
			}
		}
		return true
	})
}

// fault stops or kills victim, runs a few operations aimed mostly at it,
// and brings it back.
func (s *soak) fault(victim int, kind string) {
	t := s.t
	t.Helper()
	s.faults++
	v := s.nodes[victim]
	t.Logf("soak: fault %d: %s %s after %d operations", s.faults, kind, v.name, s.ops)
	s.down[victim] = kind
	switch kind {
	case "stopped":
		stopProc(t, v.p)
	case "killed":
		v.p.kill()
		ensureUnmounted(t, v.mnt)
	}
	for range 3 {
		s.step(victim, true)
	}
	switch kind {
	case "stopped":
		contProc(t, v.p)
	case "killed":
		v.start()
	}
	delete(s.down, victim)
	s.recover()
}

// pendingUploads asks n's daemon how many files it has not uploaded yet.
func pendingUploads(n *node) (int, error) {
	out, err := exec.Command(bin, "status", "--control", filepath.Join(n.cache, "control.sock"), "--json").Output()
	if err != nil {
		return 0, err
	}
	var st struct {
		Pending struct {
			Files int `json:"files"`
		} `json:"pending"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, err
	}
	return st.Pending.Files, nil
}

// TestSoak: three mounts, random operations in each other's folders with
// peers stopped and killed in between; at the end every file on every
// peer holds what the acknowledged operations (and the failed ones that
// may still have taken effect) allow.
func TestSoak(t *testing.T) {
	total := 300
	if v := os.Getenv("PEERFS_SOAK_OPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("PEERFS_SOAK_OPS=%q: want a positive number", v)
		}
		total = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("PEERFS_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("PEERFS_SOAK_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("soak: seed %d (PEERFS_SOAK_SEED=%d replays it), %d operations", seed, seed, total)

	// A short lease: a stopped peer holding the token delays the others'
	// uploads by at most that.
	c := newCluster(t, "--lease", "3s")
	s := &soak{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), model: soakModel{}, down: map[int]string{}}
	for _, name := range []string{"alice", "bob", "carol"} {
		s.nodes = append(s.nodes, c.mount(name))
	}
	for i, n := range s.nodes {
		n.sees(slices.Delete(slices.Clone(s.nodes), i, i+1)...)
		for j, o := range s.nodes {
			if i != j {
				if err := os.Mkdir(filepath.Join(o.export, n.name), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	s.recover()

	every := max(total/5, 10)
	kinds := []string{"stopped", "killed"}
	begin := time.Now()
	for s.ops < total {
		s.step(-1, false)
		if s.ops%every == 0 && s.ops < total {
			s.fault(s.rng.IntN(len(s.nodes)), kinds[s.faults%len(kinds)])
		}
	}
	opsTook := time.Since(begin)

	// Every mount runs a SYNC round and uploads what it still holds.
	for _, n := range s.nodes {
		if err := s.within("final sync", func() error {
			return os.WriteFile(filepath.Join(n.mnt, ".peerfs", "sync"), []byte("\n"), 0o644)
		}); err != nil {
			t.Errorf("soak: final sync from %s: %v", n.name, err)
		}
	}
	waitFor(t, 60*time.Second, "every mount's pending uploads delivered", func() bool {
		for _, n := range s.nodes {
			if p, err := pendingUploads(n); err != nil || p > 0 {
				return false
			}
		}
		return true
	})

	// The peers' exports against the model (polled briefly: a retried
	// upload may still be landing).
	var keys []soakKey
	for i := range s.nodes {
		for j := range s.nodes {
			if i != j {
				for _, name := range soakNames {
					keys = append(keys, soakKey{mount: i, peer: j, name: name})
				}
			}
		}
	}
	var mismatches []string
	check := func() bool {
		mismatches = mismatches[:0]
		for _, k := range keys {
			want := s.model.get(k)
			got, err := os.ReadFile(s.disk(k))
			have := string(got)
			if errors.Is(err, os.ErrNotExist) {
				have = absent
			} else if err != nil {
				mismatches = append(mismatches, fmt.Sprintf("%s: %v", s.disk(k), err))
				continue
			}
			if !want[have] {
				mismatches = append(mismatches, fmt.Sprintf("%s holds %s, the model allows %s", s.disk(k), describe(map[string]bool{have: true}), describe(want)))
			}
		}
		for j, p := range s.nodes {
			for i, m := range s.nodes {
				if i == j {
					continue
				}
				entries, _ := os.ReadDir(filepath.Join(p.export, m.name))
				for _, e := range entries {
					if !slices.Contains(soakNames, e.Name()) {
						mismatches = append(mismatches, fmt.Sprintf("unexpected %s in %s", e.Name(), filepath.Join(p.export, m.name)))
					}
				}
			}
		}
		return len(mismatches) == 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for !check() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range mismatches {
		t.Errorf("soak: %s", m)
	}
	// What the owning mount shows agrees with the export.
	for _, k := range keys {
		got, err := os.ReadFile(s.view(k))
		onDisk, derr := os.ReadFile(s.disk(k))
		if (err == nil) != (derr == nil) || !bytes.Equal(got, onDisk) {
			t.Errorf("soak: %s reads %d bytes (%v), the export holds %d bytes (%v)", s.view(k), len(got), err, len(onDisk), derr)
		}
	}
	t.Logf("soak: %d operations (%d failed under faults) in %v, %d faults, %d files checked, seed %d",
		s.ops, s.failed, opsTook.Round(time.Millisecond), s.faults, len(keys), seed)
	for _, n := range s.nodes {
		if n.p.exited() {
			t.Errorf("soak: %s exited: %v", n.name, n.p.err)
		}
	}
	if len(s.unexpected) > 0 {
		// Once skipped as known flakes; their causes (a PUT's source
		// shrinking under it blamed on the peer, a GET cut short by a
		// shrinking file taken for a dead peer) are fixed, so any such
		// failure is a bug to look into.
		t.Errorf("soak: %d operations failed with no fault in progress (every peer running and reachable again): %s",
			len(s.unexpected), strings.Join(s.unexpected, "; "))
	}
}
