package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// ctimeOf returns path's change time (lstat).
func ctimeOf(t *testing.T, path string) syscall.Timespec {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ctim
}

// TestDirCtimeStable: a directory's change time, after changes this mount
// writes behind (entries made and removed in it, its mode and times set),
// stays what it was when nothing changes, as on a local disk, also once
// the attribute timeout has ended and the peer's own value comes back
// (tar -c warned "file changed as we read it" of directories it archived
// right after extracting into them). It still moves with the next change,
// and with another writer's change made on the peer later.
func TestDirCtimeStable(t *testing.T) {
	c := newCluster(t)
	a := c.mount("alice")
	bob := c.mount("bob")
	a.sees(bob)
	local := t.TempDir()
	for _, base := range []string{local, a.dir(bob)} {
		d := filepath.Join(base, "d")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("f", filepath.Join(d, "l")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(d, "l")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t0 := time.Unix(1_700_000_000, 0)
		if err := os.Chtimes(d, t0, t0); err != nil {
			t.Fatal(err)
		}
		first := ctimeOf(t, d)
		for range 3 { // past the attribute timeout (1 s), twice
			time.Sleep(700 * time.Millisecond)
			if now := ctimeOf(t, d); now != first {
				t.Fatalf("in %s: a directory's change time moved from %v to %v with nothing changed", base, time.Unix(first.Unix()), time.Unix(now.Unix()))
			}
		}
		// The next change moves it on.
		if err := os.Chmod(d, 0o750); err != nil {
			t.Fatal(err)
		}
		second := ctimeOf(t, d)
		if second == first {
			t.Fatalf("in %s: a chmod 2 s after the last change left the change time at %v", base, time.Unix(first.Unix()))
		}
		time.Sleep(1200 * time.Millisecond)
		if now := ctimeOf(t, d); now != second {
			t.Errorf("in %s: after the chmod, the change time moved from %v to %v with nothing changed", base, time.Unix(second.Unix()), time.Unix(now.Unix()))
		}
	}

	// Another writer's change, after this mount's window: shown (once the
	// attribute timeout ends, or the peer reports it).
	d := filepath.Join(a.dir(bob), "d")
	before := ctimeOf(t, d)
	time.Sleep(2500 * time.Millisecond)
	if err := os.Chmod(filepath.Join(bob.export, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ctimeOf(t, d) == before {
		if time.Now().After(deadline) {
			t.Fatalf("bob's chmod of d on his disk: alice still shows the change time %v", time.Unix(before.Unix()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
