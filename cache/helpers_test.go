package cache

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openCache opens a cache in dir and closes it when the test ends.
func openCache(t testing.TB, dir string, max int64) *Cache {
	t.Helper()
	return openCacheWith(t, Options{Dir: dir, MaxBytes: max})
}

// openCacheBoot is openCache of dir (default size) with the boot ID read
// from bootIDFile.
func openCacheBoot(t testing.TB, dir, bootIDFile string) *Cache {
	t.Helper()
	return openCacheWith(t, Options{Dir: dir, BootIDFile: bootIDFile})
}

// openCacheWith opens a cache with opts, closed when the test ends.
func openCacheWith(t testing.TB, opts Options) *Cache {
	t.Helper()
	c, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func newCache(t testing.TB, max int64) *Cache {
	t.Helper()
	return openCache(t, t.TempDir(), max)
}

// fill stores content as a clean copy of key and releases the handle.
func fill(t testing.TB, c *Cache, key Key, content string, version string) {
	t.Helper()
	h, err := c.Fill(key, strings.NewReader(content), int64(len(content)), version)
	if err != nil {
		t.Fatalf("Fill %v: %v", key, err)
	}
	release(t, h)
}

// write creates or opens key's entry, writes content at offset 0 and
// releases it, leaving the entry dirty.
func write(t testing.TB, c *Cache, key Key, content string) {
	t.Helper()
	h, _, err := c.Acquire(key, -1, "", true)
	if err != nil {
		t.Fatalf("Acquire %v: %v", key, err)
	}
	if _, err := h.WriteAt([]byte(content), 0); err != nil {
		t.Fatalf("WriteAt %v: %v", key, err)
	}
	release(t, h)
}

func release(t testing.TB, h *Handle) {
	t.Helper()
	if err := h.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// contents returns the whole local copy behind h.
func contents(t testing.TB, h *Handle) string {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(h, 0, h.Size()))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// lookup returns key's content if a valid copy (unvalidated) is cached.
func lookup(t testing.TB, c *Cache, key Key) (string, bool) {
	t.Helper()
	h, ok, err := c.Acquire(key, -1, "", false)
	if err != nil {
		t.Fatalf("Acquire %v: %v", key, err)
	}
	if !ok {
		return "", false
	}
	defer release(t, h)
	return contents(t, h), true
}

// copyDir copies a cache directory as it is right now: what a crash at
// this moment would leave behind.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, 0o600); err != nil {
			return err
		}
		// Keep mtimes: they are the recency order after a restart.
		return os.Chtimes(target, info.ModTime(), info.ModTime())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	return dst
}

// names lists the files in dir/sub.
func names(t testing.TB, dir, sub string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func mustStat(t *testing.T, name string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// writeHeld writes data as the new content of p:path and returns the
// Handle still pinning it.
func writeHeld(t *testing.T, c *Cache, path, data string) *Handle {
	t.Helper()
	h, _, err := c.Acquire(Key{Peer: "p", Path: path}, -1, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte(data), 0); err != nil {
		t.Fatal(err)
	}
	return h
}

// metaFile returns the path of key's metadata file in c.
func metaFile(t *testing.T, c *Cache, key Key) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		t.Fatalf("%v has no entry", key)
	}
	return c.metaPath(e.id)
}

// readRecord parses a metadata file as Open does.
func readRecord(t *testing.T, name string) (record, []byte) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v (%q)", name, err, b)
	}
	return r, b
}

func inode(t *testing.T, name string) uint64 {
	t.Helper()
	return mustStat(t, name).Sys().(*syscall.Stat_t).Ino
}

// rebooted returns a boot ID file of another boot than this one: a cache
// opened with it (openCacheBoot) sees a reboot.
func rebooted(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "boot_id")
	if err := os.WriteFile(f, []byte("another-boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// nonEmpty returns how many files in dir's entries/ hold something: the
// files of entries, not spares (reuse.go).
func nonEmpty(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, name := range names(t, dir, "entries") {
		fi, err := os.Stat(filepath.Join(dir, "entries", name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err == nil && fi.Size() > 0 {
			n++
		}
	}
	return n
}
