package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// testMetaFiles is the record mode of this run of the package's tests:
// records in data files' attributes (xattr.go) unless
// PEERFS_CACHE_TEST_METAFILES is set, as TestMetaFilesMode sets it to run
// the whole package again with metadata files (Options.MetaFiles).
var testMetaFiles = os.Getenv("PEERFS_CACHE_TEST_METAFILES") != ""

// TestMetaFilesMode runs the package's tests again with every record in
// a metadata file of its own, as on a file system without user extended
// attributes.
func TestMetaFilesMode(t *testing.T) {
	if testMetaFiles {
		t.Skip("this is that run")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), "PEERFS_CACHE_TEST_METAFILES=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the tests with metadata files failed: %v\n%s", err, out)
	}
}

// openCacheWith opens a cache with opts, closed when the test ends.
func openCacheWith(t testing.TB, opts Options) *Cache {
	t.Helper()
	opts.MetaFiles = opts.MetaFiles || testMetaFiles
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

// openMetaCache is openCache of dir with every record in a metadata
// file (Options.MetaFiles), for the tests of those files' format.
func openMetaCache(t testing.TB, dir string) *Cache {
	t.Helper()
	return openCacheWith(t, Options{Dir: dir, MetaFiles: true})
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
		// A record kept in the data file's attribute (xattr.go).
		if rec, ok, err := readRecordXattr(p); err != nil {
			return err
		} else if ok {
			if err := syscall.Setxattr(target, recordXattr, rec, 0); err != nil {
				return err
			}
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

// filesPer returns how many files an entry of c has in entries/: its
// data file, and its metadata file where records are not attributes.
func filesPer(c *Cache) int {
	if c.xattrs {
		return 1
	}
	return 2
}

// recordOf returns key's record in c as Open would read it: from its
// metadata file if it has one, else its data file's attribute.
func recordOf(t *testing.T, c *Cache, key Key) (record, []byte) {
	t.Helper()
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	if e == nil {
		t.Fatalf("%v has no entry", key)
	}
	if _, err := os.Stat(c.metaPath(e.id)); err == nil {
		return readRecord(t, c.metaPath(e.id))
	}
	b, ok, err := readRecordXattr(c.dataPath(e.id))
	if err != nil || !ok {
		t.Fatalf("%v: record attribute: %v, %v", key, ok, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v: %v (%q)", key, err, b)
	}
	return r, b
}

// recordMark marks key's record in c and returns a func reporting
// whether it was written since: a metadata file's mtime set in the past,
// or white space (which JSON ignores) added to an attribute's record.
func recordMark(t *testing.T, c *Cache, key Key) func() bool {
	t.Helper()
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	e.mu.Lock()
	inFile := e.metaFile
	e.mu.Unlock()
	if inFile {
		name := c.metaPath(e.id)
		past := time.Now().Add(-time.Hour).Truncate(time.Second)
		if err := os.Chtimes(name, past, past); err != nil {
			t.Fatal(err)
		}
		return func() bool { return !mustStat(t, name).ModTime().Equal(past) }
	}
	_, b := recordOf(t, c, key)
	marked := append(b, ' ')
	if err := syscall.Setxattr(c.dataPath(e.id), recordXattr, marked, 0); err != nil {
		t.Fatal(err)
	}
	return func() bool {
		b, _, err := readRecordXattr(c.dataPath(e.id))
		if err != nil {
			t.Fatal(err)
		}
		return !bytes.Equal(b, marked)
	}
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

// recorded returns how many entries in dir's entries/ have a record:
// a metadata file that is not empty, or a data file without one whose
// record attribute is not empty.
func recorded(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	all := names(t, dir, "entries")
	has := map[string]bool{}
	for _, name := range all {
		has[name] = true
	}
	for _, name := range all {
		p := filepath.Join(dir, "entries", name)
		switch {
		case strings.HasSuffix(name, metaSuffix):
			if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
				n++
			}
		case strings.HasSuffix(name, dataSuffix) && !has[strings.TrimSuffix(name, dataSuffix)+metaSuffix]:
			if b, ok, _ := readRecordXattr(p); ok && len(b) > 0 {
				n++
			}
		}
	}
	return n
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
