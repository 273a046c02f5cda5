package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

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
	r, _ := readRecord(t, metaFile(t, c, key))
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
	if r, _ := readRecord(t, metaFile(t, c, dirty)); r.Mode != 0o755 || !r.Dirty {
		t.Errorf("dirty record = %+v", r)
	}
	// Hits: two Acquires and two Creates of existing entries; the miss
	// is write's Acquire.
	if st := c.Stats(); st.Hits != 4 || st.Misses != 1 || st.DirtyFiles != 2 {
		t.Errorf("Stats = %+v; want 4 hits, 1 miss, 2 dirty", st)
	}
}

// TestCreateRebootAndPersist: a created entry is stamped like any other
// non-durable one, and Persist makes it survive a reboot.
func TestCreateRebootAndPersist(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	volatile, durable := Key{"p", "volatile"}, Key{"p", "durable"}
	for _, k := range []Key{volatile, durable} {
		h, err := c.Create(k, 0o644, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteAt([]byte(k.Path), 0); err != nil {
			t.Fatal(err)
		}
		if k == durable {
			if err := h.Persist(); err != nil {
				t.Fatal(err)
			}
		}
		release(t, h)
	}
	crashed := copyDir(t, dir)
	c2 := openCacheBoot(t, crashed, rebooted(t))
	if got := c2.Dirty(); !slices.Equal(got, []Key{durable}) {
		t.Fatalf("after a reboot: Dirty = %v; want only the persisted entry", got)
	}
	if got, _ := lookup(t, c2, durable); got != "durable" {
		t.Errorf("persisted content = %q", got)
	}
	if m, _ := c2.Meta(durable); m.Mode != 0o644 {
		t.Errorf("persisted mode = %o", m.Mode)
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
	r, _ := readRecord(t, metaFile(t, c, key))
	if r.Dirty != m.Dirty || r.Mode != m.Mode {
		t.Errorf("record %+v, Meta %+v", r, m)
	}
}

// TestRecordInPlace: records that are only stamped are rewritten in place
// (same file, no temporary file), shorter ones padded with white space,
// and what they leave parses as the newest record after a crash.
func TestRecordInPlace(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "a"}
	h, _, err := c.Acquire(key, -1, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if err := h.Truncate(0); err != nil {
		t.Fatal(err)
	}
	name := metaFile(t, c, key)
	ino := inode(t, name)
	if err := h.SetMode(0o644); err != nil {
		t.Fatal(err)
	}
	_, dirtyBytes := readRecord(t, name)
	if _, err := h.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	// Clean is shorter than dirty (no dirtySince): padded.
	if ok, err := h.MarkClean(h.Generation(), 4, "1"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if got := inode(t, name); got != ino {
		t.Errorf("metadata file replaced (inode %d, was %d); want rewrites in place", got, ino)
	}
	r, b := readRecord(t, name)
	if r.Dirty || r.Mode != 0o644 || r.Version != "1" {
		t.Errorf("record = %+v", r)
	}
	if len(b) != len(dirtyBytes) || b[len(b)-1] != '\n' || !bytes.HasSuffix(bytes.TrimRight(b, " \n"), []byte("}")) {
		t.Errorf("record file = %q; want the clean record padded to %d bytes", b, len(dirtyBytes))
	}
	if got := names(t, dir, "tmp"); len(got) != 0 {
		t.Errorf("temporary files: %v", got)
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if m, ok := c2.Meta(key); !ok || m.Dirty || m.Version != "1" || m.Mode != 0o644 {
		t.Errorf("after a crash: %+v, %v", m, ok)
	}

	// Growing again (dirty) overwrites the padding and loads.
	if _, err := h.WriteAt([]byte("more"), 4); err != nil {
		t.Fatal(err)
	}
	c3 := openCache(t, copyDir(t, dir), 0)
	if got, _ := lookup(t, c3, key); got != "datamore" {
		t.Errorf("after a second write and a crash: %q", got)
	}
	if !slices.Equal(c3.Dirty(), []Key{key}) {
		t.Errorf("Dirty = %v", c3.Dirty())
	}
}

// TestRecordLong: a record longer than a page cannot be rewritten in one
// page; it is replaced with a rename, and still loads.
func TestRecordLong(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", strings.Repeat("long/", 1000) + "name"}
	h, err := c.Create(key, 0o644, "")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	name := metaFile(t, c, key)
	if fi := mustStat(t, name); fi.Size() <= maxInPlace {
		t.Fatalf("record is %d bytes; the test needs more than %d", fi.Size(), maxInPlace)
	}
	ino := inode(t, name)
	if _, err := h.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.MarkClean(h.Generation(), 1, "3"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if got := inode(t, name); got == ino {
		t.Error("a record longer than a page was rewritten in place")
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if m, ok := c2.Meta(key); !ok || m.Dirty || m.Version != "3" {
		t.Errorf("after a crash: %+v, %v", m, ok)
	}
}

// TestDurableRecordNeverRewrittenInPlace: once Persist wrote a durable
// record, no later change writes into that file: it is replaced (with
// fsync) by a stamped one, so a power loss cannot leave a durable record
// torn or paired with newer data. A hard link keeps the durable file to
// look at.
func TestDurableRecordNeverRewrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "a"}
	h, err := c.Create(key, 0o644, "")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if _, err := h.WriteAt([]byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	for i, leave := range []func() error{
		func() error { _, err := h.WriteAt([]byte("v2"), 0); return err },
		func() error { _, err := h.MarkClean(h.Generation(), 2, "5"); return err },
		func() error { return h.Truncate(0) },
	} {
		if err := h.Persist(); err != nil {
			t.Fatal(err)
		}
		name := metaFile(t, c, key)
		kept := filepath.Join(t.TempDir(), "durable")
		if err := os.Link(name, kept); err != nil {
			t.Fatal(err)
		}
		durable, before := readRecord(t, kept)
		if durable.Boot != "" {
			t.Fatalf("%d: Persist wrote a stamped record: %+v", i, durable)
		}
		if err := leave(); err != nil {
			t.Fatal(err)
		}
		// SetMode and Rename of a non-durable entry write in place.
		if err := h.SetMode(0o600 + uint32(i)); err != nil {
			t.Fatal(err)
		}
		if _, after := readRecord(t, kept); !bytes.Equal(before, after) {
			t.Errorf("%d: durable record written in place: %q, was %q", i, after, before)
		}
		if r, _ := readRecord(t, name); r.Boot == "" {
			t.Errorf("%d: record after leaving the durable state is not stamped: %+v", i, r)
		}
	}
}

// TestSetModeUnchangedWritesNothing: the mount sets the mode it already
// recorded; that must not cost a metadata write.
func TestSetModeUnchangedWritesNothing(t *testing.T) {
	c := newCache(t, 0)
	key := Key{"bob", "a"}
	h, err := c.Create(key, 0o644, "")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	name := metaFile(t, c, key)
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(name, past, past); err != nil {
		t.Fatal(err)
	}
	if err := h.SetMode(0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(0); err != nil { // already dirty: no write either
		t.Fatal(err)
	}
	if got := mustStat(t, name).ModTime(); !got.Equal(past) {
		t.Errorf("metadata written (mtime %v) for an unchanged mode", got)
	}
	if err := h.SetMode(0o600); err != nil {
		t.Fatal(err)
	}
	if got := mustStat(t, name).ModTime(); got.Equal(past) {
		t.Error("a new mode was not written")
	}
	if r, _ := readRecord(t, name); r.Mode != 0o600 {
		t.Errorf("record mode = %o", r.Mode)
	}
}

// TestRebootDropsInPlaceRecords: every version of an in-place record is
// stamped, so a reboot discards the entry whatever the file holds then:
// the newest record, or one torn between two versions.
func TestRebootDropsInPlaceRecords(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	keys := []Key{{"p", "created"}, {"p", "cleaned"}, {"p", "torn"}}
	var versions [][]byte
	for i, k := range keys {
		h, err := c.Create(k, 0o644, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, b := readRecord(t, metaFile(t, c, k)); i == 2 {
			versions = append(versions, b)
		}
		if _, err := h.WriteAt([]byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if ok, err := h.MarkClean(h.Generation(), 1, "9"); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
		if _, b := readRecord(t, metaFile(t, c, k)); i == 2 {
			versions = append(versions, b)
		}
		release(t, h)
	}
	crashed := copyDir(t, dir)
	// A torn mixture of the two versions, at every byte boundary: none
	// may load without its stamp.
	tornName := filepath.Join(crashed, "entries", filepath.Base(metaFile(t, c, keys[2])))
	old, cur := versions[0], versions[1]
	for cut := 1; cut < len(cur); cut++ {
		mix := append(slices.Clone(old[:min(cut, len(old))]), cur[min(cut, len(cur)):]...)
		var r record
		if json.Unmarshal(mix, &r) == nil && r.Boot == "" {
			t.Errorf("torn at %d: %q parses unstamped", cut, mix)
		}
	}
	if err := os.WriteFile(tornName, append(slices.Clone(cur[:20]), old[20:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	// Same boot: a process crash keeps the intact ones.
	sameBoot := openCache(t, copyDir(t, crashed), 0)
	for _, k := range keys[:2] {
		if _, ok := sameBoot.Meta(k); !ok {
			t.Errorf("%v lost in a process crash", k)
		}
	}
	c2 := openCacheBoot(t, crashed, rebooted(t))
	if st := c2.Stats(); st.Entries != 0 {
		t.Errorf("after a reboot: %d entries loaded; want none", st.Entries)
	}
	if got := names(t, crashed, "entries"); len(got) != 0 {
		t.Errorf("after a reboot: files left %v", got)
	}
}

// TestFillRecordInPlace: Fill creates its record directly, and a first
// write to the filled entry rewrites it in place.
func TestFillRecordInPlace(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "f"}
	h, err := c.Fill(key, strings.NewReader("remote"), 6, "3")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	name := metaFile(t, c, key)
	ino := inode(t, name)
	if _, err := h.WriteAt([]byte("L"), 0); err != nil {
		t.Fatal(err)
	}
	if got := inode(t, name); got != ino {
		t.Error("first write replaced the record instead of rewriting it")
	}
	if err := c.Rename(key, Key{"bob", "g"}); err != nil {
		t.Fatal(err)
	}
	if got := inode(t, name); got != ino {
		t.Error("rename replaced the record instead of rewriting it")
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	if got, ok := lookup(t, c2, Key{"bob", "g"}); !ok || got != "Lemote" {
		t.Errorf("after rename and a crash: %q, %v", got, ok)
	}
	if got := fmt.Sprint(c2.Dirty()); got != `["bob:g"]` {
		t.Errorf("Dirty = %s", got)
	}
}

// A dirty copy's base (the peer version its writes started from) is
// recorded with it and survives a crash: from Create, from the mtime of
// the clean copy it was when first written, and from SetBase; once clean
// again, the next write starts from the new mtime.
func TestBaseRecorded(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	created, filled := Key{"bob", "new.txt"}, Key{"bob", "old.txt"}
	h, err := c.Create(created, 0o644, "none")
	if err != nil {
		t.Fatal(err)
	}
	release(t, h)
	fill(t, c, filled, "v1", "111")
	write(t, c, filled, "mine")
	crashed := func() *Cache { return openCache(t, copyDir(t, dir), 0) }
	for _, tc := range []struct {
		key  Key
		base string
	}{{created, "none"}, {filled, "111"}} {
		if m, _ := c.Meta(tc.key); m.Base != tc.base {
			t.Errorf("%v: Base %q, want %q", tc.key, m.Base, tc.base)
		}
		if m, ok := crashed().Meta(tc.key); !ok || !m.Dirty || m.Base != tc.base {
			t.Errorf("%v after a crash: %+v, want dirty with base %q", tc.key, m, tc.base)
		}
	}

	// An upload stored the copy as of an earlier generation: writes since
	// start from what it stored.
	h, _, err = c.Acquire(filled, -1, "", false)
	if err != nil || h == nil {
		t.Fatal(h, err)
	}
	if err := h.SetBase("222"); err != nil {
		t.Fatal(err)
	}
	if m, ok := crashed().Meta(filled); !ok || m.Base != "222" {
		t.Errorf("after SetBase and a crash: %+v", m)
	}
	// Clean, then written again: the base is the new mtime.
	if ok, err := h.MarkClean(h.Generation(), h.Size(), "333"); !ok || err != nil {
		t.Fatalf("MarkClean: %v %v", ok, err)
	}
	if m := h.Meta(); m.Base != "" {
		t.Errorf("clean copy: Base %q, want none (its version is its base)", m.Base)
	}
	if _, err := h.WriteAt([]byte("again"), 0); err != nil {
		t.Fatal(err)
	}
	release(t, h)
	if m, ok := crashed().Meta(filled); !ok || !m.Dirty || m.Base != "333" {
		t.Errorf("written after MarkClean(333), then a crash: %+v", m)
	}
}

// Create over an existing clean copy records the base it is given (the
// caller knows the peer's current version); over a dirty copy it keeps
// the copy's own. SetWriteBase sets what a clean copy's first write
// records.
func TestBaseOfCreateAndSetWriteBase(t *testing.T) {
	c := newCache(t, 0)
	clean, dirty, other := Key{"bob", "clean"}, Key{"bob", "dirty"}, Key{"bob", "other"}
	fill(t, c, clean, "v1", "111")
	fill(t, c, dirty, "v1", "111")
	write(t, c, dirty, "mine")  // base 111
	fill(t, c, other, "v1", "") // size mismatch at download: no mtime
	for _, tc := range []struct {
		key  Key
		want string
	}{{clean, "555"}, {dirty, "111"}} {
		h, err := c.Create(tc.key, 0, "555")
		if err != nil {
			t.Fatal(err)
		}
		if m := h.Meta(); !m.Dirty || m.Base != tc.want {
			t.Errorf("%v: after Create(base 555): %+v, want dirty with base %q", tc.key, m, tc.want)
		}
		release(t, h)
	}
	h, _, err := c.Acquire(other, -1, "", false)
	if err != nil || h == nil {
		t.Fatal(h, err)
	}
	h.SetWriteBase("777")
	if _, err := h.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if m := h.Meta(); m.Base != "777" {
		t.Errorf("first write after SetWriteBase(777): base %q", m.Base)
	}
	h.SetWriteBase("888") // dirty now: ignored
	if m := h.Meta(); m.Base != "777" {
		t.Errorf("SetWriteBase on a dirty copy changed its base to %q", m.Base)
	}
	release(t, h)
}

// SetSent's note is kept with a dirty copy across a crash, and cleared
// when the copy turns clean.
func TestSentRecorded(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key := Key{"bob", "f"}
	h, err := c.Create(key, 0o644, "none")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	if _, err := h.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.SetSent("4:abcd"); err != nil { // written with the record itself
		t.Fatal(err)
	}
	if m, ok := openCache(t, copyDir(t, dir), 0).Meta(key); !ok || m.Sent != "4:abcd" || m.Base != "none" {
		t.Errorf("after a crash: %+v, want sent 4:abcd and base none", m)
	}
	if err := h.Persist(); err != nil { // as after a failed upload
		t.Fatal(err)
	}
	if err := h.SetSent("4:ef01"); err != nil { // a durable record rewritten
		t.Fatal(err)
	}
	if m, ok := openCache(t, copyDir(t, dir), 0).Meta(key); !ok || m.Sent != "4:ef01" {
		t.Errorf("after Persist, SetSent and a crash: %+v, want sent 4:ef01", m)
	}
	if ok, err := h.MarkClean(h.Generation(), 4, "999"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The clean record carries no note: a later run does not bring it back.
	c2 := openCache(t, copyDir(t, dir), 0)
	h2, _, err := c2.Acquire(key, -1, "", false)
	if err != nil || h2 == nil {
		t.Fatal(h2, err)
	}
	if _, err := h2.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if m := h2.Meta(); m.Sent != "" || m.Base != "999" {
		t.Errorf("clean after a restart, then written: %+v, want no note and base 999", m)
	}
	release(t, h2)
	if _, err := h.WriteAt([]byte("more"), 4); err != nil {
		t.Fatal(err)
	}
	if m := h.Meta(); m.Sent != "" || m.Base != "999" {
		t.Errorf("written after MarkClean: %+v, want no sent note and base 999", m)
	}
}

// Records written before versions kept a clean copy's version and a dirty
// copy's base as modification times; they load as the mount's versions
// of those mtimes ("m<ns>"), a created file's -1 as "none".
func TestLegacyMtimeRecords(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	clean, created, edited := Key{"bob", "clean"}, Key{"bob", "created"}, Key{"bob", "edited"}
	fill(t, c, clean, "abc", "v1")
	h, err := c.Create(created, 0o644, "none")
	if err != nil {
		t.Fatal(err)
	}
	release(t, h)
	fill(t, c, edited, "abc", "v2")
	write(t, c, edited, "mine")
	legacy := map[Key]func(r *record){
		clean:   func(r *record) { r.Version, r.Mtime = "", 42 },
		created: func(r *record) { r.BaseVersion, r.Base = "", -1 },
		edited:  func(r *record) { r.BaseVersion, r.Base = "", 111 },
	}
	for key, old := range legacy {
		name := metaFile(t, c, key)
		r, _ := readRecord(t, name)
		old(&r)
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c2 := openCache(t, copyDir(t, dir), 0)
	for key, want := range map[Key]Meta{
		clean:   {Version: "m42"},
		created: {Dirty: true, Base: "none"},
		edited:  {Dirty: true, Version: "v2", Base: "m111"},
	} {
		m, ok := c2.Meta(key)
		if !ok || m.Dirty != want.Dirty || m.Version != want.Version || m.Base != want.Base {
			t.Errorf("%v: %+v, want version %q, base %q, dirty %v", key, m, want.Version, want.Base, want.Dirty)
		}
	}
}
