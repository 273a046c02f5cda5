package cache

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

func TestAcquireWriteRead(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "dir/a.txt"}
	h, found, err := c.Acquire(key, -1, "", true)
	if err != nil || found {
		t.Fatalf("Acquire = %v, %v; want a new entry", found, err)
	}
	if m := h.Meta(); m.Dirty || m.Size != 0 {
		t.Errorf("new entry meta = %+v; want clean and empty", m)
	}
	if _, err := h.WriteAt([]byte("hello world"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("HELLO"), 0); err != nil {
		t.Fatal(err)
	}
	if got := contents(t, h); got != "HELLO world" {
		t.Errorf("content = %q", got)
	}
	if err := h.Truncate(5); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if m := h.Meta(); !m.Dirty || m.Size != 5 || m.Gen != 3 {
		t.Errorf("meta = %+v; want dirty, size 5, gen 3", m)
	}
	release(t, h)

	// A dirty copy is valid whatever the peer says.
	h, found, err = c.Acquire(key, 1234, "99", false)
	if err != nil || !found {
		t.Fatalf("Acquire dirty = %v, %v", found, err)
	}
	if got := contents(t, h); got != "HELLO" {
		t.Errorf("content after reacquire = %q", got)
	}
	release(t, h)

	if err := h.Release(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Release = %v; want ErrClosed", err)
	}
	if _, err := h.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Release = %v; want ErrClosed", err)
	}
	if _, err := h.WriteAt([]byte("x"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Release = %v; want ErrClosed", err)
	}
	st := c.Stats()
	if st.Entries != 1 || st.Bytes != 5 || st.DirtyFiles != 1 || st.DirtyBytes != 5 || st.Pinned != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestAcquireValidation(t *testing.T) {
	const content, version = "abc", "v0123456789abcdef"
	tests := []struct {
		name    string
		size    int64
		version string
		hit     bool
	}{
		{"exact", 3, version, true},
		{"no validation", -1, "", true},
		{"size only", 3, "", true},
		{"version only", -1, version, true},
		{"size differs", 4, version, false},
		{"version differs", 3, version + "0", false},
		{"both differ", 0, "v1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t, 0)
			key := Key{"bob", "a"}
			fill(t, c, key, content, version)
			h, found, err := c.Acquire(key, tt.size, tt.version, false)
			if err != nil {
				t.Fatal(err)
			}
			if found != tt.hit || (h != nil) != tt.hit {
				t.Fatalf("Acquire = %v, %v; want hit %v", h, found, tt.hit)
			}
			st := c.Stats()
			if tt.hit {
				if got := contents(t, h); got != content {
					t.Errorf("content = %q", got)
				}
				release(t, h)
				if st.Hits != 1 || st.Misses != 0 {
					t.Errorf("Stats = %+v; want 1 hit", st)
				}
				return
			}
			// An unpinned stale copy is useless and dropped.
			if st.Misses != 1 || st.Entries != 0 {
				t.Errorf("Stats = %+v; want 1 miss, no entries", st)
			}
			// With create, a miss yields an empty entry.
			h, found, err = c.Acquire(key, tt.size, tt.version, true)
			if err != nil || found {
				t.Fatalf("Acquire create = %v, %v", found, err)
			}
			if h.Size() != 0 {
				t.Errorf("created entry size %d", h.Size())
			}
			release(t, h)
		})
	}
}

func TestAcquireCreateReplacesPinnedStale(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "a"}
	fill(t, c, key, "old", "1")
	old, found, err := c.Acquire(key, 3, "1", false)
	if err != nil || !found {
		t.Fatal(found, err)
	}
	defer release(t, old)
	h, found, err := c.Acquire(key, 5, "2", true)
	if err != nil || found {
		t.Fatal(found, err)
	}
	defer release(t, h)
	// The old handle still reads its unlinked copy.
	if got := contents(t, old); got != "old" || !old.Meta().Detached {
		t.Errorf("old handle: %q, %+v", got, old.Meta())
	}
	if h.Size() != 0 || c.Stats().Entries != 1 {
		t.Errorf("new entry size %d, stats %+v", h.Size(), c.Stats())
	}
}

func TestFillIncomplete(t *testing.T) {
	tests := []struct {
		name string
		r    io.Reader
	}{
		{"short", strings.NewReader("ab")},
		{"empty", strings.NewReader("")},
		{"error", io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(errors.New("connection reset")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, dir, 0)
			h, err := c.Fill(Key{"bob", "a"}, tt.r, 5, "1")
			if err == nil {
				h.Release()
				t.Fatal("Fill succeeded")
			}
			if got := names(t, dir, "entries"); len(got) != 0 {
				t.Errorf("entries left behind: %v", got)
			}
			if got := names(t, dir, "tmp"); len(got) != 0 {
				t.Errorf("temp files left behind: %v", got)
			}
			if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestFillThenHit(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "a"}
	r := strings.NewReader("contentNEXT")
	h, err := c.Fill(key, r, 7, "42")
	if err != nil {
		t.Fatal(err)
	}
	if got := contents(t, h); got != "content" {
		t.Errorf("filled content = %q", got)
	}
	if m := h.Meta(); m.Dirty || m.Size != 7 || m.Version != "42" {
		t.Errorf("meta = %+v", m)
	}
	release(t, h)
	// Fill reads no further than size: the rest belongs to the next message.
	if rest, _ := io.ReadAll(r); string(rest) != "NEXT" {
		t.Errorf("reader left %q; want NEXT", rest)
	}
	h, found, err := c.Acquire(key, 7, "42", false)
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if got := contents(t, h); got != "content" {
		t.Errorf("content = %q", got)
	}
	release(t, h)
	if st := c.Stats(); st.Hits != 1 || st.Misses != 0 {
		t.Errorf("Stats = %+v", st)
	}

	// A newer remote version replaces it.
	fill(t, c, key, "v2", "43")
	if got, _ := lookup(t, c, key); got != "v2" {
		t.Errorf("after refill: %q", got)
	}
}

func TestFillKeepsDirty(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "a"}
	write(t, c, key, "local")
	h, err := c.Fill(key, strings.NewReader("remote!"), 7, "5")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if got := contents(t, h); got != "local" || !h.Meta().Dirty {
		t.Errorf("Fill over dirty gave %q, %+v; want the dirty copy", got, h.Meta())
	}
}

func TestMarkClean(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "a"}
	h, _, err := c.Acquire(key, -1, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if _, err := h.WriteAt([]byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	gen := c.Generation(key)
	// The upload runs; meanwhile the program writes again.
	if _, err := h.WriteAt([]byte("two"), 3); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.MarkClean(key, gen, 3, "100"); ok || err != nil {
		t.Fatalf("MarkClean with stale generation = %v, %v; want false", ok, err)
	}
	if !h.Meta().Dirty || !slices.Equal(c.Dirty(), []Key{key}) {
		t.Fatalf("entry not dirty after stale MarkClean: %+v", h.Meta())
	}
	gen = h.Generation()
	if _, err := c.MarkClean(key, gen, 5, "100"); err == nil {
		t.Errorf("MarkClean with wrong size succeeded")
	}
	if ok, err := c.MarkClean(key, gen, 6, "100"); !ok || err != nil {
		t.Fatalf("MarkClean = %v, %v", ok, err)
	}
	if m := h.Meta(); m.Dirty || m.Version != "100" || len(c.Dirty()) != 0 {
		t.Errorf("after MarkClean: %+v, Dirty %v", m, c.Dirty())
	}
	if _, err := c.MarkClean(Key{"bob", "none"}, 0, 0, ""); !errors.Is(err, ErrNotCached) {
		t.Errorf("MarkClean of missing key = %v; want ErrNotCached", err)
	}
	// Clean, it validates against the uploaded version.
	h2, found, err := c.Acquire(key, 6, "100", false)
	if err != nil || !found {
		t.Fatal(found, err)
	}
	release(t, h2)
	if st := c.Stats(); st.DirtyFiles != 0 || st.DirtyBytes != 0 {
		t.Errorf("Stats = %+v", st)
	}
	// Handle.MarkClean works the same way.
	h.WriteAt([]byte("!"), 6)
	if ok, err := h.MarkClean(h.Generation(), 7, "101"); !ok || err != nil {
		t.Errorf("Handle.MarkClean = %v, %v", ok, err)
	}
}

func TestDirtyOrder(t *testing.T) {
	c := newCache(t, 0)
	keys := []Key{{"p", "z"}, {"p", "a"}, {"q", "m"}}
	for i, k := range keys {
		write(t, c, k, strings.Repeat("x", i+1))
	}
	if got := c.Dirty(); !slices.Equal(got, keys) {
		t.Errorf("Dirty = %v; want %v", got, keys)
	}
	files, n, oldest := c.DirtyInfo()
	m, _ := c.Meta(keys[0])
	if files != 3 || n != 6 || !oldest.Equal(m.DirtySince) {
		t.Errorf("DirtyInfo = %d, %d, %v; want 3, 6, %v", files, n, oldest, m.DirtySince)
	}
}

func TestRename(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	p := "bob"
	write(t, c, Key{p, "f"}, "file")
	fill(t, c, Key{p, "g"}, "old g", "1")
	write(t, c, Key{p, "d/x"}, "dx")
	fill(t, c, Key{p, "d/y/z"}, "dyz", "1")
	write(t, c, Key{p, "dd"}, "not under d/")
	write(t, c, Key{"alice", "d/x"}, "other peer")
	write(t, c, Key{p, "e/x"}, "replaced by d/x")

	// A pinned handle follows its entry.
	hf, _, err := c.Acquire(Key{p, "f"}, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(Key{p, "f"}, Key{p, "g"}); err != nil {
		t.Fatal(err)
	}
	if hf.Key() != (Key{p, "g"}) {
		t.Errorf("handle key = %v", hf.Key())
	}
	release(t, hf)
	if err := c.Rename(Key{p, "d"}, Key{p, "e"}); err != nil {
		t.Fatal(err)
	}
	// Renaming an uncached file still drops a cached copy of the target.
	fill(t, c, Key{p, "t"}, "stale", "1")
	if err := c.Rename(Key{p, "uncached"}, Key{p, "t"}); err != nil {
		t.Fatal(err)
	}

	want := map[Key]string{
		{p, "g"}:         "file",
		{p, "e/x"}:       "dx",
		{p, "e/y/z"}:     "dyz",
		{p, "dd"}:        "not under d/",
		{"alice", "d/x"}: "other peer",
	}
	gone := []Key{{p, "f"}, {p, "d/x"}, {p, "d/y/z"}, {p, "t"}}
	check := func(c *Cache) {
		t.Helper()
		for k, v := range want {
			if got, ok := lookup(t, c, k); !ok || got != v {
				t.Errorf("%v = %q, %v; want %q", k, got, ok, v)
			}
		}
		for _, k := range gone {
			if _, ok := c.Meta(k); ok {
				t.Errorf("%v still cached", k)
			}
		}
		if st := c.Stats(); st.Entries != len(want) || st.DirtyFiles != 4 {
			t.Errorf("Stats = %+v", st)
		}
	}
	check(c)
	// Renames are persisted.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	check(openCache(t, dir, 0))
	if got := len(names(t, dir, "entries")); got != filesPer(c)*len(want) {
		t.Errorf("%d files in entries; want %d", got, filesPer(c)*len(want))
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "a"}
	write(t, c, key, "data")
	h, _, err := c.Acquire(key, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(key); err != nil {
		t.Errorf("second Remove = %v", err)
	}
	if _, ok := c.Meta(key); ok || len(c.Dirty()) != 0 {
		t.Errorf("still cached after Remove")
	}
	// Like an unlinked file, it stays readable and writable through h,
	// but nothing is persisted.
	if _, err := h.WriteAt([]byte("DA"), 0); err != nil {
		t.Error(err)
	}
	if got := contents(t, h); got != "DAta" || !h.Meta().Detached {
		t.Errorf("removed entry: %q, %+v", got, h.Meta())
	}
	release(t, h)
	if st := c.Stats(); st.Entries != 0 || st.Bytes != 0 || st.DirtyFiles != 0 || st.DirtyBytes != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
}

func TestCreateNew(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "new.txt"}
	h, err := c.Create(key, 0o640, "")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if m := h.Meta(); !m.Dirty || m.Size != 0 || m.Mode != 0o640 || m.DirtySince.IsZero() || m.Gen != 0 {
		t.Errorf("Meta = %+v; want dirty, empty, mode 0640", m)
	}
	if st := c.Stats(); st.Entries != 1 || st.DirtyFiles != 1 || st.Pinned != 1 || st.Misses != 1 {
		t.Errorf("Stats = %+v", st)
	}
	// The record is on disk before Create returns: an empty new file
	// survives a crash, and is to be uploaded.
	r, _ := recordOf(t, c, key)
	if !r.Dirty || r.Mode != 0o640 || r.Boot == "" {
		t.Errorf("record = %+v; want dirty, mode 0640, stamped", r)
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if m, ok := c2.Meta(key); !ok || !m.Dirty || m.Mode != 0o640 || m.Size != 0 {
		t.Errorf("after a crash: %+v, %v", m, ok)
	}
	if got := names(t, dir, "tmp"); len(got) != 0 {
		t.Errorf("Create left temporary files: %v", got)
	}

	// The mount's sequence: write, upload, mark clean.
	if _, err := h.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.MarkClean(h.Generation(), 5, "42"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	c3 := openCache(t, copyDir(t, dir), 0)
	if got, ok := lookup(t, c3, key); !ok || got != "hello" {
		t.Errorf("after MarkClean and a crash: %q, %v", got, ok)
	}
	if m, _ := c3.Meta(key); m.Dirty || m.Version != "42" || m.Mode != 0o640 {
		t.Errorf("after MarkClean and a crash: %+v", m)
	}
}

func TestCreateExisting(t *testing.T) {
	c := newCache(t, 0)
	clean, dirty := Key{"bob", "clean"}, Key{"bob", "dirty"}
	fill(t, c, clean, "remote content", "7")
	pinned, _, err := c.Acquire(clean, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, pinned)
	h, err := c.Create(clean, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	// Truncated in place: the other Handle sees it.
	if m := pinned.Meta(); !m.Dirty || m.Size != 0 || m.Mode != 0o600 || m.Gen != 1 {
		t.Errorf("pinned Meta = %+v; want dirty, empty, mode 0600", m)
	}
	if got := contents(t, pinned); got != "" {
		t.Errorf("pinned content = %q", got)
	}
	if st := c.Stats(); st.Entries != 1 || st.DirtyFiles != 1 || st.DirtyBytes != 0 || st.Bytes != 0 {
		t.Errorf("Stats = %+v", st)
	}

	// A dirty entry is emptied too; mode 0 keeps the recorded mode.
	write(t, c, dirty, "local")
	hd, _, err := c.Acquire(dirty, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := hd.SetMode(0o755); err != nil {
		t.Fatal(err)
	}
	release(t, hd)
	hd, err = c.Create(dirty, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, hd)
	if m := hd.Meta(); !m.Dirty || m.Size != 0 || m.Mode != 0o755 {
		t.Errorf("dirty Meta = %+v; want dirty, empty, mode 0755", m)
	}
	if r, _ := recordOf(t, c, dirty); r.Mode != 0o755 || !r.Dirty {
		t.Errorf("dirty record = %+v", r)
	}
	// Hits: two Acquires and two Creates of existing entries; the miss
	// is write's Acquire.
	if st := c.Stats(); st.Hits != 4 || st.Misses != 1 || st.DirtyFiles != 2 {
		t.Errorf("Stats = %+v; want 4 hits, 1 miss, 2 dirty", st)
	}
}

func TestCreateClosed(t *testing.T) {
	c := newCache(t, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(Key{"p", "a"}, 0o644, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close = %v; want ErrClosed", err)
	}
}

func TestCreateConcurrent(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "contended"}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				var h *Handle
				var err error
				if i%2 == 0 {
					h, err = c.Create(key, uint32(0o600+i), "")
				} else {
					h, _, err = c.Acquire(key, -1, "", true)
				}
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := h.WriteAt([]byte("x"), int64(i)); err != nil {
					t.Error(err)
				}
				_, _ = h.MarkClean(h.Generation(), h.Size(), "1")
				h.Release()
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Entries != 1 || st.Pinned != 0 {
		t.Errorf("Stats = %+v", st)
	}
	// Whatever the interleaving, memory and disk agree.
	m, _ := c.Meta(key)
	r, _ := recordOf(t, c, key)
	if r.Dirty != m.Dirty || r.Mode != m.Mode {
		t.Errorf("record %+v, Meta %+v", r, m)
	}
}

// A stale clean copy of "a" as a file (a was since replaced by a directory
// elsewhere) must not stop Rename("a", "c") from moving the dirty "a/b".
func TestRenameMovesEntriesUnderStaleFile(t *testing.T) {
	c := newCache(t, 1<<30)
	fill(t, c, Key{"bob", "a"}, "old file a", "1")
	write(t, c, Key{"bob", "a/b"}, "dirty b")
	if err := c.Rename(Key{"bob", "a"}, Key{"bob", "c"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookup(t, c, Key{"bob", "a/b"}); ok {
		t.Errorf("a/b still cached under its old name after renaming a to c")
	}
	if _, ok := lookup(t, c, Key{"bob", "c/b"}); !ok {
		t.Errorf("c/b not cached: the dirty copy did not follow the rename")
	}
}
