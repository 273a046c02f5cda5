package cache

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// xattrCache opens a cache in dir that keeps records in attributes, or
// skips the test where dir's file system has no user attributes (or this
// is the metadata-file run).
func xattrCache(t *testing.T, dir string) *Cache {
	t.Helper()
	if testMetaFiles {
		t.Skip("the metadata-file run")
	}
	c := openCache(t, dir, 0)
	if !c.xattrs {
		t.Skip("no user extended attributes here")
	}
	return c
}

// A new entry is one file: its record is its data file's attribute, and
// survives a crash and a restart like a metadata file did.
func TestRecordInAttribute(t *testing.T) {
	dir := t.TempDir()
	c := xattrCache(t, dir)
	key := Key{"bob", "new.txt"}
	h, err := c.Create(key, 0o640, "none")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt([]byte("unsent"), 0); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "entries"); len(got) != 1 || !strings.HasSuffix(got[0], dataSuffix) {
		t.Fatalf("entries/ = %q; want one data file", got)
	}
	if r, _ := recordOf(t, c, key); !r.Dirty || r.Mode != 0o640 || r.BaseVersion != "none" || r.Boot == "" {
		t.Errorf("record = %+v", r)
	}
	crashed := copyDir(t, dir)
	release(t, h)
	c2 := openCache(t, crashed, 0)
	if m, ok := c2.Meta(key); !ok || !m.Dirty || m.Mode != 0o640 || m.Base != "none" || m.Size != 6 {
		t.Errorf("after a crash: %+v, %v", m, ok)
	}
	if got, _ := lookup(t, c2, key); got != "unsent" {
		t.Errorf("after a crash: %q", got)
	}
}

// A data file with no record attribute (a crash before the first record
// of a new entry) is deleted at Open; one with an empty attribute is a
// spare; one with a garbled record is discarded.
func TestAttributeCrashStates(t *testing.T) {
	dir := t.TempDir()
	c := xattrCache(t, dir)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	entries := filepath.Join(dir, "entries")
	for name, rec := range map[string][]byte{"none": nil, "empty": {}, "garbled": []byte("{not json")} {
		p := filepath.Join(entries, name+dataSuffix)
		if err := os.WriteFile(p, []byte("data of "+name), 0o600); err != nil {
			t.Fatal(err)
		}
		if rec != nil {
			if err := syscall.Setxattr(p, recordXattr, rec, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	c = openCache(t, dir, 0)
	if st := c.Stats(); st.Entries != 0 {
		t.Errorf("Stats = %+v; want no entries", st)
	}
	if got := names(t, dir, "entries"); len(got) != 1 || got[0] != "empty"+dataSuffix {
		t.Errorf("entries/ = %q; want the spare only", got)
	}
	if n := nonEmpty(t, dir); n != 0 {
		t.Errorf("%d files hold data; want the spare emptied", n)
	}
	write(t, c, Key{"p", "a"}, "reuses the spare")
	if got := names(t, dir, "entries"); len(got) != 1 || got[0] != "empty"+dataSuffix {
		t.Errorf("entries/ = %q; want the spare reused", got)
	}
}

// outgrown makes an entry of c whose record outgrew the attribute: a
// file written as short and renamed to long, 4 KiB of path, whose record
// is a metadata file from then on.
func outgrown(t *testing.T, c *Cache) (short, long Key, e *entry) {
	t.Helper()
	short = Key{"bob", "short"}
	long = Key{"bob", strings.Repeat("long/", 800) + "name"}
	write(t, c, short, "content")
	if err := c.Rename(short, long); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	e = c.entries[long]
	c.mu.Unlock()
	if !e.metaFile {
		t.Fatal("a record longer than an attribute holds is not in a metadata file")
	}
	return short, long, e
}

// A record too long for an attribute moves its entry to a metadata file
// for good, and the attribute's older record goes; Open prefers that file
// to the attribute should a crash leave both; and recycling such an entry empties the attribute
// before the file goes, so that no crash lets the older record speak.
func TestRecordOutgrowsAttribute(t *testing.T) {
	dir := t.TempDir()
	c := xattrCache(t, dir)
	short, long, e := outgrown(t, c)
	if got := names(t, dir, "entries"); len(got) != 2 {
		t.Fatalf("entries/ = %q; want the data file and its metadata file", got)
	}
	b, ok, err := readRecordXattr(c.dataPath(e.id))
	if err != nil || ok {
		t.Errorf("the attribute still holds %q, %v, %v once the record is a file", b, ok, err)
	}
	// A crash between the file's rename and the attribute's removal
	// leaves both: put the older record back.
	old, _ := recordOf(t, c, long)
	old.Path = escapeName(short.Path)
	oldJSON, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setxattr(c.dataPath(e.id), recordXattr, oldJSON, 0); err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, dir)
	c2 := openCache(t, crashed, 0)
	if _, ok := c2.Meta(short); ok {
		t.Error("the attribute's older record came back")
	}
	if m, ok := c2.Meta(long); !ok || !m.Dirty || m.Size != 7 {
		t.Errorf("after a crash: %+v, %v", m, ok)
	}
	// Later records of that entry stay in its metadata file.
	h, _, err := c2.Acquire(long, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.MarkClean(h.Generation(), 7, "v2"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	release(t, h)
	if r, _ := recordOf(t, c2, long); r.Dirty || r.Version != "v2" {
		t.Errorf("record after MarkClean: %+v", r)
	}
	// The state a crash between emptying the attribute and unlinking the
	// metadata file leaves: the entry, whole, from its metadata file.
	c2.mu.Lock()
	e2 := c2.entries[long]
	c2.mu.Unlock()
	mid := copyDir(t, crashed)
	if err := syscall.Setxattr(filepath.Join(mid, "entries", e2.id+dataSuffix), recordXattr, nil, 0); err != nil {
		t.Fatal(err)
	}
	c3 := openCache(t, mid, 0)
	if m, ok := c3.Meta(long); !ok || m.Dirty || m.Version != "v2" {
		t.Errorf("between emptying the attribute and unlinking the file: %+v, %v", m, ok)
	}
	// Recycled: one empty spare file, no record anywhere.
	if err := c2.Remove(long); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, c2, crashed, 0, 1)
	if got := names(t, crashed, "entries"); len(got) != 1 || got[0] != e2.id+dataSuffix {
		t.Errorf("entries/ = %q; want the spare's data file only", got)
	}
}

// A cache written by an earlier version, with metadata files, opens with
// every entry; those entries keep their metadata files, and its spares
// (pairs) are deleted. And a cache written with attributes opens with
// every entry where metadata files are asked for (Options.MetaFiles).
func TestRecordModesMix(t *testing.T) {
	dir := t.TempDir()
	xattrCache(t, t.TempDir()) // skips where there are no attributes
	old := openMetaCache(t, dir)
	dirty, clean, gone := Key{"p", "dirty"}, Key{"p", "clean"}, Key{"p", "gone"}
	write(t, old, dirty, "unsent")
	fill(t, old, clean, "clean copy", "7")
	fill(t, old, gone, "dropped", "1")
	if err := old.Remove(gone); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, old, dir, 2, 1)
	crashed := copyDir(t, dir)
	c := openCache(t, crashed, 0)
	if m, ok := c.Meta(dirty); !ok || !m.Dirty || m.Size != 6 {
		t.Errorf("dirty entry of the older version: %+v, %v", m, ok)
	}
	if got, _ := lookup(t, c, clean); got != "clean copy" {
		t.Errorf("clean entry of the older version: %q", got)
	}
	if got := names(t, crashed, "entries"); len(got) != 4 {
		t.Errorf("entries/ = %q; want the two entries' pairs, and no spare pair", got)
	}
	write(t, c, dirty, "unsent, and more")
	if _, b := recordOf(t, c, dirty); !strings.Contains(string(b), `"dirty":true`) {
		t.Errorf("record %s", b)
	}
	write(t, c, Key{"p", "new"}, "in an attribute")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	back := openMetaCache(t, crashed)
	for k, want := range map[Key]string{dirty: "unsent, and more", clean: "clean copy", {"p", "new"}: "in an attribute"} {
		if got, ok := lookup(t, back, k); !ok || got != want {
			t.Errorf("%v with metadata files asked for: %q, %v; want %q", k, got, ok, want)
		}
	}
}

// A durable record (Persist: a closed file whose upload failed) is a file
// of its own, which versions before records in attributes read: a
// downgrade, which drops data files without one, keeps it. It survives a
// reboot too, and the entry keeps its file from then on.
func TestDurableRecordInFile(t *testing.T) {
	dir := t.TempDir()
	c := xattrCache(t, dir)
	kept, pending := Key{"p", "persisted"}, Key{"p", "written"}
	h := writeHeld(t, c, kept.Path, "exists nowhere else")
	if err := h.Persist(); err != nil {
		t.Fatal(err)
	}
	release(t, h)
	write(t, c, pending, "not persisted")
	c.mu.Lock()
	e := c.entries[kept]
	c.mu.Unlock()
	if r, _ := readRecord(t, c.metaPath(e.id)); !r.Dirty || r.Boot != "" {
		t.Fatalf("durable record in its file: %+v", r)
	}
	// What an older version sees: metadata files only.
	old := copyDir(t, dir)
	datas, err := filepath.Glob(filepath.Join(old, "entries", "*"+dataSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range datas {
		if err := syscall.Removexattr(d, recordXattr); err != nil && err != syscall.ENODATA {
			t.Fatal(err)
		}
	}
	o := openCacheWith(t, Options{Dir: old, MetaFiles: true, BootIDFile: rebooted(t)})
	if got, ok := lookup(t, o, kept); !ok || got != "exists nowhere else" {
		t.Errorf("the persisted file without attributes, after a reboot: %q, %v", got, ok)
	}
	// Leaving the durable state keeps the file.
	h, _, err = c.Acquire(kept, -1, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.MarkClean(h.Generation(), h.Size(), "v1"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	release(t, h)
	if r, _ := readRecord(t, c.metaPath(e.id)); r.Dirty || r.Version != "v1" {
		t.Errorf("after MarkClean: %+v", r)
	}
}
