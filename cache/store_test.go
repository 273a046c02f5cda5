package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
)

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
	if got := names(t, dir, "entries"); len(got) != 2*filesPer(c2) {
		t.Errorf("entries = %v; want only the 2 kept entries' files", got)
	}
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

// TestRecordInPlace: records that are only stamped are rewritten in place
// (same file, no temporary file), shorter ones padded with white space,
// and what they leave parses as the newest record after a crash.
func TestRecordInPlace(t *testing.T) {
	dir := t.TempDir()
	c := openMetaCache(t, dir)
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
	if _, err := h.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	// The write's range is in the record (it is tracked since the copy
	// turned dirty).
	dr, dirtyBytes := readRecord(t, name)
	if !dr.Tracked || !slices.Equal(dr.Changed, [][2]int64{{0, 4}}) {
		t.Errorf("dirty record = %+v, want changed [0, 4)", dr)
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
	c2 := openMetaCache(t, copyDir(t, dir))
	if m, ok := c2.Meta(key); !ok || m.Dirty || m.Version != "1" || m.Mode != 0o644 {
		t.Errorf("after a crash: %+v, %v", m, ok)
	}

	// Growing again (dirty) overwrites the padding and loads.
	if _, err := h.WriteAt([]byte("more"), 4); err != nil {
		t.Fatal(err)
	}
	c3 := openMetaCache(t, copyDir(t, dir))
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
	c := openMetaCache(t, dir)
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

// TestRebootDropsInPlaceRecords: every version of an in-place record is
// stamped, so a reboot discards the entry whatever the file holds then:
// the newest record, or one torn between two versions.
func TestRebootDropsInPlaceRecords(t *testing.T) {
	dir := t.TempDir()
	c := openMetaCache(t, dir)
	keys := []Key{{"p", "created"}, {"p", "cleaned"}, {"p", "torn"}}
	var versions [][]byte
	for i, k := range keys {
		h, err := c.Create(k, 0o644, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, b := recordOf(t, c, k); i == 2 {
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
		if _, b := recordOf(t, c, k); i == 2 {
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
	sameBoot := openMetaCache(t, copyDir(t, crashed))
	for _, k := range keys[:2] {
		if _, ok := sameBoot.Meta(k); !ok {
			t.Errorf("%v lost in a process crash", k)
		}
	}
	c2 := openCacheWith(t, Options{Dir: crashed, BootIDFile: rebooted(t), MetaFiles: true})
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
	c := openMetaCache(t, dir)
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
	c2 := openMetaCache(t, copyDir(t, dir))
	if got, ok := lookup(t, c2, Key{"bob", "g"}); !ok || got != "Lemote" {
		t.Errorf("after rename and a crash: %q, %v", got, ok)
	}
	if got := fmt.Sprint(c2.Dirty()); got != `["bob:g"]` {
		t.Errorf("Dirty = %s", got)
	}
}

// Records written before versions kept a clean copy's version and a dirty
// copy's base as modification times; they load as the mount's versions
// of those mtimes ("m<ns>"), a created file's -1 as "none".
func TestLegacyMtimeRecords(t *testing.T) {
	dir := t.TempDir()
	c := openMetaCache(t, dir)
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
	c2 := openMetaCache(t, copyDir(t, dir))
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

// Removing a clean entry deletes its files in the background, removing a
// dirty one at once (its record would bring the file back after a
// crash); either way the cache forgets the key at once, and Close waits
// for the background deletions.
func TestRemoveFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, MetaFiles: testMetaFiles})
	if err != nil {
		t.Fatal(err)
	}
	clean, dirty := Key{Peer: "p", Path: "clean"}, Key{Peer: "p", Path: "dirty"}
	fill(t, c, clean, "clean copy", "7")
	write(t, c, dirty, "unsent")
	if got := len(names(t, dir, "entries")); got != 2*filesPer(c) {
		t.Fatalf("%d files in entries/, want %d", got, 2*filesPer(c))
	}
	if err := c.Remove(dirty); err != nil {
		t.Fatal(err)
	}
	if got := len(names(t, dir, "entries")); got != filesPer(c) {
		t.Errorf("%d files in entries/ right after removing the dirty entry, want %d", got, filesPer(c))
	}
	if err := c.Remove(clean); err != nil {
		t.Fatal(err)
	}
	for _, k := range []Key{clean, dirty} {
		if _, ok := lookup(t, c, k); ok {
			t.Errorf("%v still cached after Remove", k)
		}
	}
	// In the background, the clean entry's files are emptied and kept
	// for reuse (reuse.go); Close deletes them.
	testutil.Eventually(t, "the removed entries' files to be emptied", func() bool { return nonEmpty(t, dir) == 0 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("entries/ after Remove and Close: %q", got)
	}
	// Many removals in a row (more than the queue holds) all complete.
	c = openCache(t, dir, 0)
	for i := range 5000 {
		k := Key{Peer: "p", Path: string(rune('a'+i%26)) + time.Duration(i).String()}
		fill(t, c, k, "x", "1")
		if err := c.Remove(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir, "entries"); len(got) != 0 {
		t.Errorf("%d files left after 5000 removals and Close", len(got))
	}
}

// A crash can leave the files of a replaced clean copy behind (they are
// deleted in the background): Open then prefers the dirty record, and a
// stale clean one never answers for the file's new attributes.
func TestStaleCopyAfterCrash(t *testing.T) {
	for _, dirtySrc := range []bool{false, true} {
		dir := t.TempDir()
		c, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		k, src := Key{Peer: "p", Path: "doc"}, Key{Peer: "p", Path: ".doc.swp"}
		fill(t, c, k, "old text", "100")
		old := copyDir(t, dir) // the old copy's files, as a crash would leave them
		if dirtySrc {
			write(t, c, src, "new text")
		} else {
			fill(t, c, src, "new text", "200")
		}
		if err := c.Rename(src, k); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		// Put the old copy's files back next to the new record.
		for _, n := range names(t, old, "entries") {
			b, err := os.ReadFile(filepath.Join(old, "entries", n))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "entries", n), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c = openCache(t, dir, 0)
		if dirtySrc {
			got, ok := lookup(t, c, k)
			if !ok || got != "new text" {
				t.Errorf("dirty rename over a stale copy: %q, %v after a crash; want the new text", got, ok)
			}
			continue
		}
		h, ok, err := c.Acquire(k, int64(len("new text")), "200", false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if got := contents(t, h); got != "new text" {
				t.Errorf("clean copy for the new attributes is %q", got)
			}
			release(t, h)
		}
		if h, ok, _ := c.Acquire(k, int64(len("old text")), "100", false); ok {
			release(t, h) // the stale one may win the key; it only matches the old attributes
		}
	}
}
