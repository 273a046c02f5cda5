package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

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
			if got := names(t, dir, "entries"); len(got) != 2*filesPer(c) {
				t.Errorf("entries = %v; want 2 entries' files", got)
			}
		})
	}
}

func TestOpenEvictsToBound(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	fill(t, c, Key{"p", "old"}, "aaaa", "1")
	if c.xattrs {
		// Records in attributes: the data files' ctimes give the
		// recency order after a restart, which no call sets; the
		// kernel's clock for them ticks every few milliseconds.
		time.Sleep(50 * time.Millisecond)
	}
	fill(t, c, Key{"p", "new"}, "bbbb", "1")
	write(t, c, Key{"p", "dirty"}, "cccc")
	if !c.xattrs {
		// Metadata mtimes give the recency order after a restart.
		old := filepath.Join(dir, "entries", c.entries[Key{"p", "old"}].id+metaSuffix)
		earlier := mustStat(t, old).ModTime().Add(-time.Second)
		if err := os.Chtimes(old, earlier, earlier); err != nil {
			t.Fatal(err)
		}
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
