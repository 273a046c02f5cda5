package cache

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func rs(pairs ...int64) []Range {
	var out []Range
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Range{pairs[i], pairs[i+1]})
	}
	return out
}

func TestAddRange(t *testing.T) {
	for _, tt := range []struct {
		in   []Range
		add  Range
		want []Range
	}{
		{nil, Range{0, 5}, rs(0, 5)},
		{rs(0, 5), Range{5, 8}, rs(0, 8)},           // touching: merged
		{rs(0, 5), Range{6, 8}, rs(0, 5, 6, 8)},     // apart
		{rs(10, 20), Range{0, 5}, rs(0, 5, 10, 20)}, // before
		{rs(0, 5, 10, 20), Range{3, 12}, rs(0, 20)}, // bridges
		{rs(0, 5, 10, 20, 30, 40), Range{4, 35}, rs(0, 40)},
		{rs(0, 5, 10, 20), Range{12, 15}, rs(0, 5, 10, 20)}, // inside
		{rs(0, 5), Range{7, 7}, rs(0, 5)},                   // empty
		{rs(0, 5), toEnd(3), rs(0, math.MaxInt64)},
	} {
		in := slices.Clone(tt.in)
		if got := addRange(tt.in, tt.add); !slices.Equal(got, tt.want) {
			t.Errorf("addRange(%v, %v) = %v, want %v", tt.in, tt.add, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("addRange changed its input %v to %v", in, tt.in)
		}
	}
}

func TestGapsIn(t *testing.T) {
	for _, tt := range []struct {
		known []Range
		r     Range
		want  []Range
	}{
		{nil, Range{0, 10}, rs(0, 10)},
		{rs(0, 10), Range{0, 10}, nil},
		{rs(2, 4, 6, 8), Range{0, 10}, rs(0, 2, 4, 6, 8, 10)},
		{rs(2, 4, 6, 8), Range{3, 7}, rs(4, 6)},
		{rs(0, 3, toEnd(8).Off, math.MaxInt64), Range{0, 100}, rs(3, 8)},
		{rs(5, 6), Range{7, 7}, nil},
	} {
		if got := gapsIn(tt.known, tt.r); !slices.Equal(got, tt.want) {
			t.Errorf("gapsIn(%v, %v) = %v, want %v", tt.known, tt.r, got, tt.want)
		}
	}
}

func TestCoalesce(t *testing.T) {
	var many []Range
	for i := range int64(MaxChanged + 2) {
		many = append(many, Range{i * 100, i*100 + 10})
	}
	// The gap after range 5 is the narrowest: merged first.
	many[5].End = 595
	many[7].End = 790
	got, ok := coalesce(many, nil, false)
	if !ok || len(got) != MaxChanged || got[5] != (Range{500, 610}) || got[6] != (Range{700, 810}) {
		t.Errorf("coalesce of %d ranges = %v, %v", len(many), got, ok)
	}
	// A partial copy merges only across bytes it holds.
	known := rs(595, 600, 790, 800)
	got, ok = coalesce(many, known, true)
	if !ok || len(got) != MaxChanged || got[5] != (Range{500, 610}) || got[6] != (Range{700, 810}) {
		t.Errorf("coalesce over known gaps = %v, %v", got, ok)
	}
	if got, ok := coalesce(many, rs(595, 600), true); ok {
		t.Errorf("coalesce with one known gap of two needed = %v, true; want not tracked", got)
	}
}

func TestDecodeRanges(t *testing.T) {
	if got, ok := decodeRanges([][2]int64{{0, 5}, {7, 9}}); !ok || !slices.Equal(got, rs(0, 5, 7, 9)) {
		t.Errorf("decode = %v, %v", got, ok)
	}
	for _, bad := range [][][2]int64{{{5, 5}}, {{-1, 2}}, {{0, 5}, {5, 6}}, {{3, 5}, {0, 1}}} {
		if got, ok := decodeRanges(bad); ok {
			t.Errorf("decodeRanges(%v) = %v, true", bad, got)
		}
	}
}

// TestChangedTracking: a clean copy written turns dirty with its changes
// tracked from its version: writes and truncations add their ranges (in
// the record first, so a crash keeps them), and so does an upload's
// MarkClean end them; a copy created by Create is not tracked.
func TestChangedTracking(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "big"}
	fill(t, c, key, strings.Repeat("x", 10000), "v1")
	h, ok, err := c.Acquire(key, 10000, "v1", false)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	defer release(t, h)
	if m := h.Meta(); m.Tracked || m.Changed != nil {
		t.Errorf("clean copy: %+v", m)
	}
	if _, err := h.WriteAt([]byte("abcd"), 10000); err != nil { // append
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("mid"), 5000); err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(9000); err != nil {
		t.Fatal(err)
	}
	want := rs(5000, 5003, 9000, 10004)
	if m := h.Meta(); !m.Dirty || !m.Tracked || !slices.Equal(m.Changed, want) || m.Base != "v1" {
		t.Errorf("after writes: %+v, want changed %v from v1", m, want)
	}
	// A crash keeps them.
	c2 := openCache(t, copyDir(t, dir), 0)
	if m, ok := c2.Meta(key); !ok || !m.Tracked || !slices.Equal(m.Changed, want) || m.Partial {
		t.Errorf("after a crash: %+v", m)
	}
	// Stored: tracking ends, and starts afresh at the next write.
	if ok, err := h.MarkClean(h.Generation(), 9000, "v2"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if m := h.Meta(); m.Tracked || m.Changed != nil {
		t.Errorf("clean again: %+v", m)
	}
	if _, err := h.WriteAt([]byte("z"), 0); err != nil {
		t.Fatal(err)
	}
	if m := h.Meta(); !m.Tracked || !slices.Equal(m.Changed, rs(0, 1)) || m.Base != "v2" {
		t.Errorf("written after the upload: %+v", m)
	}
	// Create: a new content altogether, not tracked.
	n, err := c.Create(Key{"bob", "new"}, 0o644, "none")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, n)
	if _, err := n.WriteAt([]byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if m := n.Meta(); m.Tracked {
		t.Errorf("created copy: %+v, want untracked", m)
	}
}

// TestChangedBounded: scattered writes are coalesced into MaxChanged
// ranges, the closest merged.
func TestChangedBounded(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "db"}
	fill(t, c, key, strings.Repeat("x", 1<<20), "v1")
	h, _, err := c.Acquire(key, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	for i := range int64(3 * MaxChanged) {
		if _, err := h.WriteAt([]byte("y"), i*4096); err != nil {
			t.Fatal(err)
		}
	}
	m := h.Meta()
	if !m.Tracked || len(m.Changed) > MaxChanged || m.Changed[0].Off != 0 || m.Changed[len(m.Changed)-1].End != (3*MaxChanged-1)*4096+1 {
		t.Errorf("after %d scattered writes: tracked %v, %d ranges %v", 3*MaxChanged, m.Tracked, len(m.Changed), m.Changed)
	}
}

// TestPartial: a copy made for writing without its content holds only
// what is written (and, past a truncation, zeros); it is never valid
// content for a reader, FillAt completes it without touching what was
// written, and a crash keeps what it holds and what changed.
func TestPartial(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "log"}
	h, err := c.Partial(key, 1000, "v1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if m := h.Meta(); m.Dirty || !m.Partial || m.Size != 1000 {
		t.Errorf("new partial copy: %+v", m)
	}
	if got := h.Meta().Unknown(0, 2000); !slices.Equal(got, rs(0, 1000)) {
		t.Errorf("unknown = %v, want all of the base", got)
	}
	if _, err := h.WriteAt([]byte("appended"), 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("mid"), 500); err != nil {
		t.Fatal(err)
	}
	m := h.Meta()
	if !m.Dirty || !m.Tracked || m.Base != "v1" || !slices.Equal(m.Changed, rs(500, 503, 1000, 1008)) ||
		!slices.Equal(m.Unknown(0, 2000), rs(0, 500, 503, 1000)) {
		t.Errorf("after writes: %+v, unknown %v", m, m.Unknown(0, 2000))
	}
	if _, ok := lookup(t, c, key); ok {
		t.Error("Acquire gave a partial copy as valid content")
	}
	// A crash keeps what it holds.
	c2 := openCache(t, copyDir(t, dir), 0)
	if m2, ok := c2.Meta(key); !ok || !m2.Partial || !slices.Equal(m2.Unknown(0, 2000), rs(0, 500, 503, 1000)) ||
		!slices.Equal(m2.Changed, m.Changed) {
		t.Errorf("after a crash: %+v", m2)
	}
	// Filled from the base: the written bytes stay.
	base := strings.Repeat("b", 1000)
	if err := h.FillAt([]byte(base), 0); err != nil {
		t.Fatal(err)
	}
	m = h.Meta()
	if m.Partial || !m.Dirty || !slices.Equal(m.Changed, rs(500, 503, 1000, 1008)) {
		t.Errorf("after the fill: %+v", m)
	}
	if got, want := contents(t, h), base[:500]+"mid"+base[503:]+"appended"; got != want {
		t.Errorf("content = %q, want %q", got, want)
	}
}

// TestPartialTruncated: what a partial copy cuts off comes back as zeros,
// which it holds; cut to nothing, it holds everything.
func TestPartialTruncated(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "f"}
	h, err := c.Partial(key, 1000, "v1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if err := h.Truncate(100); err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(300); err != nil {
		t.Fatal(err)
	}
	m := h.Meta()
	if !slices.Equal(m.Unknown(0, 300), rs(0, 100)) || !slices.Equal(m.Changed, rs(100, 1000)) {
		t.Errorf("cut to 100, grown to 300: unknown %v, changed %v", m.Unknown(0, 300), m.Changed)
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if m2, _ := c2.Meta(key); !slices.Equal(m2.Unknown(0, 300), rs(0, 100)) {
		t.Errorf("after a crash: unknown %v", m2.Unknown(0, 300))
	}
	if err := h.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if m := h.Meta(); m.Partial {
		t.Errorf("emptied, still partial: %+v", m)
	}
}

// TestPartialClean: a partial copy never written, or stored (MarkClean),
// is dropped once unpinned, never served as its version, and a clean
// partial record left by a crash is discarded; so is a copy filled in
// whole but never written.
func TestPartialClean(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "f"}
	unused, err := c.Partial(Key{"bob", "read"}, 3, "v1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := unused.FillAt([]byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	if m := unused.Meta(); m.Partial || m.Dirty || contents(t, unused) != "abc" {
		t.Errorf("filled in whole: %+v", m)
	}
	release(t, unused)
	if _, ok := c.Meta(Key{"bob", "read"}); ok {
		t.Errorf("a copy filled in, never written, stayed")
	}
	// Its file goes, or where records are attributes it is kept, empty,
	// as a spare (a metadata file it never had cannot be emptied).
	if c.xattrs {
		waitFiles(t, c, dir, 0, 1)
	} else {
		waitFiles(t, c, dir, 0, 0)
	}
	h, err := c.Partial(key, 100, "v1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("x"), 100); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.MarkClean(h.Generation(), 101, "v2"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if h2, ok, err := c.Acquire(key, 101, "v2", false); err != nil || ok {
		t.Errorf("Acquire of a clean partial copy: valid %v, %v", ok, err)
	} else if h2 != nil {
		release(t, h2)
	}
	crashed := copyDir(t, dir)
	release(t, h)
	if _, ok := c.Meta(key); ok {
		t.Error("a clean partial copy stayed after its last release")
	}
	c2 := openCache(t, crashed, 0)
	if _, ok := c2.Meta(key); ok {
		t.Error("a clean partial record was loaded")
	}
	// A whole clean copy of that version is used as it is.
	fill(t, c, key, "whole", "v3")
	w, err := c.Partial(key, 5, "v3", "v3")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, w)
	if m := w.Meta(); m.Partial || m.Dirty || contents(t, w) != "whole" {
		t.Errorf("Partial over a valid copy: %+v", m)
	}
	if _, err := c.Fill(key, strings.NewReader("x"), 1, "v4"); err != nil {
		t.Fatal(err) // replaced: fine, it is clean
	}
	p, err := c.Partial(Key{"bob", "g"}, 10, "v1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, p)
	if _, err := p.WriteAt([]byte("w"), 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fill(Key{"bob", "g"}, strings.NewReader("x"), 1, "v1"); !errors.Is(err, ErrPartial) {
		t.Errorf("Fill over a dirty partial copy: %v, want ErrPartial", err)
	}
}
