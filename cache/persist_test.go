package cache

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDirtySurvivesRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "close"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, dir, 0)
			dirty, clean := Key{"bob", "dirty.txt"}, Key{"bob", "clean.txt"}
			fill(t, c, clean, "clean data", "77")
			h, _, err := c.Acquire(dirty, -1, "", true)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.SetMode(0o640); err != nil {
				t.Fatal(err)
			}
			if _, err := h.WriteAt([]byte("written, not uploaded"), 0); err != nil {
				t.Fatal(err)
			}
			// A second write after the dirty flag is already on disk.
			if _, err := h.WriteAt([]byte("!"), 21); err != nil {
				t.Fatal(err)
			}
			if err := h.Sync(); err != nil {
				t.Fatal(err)
			}
			if crash {
				// What a crash now would leave, with the handle still open,
				// plus debris from an interrupted Fill and a Remove.
				dir = copyDir(t, dir)
				for _, f := range []string{"tmp/fill-123", "entries/orphan.data"} {
					if err := os.WriteFile(filepath.Join(dir, f), []byte("junk"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			release(t, h)
			if !crash {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}

			c2 := openCache(t, dir, 0)
			if got := c2.Dirty(); !slices.Equal(got, []Key{dirty}) {
				t.Fatalf("Dirty after restart = %v", got)
			}
			h2, found, err := c2.Acquire(dirty, -1, "", false)
			if err != nil || !found {
				t.Fatal(found, err)
			}
			if got := contents(t, h2); got != "written, not uploaded!" {
				t.Errorf("dirty content = %q", got)
			}
			if m := h2.Meta(); !m.Dirty || m.Mode != 0o640 || m.Size != 22 || m.DirtySince.IsZero() {
				t.Errorf("dirty meta = %+v", m)
			}
			release(t, h2)
			h3, found, err := c2.Acquire(clean, 10, "77", false)
			if err != nil || !found {
				t.Fatalf("clean copy lost: %v, %v", found, err)
			}
			release(t, h3)
			if got := names(t, dir, "tmp"); len(got) != 0 {
				t.Errorf("temp files survived Open: %v", got)
			}
			if got := names(t, dir, "entries"); len(got) != 4 {
				t.Errorf("entries = %v; want 2 entries' files", got)
			}
		})
	}
}

// TestCrashAfterFirstWrite checks the order of persistence: once WriteAt
// returns, the disk says dirty even if nothing else happens.
func TestCrashAfterFirstWrite(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "a"}
	fill(t, c, key, "remote", "5")
	h, _, err := c.Acquire(key, 6, "5", false)
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if _, err := h.WriteAt([]byte("L"), 0); err != nil {
		t.Fatal(err)
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if got := c2.Dirty(); !slices.Equal(got, []Key{key}) {
		t.Fatalf("Dirty after crash = %v", got)
	}
	if got, _ := lookup(t, c2, key); got != "Lemote" {
		t.Errorf("content = %q", got)
	}
	// Uploaded and marked clean: a crash now finds it clean.
	if ok, err := h.MarkClean(h.Generation(), 6, "9"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	c3 := openCache(t, copyDir(t, dir), 0)
	if m, ok := c3.Meta(key); !ok || m.Dirty || m.Version != "9" {
		t.Errorf("after MarkClean and crash: %+v, %v", m, ok)
	}
}

func TestOpenDiscardsBadEntries(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	keys := map[string]Key{}
	for _, n := range []string{"truncated", "nodata", "garbage", "dirtygrown", "good"} {
		keys[n] = Key{"bob", n}
		fill(t, c, keys[n], "0123456789", "1")
	}
	write(t, c, keys["dirtygrown"], "written")
	ids := map[string]string{}
	for n, k := range keys {
		ids[n] = c.entries[k].id
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	entries := filepath.Join(dir, "entries")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Truncate(filepath.Join(entries, ids["truncated"]+dataSuffix), 3))
	must(os.Remove(filepath.Join(entries, ids["nodata"]+dataSuffix)))
	must(os.WriteFile(filepath.Join(entries, ids["garbage"]+metaSuffix), []byte("{not json"), 0o600))
	// A dirty entry whose file grew after the flag was written keeps
	// what the file holds.
	must(os.WriteFile(filepath.Join(entries, ids["dirtygrown"]+dataSuffix), []byte("written and more"), 0o600))

	c2 := openCache(t, dir, 0)
	for _, n := range []string{"truncated", "nodata", "garbage"} {
		if _, ok := c2.Meta(keys[n]); ok {
			t.Errorf("%s entry loaded", n)
		}
	}
	if got, _ := lookup(t, c2, keys["good"]); got != "0123456789" {
		t.Errorf("good = %q", got)
	}
	if got, _ := lookup(t, c2, keys["dirtygrown"]); got != "written and more" {
		t.Errorf("dirtygrown = %q", got)
	}
	if got := names(t, dir, "entries"); len(got) != 4 {
		t.Errorf("entries = %v; want only the 2 kept entries' files", got)
	}
}

func TestOpenEvictsToBound(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	fill(t, c, Key{"p", "old"}, "aaaa", "1")
	fill(t, c, Key{"p", "new"}, "bbbb", "1")
	write(t, c, Key{"p", "dirty"}, "cccc")
	// Metadata mtimes give the recency order after a restart.
	old := filepath.Join(dir, "entries", c.entries[Key{"p", "old"}].id+metaSuffix)
	earlier := mustStat(t, old).ModTime().Add(-time.Second)
	if err := os.Chtimes(old, earlier, earlier); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := openCache(t, dir, 8)
	if _, ok := c2.Meta(Key{"p", "old"}); ok {
		t.Error("least recent entry not evicted on Open")
	}
	for _, n := range []string{"new", "dirty"} {
		if _, ok := c2.Meta(Key{"p", n}); !ok {
			t.Errorf("%s evicted", n)
		}
	}
}

func mustStat(t *testing.T, name string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestAwkwardNames(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	keys := []Key{
		{"bob", "with space/and file.txt"},
		{"bob", "new\nline"},
		{"bob", "日本語/ファイル"},
		{"bob", "100%/%41%zz%"},
		{"peer%20x", "a"},
		{"peer with space", "tab\there"},
		{"bob", "invalid\xff\xfeutf8"},
		{"bob", ""},
		{"", "no peer"},
	}
	for i, k := range keys {
		write(t, c, k, strings.Repeat("x", i+1))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := openCache(t, dir, 0)
	if got := c2.Dirty(); !slices.Equal(got, keys) {
		t.Errorf("Dirty after restart = %q; want %q", got, keys)
	}
	for i, k := range keys {
		if got, ok := lookup(t, c2, k); !ok || got != strings.Repeat("x", i+1) {
			t.Errorf("%q = %q, %v", k, got, ok)
		}
	}
}

func TestEscapeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain.txt", "plain.txt"},
		{"a b\nc", "a b\nc"},
		{"日本", "日本"},
		{"100%", "100%25"},
		{"%41", "%2541"},
		{"\xff", "%FF"},
		{"a\xe6\x97", "a%E6%97"},
	}
	for _, tt := range tests {
		got := escapeName(tt.in)
		if got != tt.want {
			t.Errorf("escapeName(%q) = %q; want %q", tt.in, got, tt.want)
		}
		back, err := unescapeName(got)
		if err != nil || back != tt.in {
			t.Errorf("unescapeName(%q) = %q, %v; want %q", got, back, err, tt.in)
		}
	}
	for _, bad := range []string{"%", "%4", "%zz"} {
		if _, err := unescapeName(bad); err == nil {
			t.Errorf("unescapeName(%q) succeeded", bad)
		}
	}
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

// TestRebootDropsUnpersisted: after a reboot (a new boot ID) only entries
// made durable by Persist are trusted; after a process restart in the same
// boot, everything is.
func TestRebootDropsUnpersisted(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	write := func(path, data string) *Handle { return writeHeld(t, c, path, data) }
	volatile := write("volatile", "v")
	durable := write("durable", "d")
	if err := durable.Persist(); err != nil {
		t.Fatal(err)
	}
	rewritten := write("rewritten", "r1")
	if err := rewritten.Persist(); err != nil {
		t.Fatal(err)
	}
	if _, err := rewritten.WriteAt([]byte("r2"), 0); err != nil { // leaves the durable state
		t.Fatal(err)
	}
	for _, h := range []*Handle{volatile, durable, rewritten} {
		h.Release()
	}
	c.Close()

	// Same boot: a restart of the process keeps everything.
	c = openCache(t, dir, 0)
	if got := len(c.Dirty()); got != 3 {
		t.Fatalf("after a restart: %d dirty entries, want 3", got)
	}
	c.Close()

	c = openCacheBoot(t, dir, rebooted(t))
	dirty := c.Dirty()
	if len(dirty) != 1 || dirty[0].Path != "durable" {
		t.Fatalf("after a reboot: dirty = %v, want only the persisted entry", dirty)
	}
	h, ok, err := c.Acquire(Key{Peer: "p", Path: "durable"}, -1, "", false)
	if err != nil || !ok {
		t.Fatalf("persisted entry: %v %v", ok, err)
	}
	buf := make([]byte, 1)
	if _, err := h.ReadAt(buf, 0); err != nil || string(buf) != "d" {
		t.Fatalf("persisted content %q %v", buf, err)
	}
	h.Release()
}

// Without a boot ID, a record written without fsync cannot say whether a
// restart followed a crash of the process or a power loss, so no later
// Open trusts it: only what Persist made durable (data fsynced first)
// survives, never a record paired with data a power loss could have torn.
func TestNoBootIDKeepsOnlyPersisted(t *testing.T) {
	noBootID := filepath.Join(t.TempDir(), "no-boot-id")
	dir := t.TempDir()
	c := openCacheBoot(t, dir, noBootID)
	write := func(path, data string) *Handle { return writeHeld(t, c, path, data) }
	volatile := write("volatile", "v")
	durable := write("durable", "d")
	if err := durable.Persist(); err != nil {
		t.Fatal(err)
	}
	fill(t, c, Key{Peer: "p", Path: "clean"}, "c", "7")
	for _, h := range []*Handle{volatile, durable} {
		h.Release()
	}
	c.Close()

	c = openCacheBoot(t, dir, noBootID)
	dirty := c.Dirty()
	if len(dirty) != 1 || dirty[0].Path != "durable" {
		t.Fatalf("after a restart without a boot ID: dirty = %v, want only the persisted entry", dirty)
	}
	if got, ok := lookup(t, c, Key{Peer: "p", Path: "durable"}); !ok || got != "d" {
		t.Errorf("persisted entry = %q, %v; want \"d\"", got, ok)
	}
	if _, ok := lookup(t, c, Key{Peer: "p", Path: "clean"}); ok {
		t.Error("a clean copy recorded without fsync survived a restart without a boot ID")
	}
}
