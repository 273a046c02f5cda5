package cache

import (
	"path/filepath"
	"slices"
	"testing"
)

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
	written := recordMark(t, c, key)
	if err := h.SetMode(0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(0); err != nil { // already dirty: no write either
		t.Fatal(err)
	}
	if written() {
		t.Errorf("metadata written for an unchanged mode")
	}
	if err := h.SetMode(0o600); err != nil {
		t.Fatal(err)
	}
	if !written() {
		t.Error("a new mode was not written")
	}
	if r, _ := recordOf(t, c, key); r.Mode != 0o600 {
		t.Errorf("record mode = %o", r.Mode)
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

// TestStreamMark: StreamAt raises the stream mark; writes at or past it
// and growth leave the stream intact, a write, a truncation or a
// re-creation below it break it, and ResetStream starts over.
func TestStreamMark(t *testing.T) {
	c := openCache(t, t.TempDir(), 0)
	h, err := c.Create(Key{"bob", "f"}, 0o644, "none")
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h)
	write := func(s string, off int64) {
		t.Helper()
		if _, err := h.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
	check := func(wantMark int64, wantIntact bool) {
		t.Helper()
		if mark, intact := h.Streamed(); mark != wantMark || intact != wantIntact {
			t.Fatalf("Streamed() = %d, %v; want %d, %v", mark, intact, wantMark, wantIntact)
		}
	}
	write("0123456789", 0)
	buf := make([]byte, 4)
	if n, err := h.StreamAt(buf, 2); n != 4 || err != nil || string(buf) != "2345" {
		t.Fatalf("StreamAt = %d, %v, %q", n, err, buf)
	}
	check(6, true)
	write("ab", 6) // at the mark: not read yet
	write("cd", 20)
	if err := h.Truncate(30); err != nil { // growth
		t.Fatal(err)
	}
	check(6, true)
	write("x", 5)
	check(6, false)

	h.ResetStream()
	check(0, true)
	if _, err := h.StreamAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(9); err != nil {
		t.Fatal(err)
	}
	check(10, false)

	h.ResetStream()
	if _, err := h.StreamAt(make([]byte, 5), 0); err != nil {
		t.Fatal(err)
	}
	h2, err := c.Create(Key{"bob", "f"}, 0o644, "none") // O_TRUNC through another open
	if err != nil {
		t.Fatal(err)
	}
	defer release(t, h2)
	check(5, false)
}
