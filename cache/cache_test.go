package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
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

func TestLRUEviction(t *testing.T) {
	c := newCache(t, 10)
	a, b, cc, d, e := Key{"p", "a"}, Key{"p", "b"}, Key{"p", "c"}, Key{"p", "d"}, Key{"p", "e"}
	cached := func(k Key) bool {
		t.Helper()
		_, ok := c.Meta(k)
		return ok
	}
	fill(t, c, a, "aaaa", "1")
	fill(t, c, b, "bbbb", "1")
	lookup(t, c, a) // a is now more recent than b
	fill(t, c, cc, "cccc", "1")
	if cached(b) || !cached(a) || !cached(cc) {
		t.Fatalf("after filling c: a %v b %v c %v; want b evicted", cached(a), cached(b), cached(cc))
	}
	if st := c.Stats(); st.Evictions != 1 || st.Bytes != 8 {
		t.Fatalf("Stats = %+v", st)
	}

	// Pinned a and dirty d are never evicted; c, least recent, goes.
	ha, _, err := c.Acquire(a, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	write(t, c, d, "dddd")
	if cached(cc) || !cached(a) || !cached(d) {
		t.Fatalf("after writing d: a %v c %v d %v; want c evicted", cached(a), cached(cc), cached(d))
	}
	// Over the bound with only pinned and dirty data left: e itself goes
	// once released.
	he, err := c.Fill(e, strings.NewReader("eeee"), 4, "1")
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); !st.OverLimit || st.Bytes != 12 {
		t.Errorf("Stats with e pinned = %+v; want over limit", st)
	}
	release(t, he)
	release(t, ha)
	st := c.Stats()
	if cached(e) || !cached(a) || !cached(d) || st.Evictions != 3 || st.OverLimit {
		t.Errorf("after releases: a %v d %v e %v, %+v", cached(a), cached(d), cached(e), st)
	}

	// Dirty data alone may exceed the bound.
	write(t, c, Key{"p", "big"}, strings.Repeat("x", 20))
	st = c.Stats()
	if !st.OverLimit || st.DirtyBytes != 24 || cached(a) {
		t.Errorf("with 24 dirty bytes: %+v, a cached %v", st, cached(a))
	}
	if got, ok := lookup(t, c, d); !ok || got != "dddd" {
		t.Errorf("dirty d = %q, %v", got, ok)
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
	if got := len(names(t, dir, "entries")); got != 2*len(want) {
		t.Errorf("%d files in entries; want %d", got, 2*len(want))
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

func TestConcurrentSameKey(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "shared"}
	h0, _, err := c.Acquire(key, -1, "", true)
	if err != nil {
		t.Fatal(err)
	}
	const n, chunk = 8, 1000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			h, found, err := c.Acquire(key, -1, "", false)
			if err != nil || !found {
				t.Errorf("Acquire = %v, %v", found, err)
				return
			}
			defer h.Release()
			p := bytes.Repeat([]byte{byte('a' + i)}, chunk)
			for j := 0; j < chunk; j += 100 {
				if _, err := h.WriteAt(p[j:j+100], int64(i*chunk+j)); err != nil {
					t.Error(err)
				}
				_ = h.Generation()
				_ = h.Meta()
			}
			buf := make([]byte, chunk)
			if _, err := h.ReadAt(buf, int64(i*chunk)); err != nil || !bytes.Equal(buf, p) {
				t.Errorf("reader %d: %v", i, err)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			gen := c.Generation(key)
			// Any outcome is fine as long as it is race-free.
			_, _ = h0.MarkClean(gen, h0.Size(), "1")
		}
	})
	wg.Wait()
	if h0.Size() != n*chunk {
		t.Errorf("size = %d; want %d", h0.Size(), n*chunk)
	}
	release(t, h0)
	if st := c.Stats(); st.Pinned != 0 || st.Entries != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestConcurrentKeys(t *testing.T) {
	c := newCache(t, 64<<10)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				key := Key{fmt.Sprintf("p%d", i%3), fmt.Sprintf("dir%d/f%d", i, j)}
				content := strings.Repeat(fmt.Sprint(i), 1000+j)
				h, err := c.Fill(key, strings.NewReader(content), int64(len(content)), strconv.Itoa(j+1))
				if err != nil {
					t.Error(err)
					return
				}
				if got := contents(t, h); got != content {
					t.Errorf("%v: wrong content", key)
				}
				if j%4 == 0 {
					h.WriteAt([]byte("w"), 0)
					if _, err := c.MarkClean(key, h.Generation(), h.Size(), "7"); err != nil {
						t.Error(err)
					}
				}
				h.Release()
				switch j % 5 {
				case 1:
					c.Remove(key)
				case 2:
					c.Rename(key, Key{key.Peer, key.Path + ".renamed"})
				case 3:
					c.Rename(Key{key.Peer, fmt.Sprintf("dir%d", i)}, Key{key.Peer, fmt.Sprintf("moved%d", i)})
				}
				c.Stats()
				c.Dirty()
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if st.Pinned != 0 || st.Bytes > st.MaxBytes || st.DirtyFiles != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestClosed(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Error("second Open of a directory in use succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Acquire(Key{"p", "a"}, -1, "", true); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close = %v", err)
	}
	if _, err := c.Fill(Key{"p", "a"}, strings.NewReader("x"), 1, "1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Fill after Close = %v", err)
	}
	if err := c.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
}

func BenchmarkAcquireHit(b *testing.B) {
	c := newCache(b, 0)
	keys := make([]Key, 1000)
	for i := range keys {
		keys[i] = Key{"bob", fmt.Sprintf("dir/file%d", i)}
		fill(b, c, keys[i], "content", "1")
	}
	// Keep every entry pinned so that hits measure the lookup, not the
	// open(2) of an unpinned data file.
	for _, k := range keys {
		h, _, err := c.Acquire(k, -1, "", false)
		if err != nil {
			b.Fatal(err)
		}
		defer h.Release()
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		h, ok, err := c.Acquire(keys[i%len(keys)], 7, "1", false)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		h.Release()
		i++
	}
}
