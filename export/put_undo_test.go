package export

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// undoTestMin is the undoMinSize of these tests: their files are 3 MiB.
const undoTestMin = 1 << 20

// inode returns the inode number of file p.
func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// onceAt is a patchHook that calls f the first time a change in place
// reaches stage, and returns what f returns (errPatchCrashed: a crash
// there); every other call lets the change go on.
func onceAt(stage string, f func() error) func(string) error {
	var fired atomic.Bool
	return func(s string) error {
		if s != stage || fired.Swap(true) {
			return nil
		}
		return f()
	}
}

// crashAt is a patchHook that crashes the first change in place at stage.
func crashAt(stage string) func(string) error {
	return onceAt(stage, func() error { return errPatchCrashed })
}

// twoRangeDelta returns old with "NEW" at byte 100 and 4 KiB of 0xEE at
// 2 MiB, and the two ranges: a delta a change in place writes in two
// steps (patchHook "applied" comes between them).
func twoRangeDelta(old []byte) ([]byte, []peerproto.Range) {
	want := append([]byte(nil), old...)
	copy(want[100:], "NEW")
	copy(want[2<<20:], bytes.Repeat([]byte{0xEE}, 4096))
	return want, []peerproto.Range{{Off: 100, Len: 3}, {Off: 2 << 20, Len: 4096}}
}

// undoRecords lists the undo records anywhere under dir.
func undoRecords(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	for _, p := range tempFiles(t, dir) {
		if strings.HasPrefix(filepath.Base(p), jail.UndoPrefix) {
			found = append(found, p)
		}
	}
	return found
}

// TestServerPutDeltaInPlace: where the old content cannot be cloned, a
// delta PUT to a large file that overwrites little of it is applied to
// the file itself (the same inode, its log line says "in place"), and
// the result is what a copy would have held; one that overwrites most of
// it is applied to a copy, as before. No temporary file or undo record
// is left.
func TestServerPutDeltaInPlace(t *testing.T) {
	dir := t.TempDir()
	var logs logBuffer
	_, addr := testServeLog(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin}, &logs)
	c := attrsClient(t, addr)
	file := filepath.Join(dir, "big.bin")
	cur := randomBytes(3<<20+123, 7)
	ver := doneVer(t, c.put("big.bin", cur))
	for _, tc := range []struct {
		name    string
		size    int // 0: unchanged
		ranges  []peerproto.Range
		inPlace bool
	}{
		{"append 4 KiB", len(cur) + 4096, []peerproto.Range{{Off: int64(len(cur)), Len: 4096}}, true},
		{"overwrite the middle", 0, []peerproto.Range{{Off: 1 << 20, Len: 4096}}, true},
		{"several ranges", 0, []peerproto.Range{{Off: 0, Len: 1}, {Off: 5000, Len: 70000}, {Off: 2 << 20, Len: 3}}, true},
		{"grow with a hole, then data", 4 << 20, []peerproto.Range{{Off: 4<<20 - 100, Len: 100}}, true},
		{"cut the last MiB", 3 << 20, nil, true},
		{"overwrite most of it", 0, []peerproto.Range{{Off: 10, Len: 2 << 20}}, false},
		{"append again", 3<<20 + 5, []peerproto.Range{{Off: 3 << 20, Len: 5}}, true},
	} {
		size := tc.size
		if size == 0 {
			size = len(cur)
		}
		want := make([]byte, size)
		copy(want, cur)
		fresh := randomBytes(size, uint64(len(tc.name)))
		for _, r := range tc.ranges {
			copy(want[r.Off:r.End()], fresh[r.Off:r.End()])
		}
		ino := inode(t, file)
		logs.mu.Lock()
		logs.buf.Reset()
		logs.mu.Unlock()
		reply := c.putDelta("big.bin", ver, want, tc.ranges)
		if !strings.HasPrefix(reply, fmt.Sprintf("PUT DONE %d ", size)) {
			t.Fatalf("%s: reply %q", tc.name, reply)
		}
		got, err := os.ReadFile(file)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: the file holds %d bytes (%v), not the %d of the old version with the ranges written in", tc.name, len(got), err, len(want))
		}
		if same := inode(t, file) == ino; same != tc.inPlace {
			t.Errorf("%s: changed in place %v, want %v", tc.name, same, tc.inPlace)
		}
		nv := doneVer(t, reply)
		if nv == ver {
			t.Fatalf("%s: the new content kept the version token %s", tc.name, ver)
		}
		if e := c.stat("big.bin"); e.Ver != nv || e.Size != int64(size) {
			t.Fatalf("%s: STAT says version %s size %d, PUT DONE %s size %d", tc.name, e.Ver, e.Size, nv, size)
		}
		// The PUT's log line is out: the STAT after it was answered.
		logs.mu.Lock()
		log := logs.buf.String()
		logs.mu.Unlock()
		if said := strings.Contains(log, `"result":"`+copiedInPlace+`"`); said != tc.inPlace {
			t.Errorf("%s: log line says %q: %v, want %v", tc.name, copiedInPlace, said, tc.inPlace)
		}
		// The record goes after PUT DONE (settle); FSYNC waits for it.
		if r := c.roundTrip("FSYNC"); r != "FSYNC OK" {
			t.Fatalf("%s: FSYNC: %q", tc.name, r)
		}
		if tf := tempFiles(t, dir); len(tf) != 0 {
			t.Fatalf("%s: temporary files left: %v", tc.name, tf)
		}
		// The old version is gone: a delta from it is a conflict.
		if r := c.putDelta("big.bin", ver, want, tc.ranges); !strings.HasPrefix(r, "PUT FAIL "+peerproto.CodeConflict) {
			t.Fatalf("%s: a delta from the replaced version: %q, want a conflict", tc.name, r)
		}
		cur, ver = want, nv
	}
}

// TestServerPutDeltaInPlaceFromMemory: a delta applied in place whose
// payload is small (up to memPayloadMax) is received into memory, inline
// or not, so no temporary file is made for it; a larger one still goes
// through a temporary file. Either way the file ends as asked.
func TestServerPutDeltaInPlaceFromMemory(t *testing.T) {
	dir := t.TempDir()
	var temps atomic.Int32 // payload temporary files seen while a change was under way
	hook := func(stage string) error {
		if stage == "saved" {
			temps.Store(int32(len(tempFiles(t, dir)) - len(undoRecords(t, dir))))
		}
		return nil
	}
	var logs logBuffer
	_, addr := testServeLog(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook}, &logs)
	c := attrsClient(t, addr)
	cur := randomBytes(3<<20, 21)
	ver := doneVer(t, c.put("big.bin", cur))
	for _, tc := range []struct {
		name   string
		inline bool
		size   int64 // the payload
		temps  int32
	}{
		{"4 KiB", false, 4096, 0},
		{"4 KiB inline", true, 4096, 0},
		{"1 MiB", false, memPayloadMax, 0},
		{"over 1 MiB", false, memPayloadMax + 1, 1},
	} {
		want := append([]byte(nil), cur...)
		rs := []peerproto.Range{{Off: 1000, Len: tc.size}}
		copy(want[1000:], randomBytes(int(tc.size), uint64(tc.size)))
		temps.Store(-1)
		var reply string
		if tc.inline {
			line, payload := deltaLine("big.bin", ver, want, rs, "async", "inline")
			c.send(line + "\n")
			if err := c.write(payload); err != nil {
				t.Fatal(err)
			}
			reply = c.line()
		} else {
			reply = c.putDelta("big.bin", ver, want, rs)
		}
		ver = doneVer(t, reply)
		if got := temps.Load(); got != tc.temps {
			t.Errorf("%s: %d payload temporary files during the change, want %d", tc.name, got, tc.temps)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "big.bin")); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: the file is not the old version with the range written in (%v)", tc.name, err)
		}
		if r := c.roundTrip("FSYNC"); r != "FSYNC OK" {
			t.Fatalf("%s: FSYNC: %q", tc.name, r)
		}
		if tf := tempFiles(t, dir); len(tf) != 0 {
			t.Fatalf("%s: temporary files left: %v", tc.name, tf)
		}
		cur = want
	}
	// A payload cut short: nothing of it is written.
	line, payload := deltaLine("big.bin", ver, randomBytes(len(cur), 5), []peerproto.Range{{Off: 0, Len: 4096}}, "async")
	c.send(line + "\n")
	c.expectPrefix("PUT OK")
	if err := c.write(payload[:100]); err != nil {
		t.Fatal(err)
	}
	c.nc.Close()
	eventually(t, "the cut PUT's log line", func() bool {
		logs.mu.Lock()
		defer logs.mu.Unlock()
		return strings.Contains(logs.buf.String(), `"result":"cut"`)
	})
	if got, _ := os.ReadFile(filepath.Join(dir, "big.bin")); !bytes.Equal(got, cur) {
		t.Fatal("a cut payload changed the file")
	}
	if tf := tempFiles(t, dir); len(tf) != 0 {
		t.Fatalf("temporary files left after a cut payload: %v", tf)
	}
}

// TestServerUndoCloneRefusedForOneFile (found in review): only a reflink
// refused as by a filesystem without them (EOPNOTSUPP, ENOTTY) marks the
// device for small deltas to go in place from memory without trying
// FICLONE. EINVAL, EXDEV and EPERM refuse one file (on Btrfs a nodatacow
// file, chattr +C; a bind-mounted file) on a filesystem that shares
// blocks, whose other files must keep their reflink and atomic replace.
func TestServerUndoCloneRefusedForOneFile(t *testing.T) {
	for _, tc := range []struct {
		err   error
		noted bool
	}{
		{unix.EINVAL, false},
		{unix.EXDEV, false},
		{unix.EPERM, false},
		{unix.EOPNOTSUPP, true},
		{unix.ENOTTY, true},
	} {
		dir := t.TempDir()
		s, addr := testServe(t, Options{Export: dir, cloneErr: tc.err, undoMinSize: undoTestMin})
		c := attrsClient(t, addr)
		cur := randomBytes(3<<20, 31)
		ver := doneVer(t, c.put("log.bin", cur))
		ino := inode(t, filepath.Join(dir, "log.bin"))
		want := append(append([]byte(nil), cur...), randomBytes(4096, 32)...)
		doneVer(t, c.putDelta("log.bin", ver, want, []peerproto.Range{{Off: int64(len(cur)), Len: 4096}}))
		if inode(t, filepath.Join(dir, "log.bin")) != ino {
			t.Fatalf("%v: the append was not made in place", tc.err)
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, "log.bin"), &st); err != nil {
			t.Fatal(err)
		}
		if got := s.clonesNot(st.Dev); got != tc.noted {
			t.Errorf("FICLONE refused with %v: the device noted as without reflinks: %v, want %v", tc.err, got, tc.noted)
		}
	}
}

// TestServerPutDeltaInPlaceCrash: a change in place that a crash cuts
// short (the undo record saved; the first range written) leaves the
// record, and the next start of a server on the export rolls the file
// back to the version the change applied to: its bytes, size, mtime and
// version token, so that the client's replay of its upload is taken (on
// ext4 with 128-byte inodes too). A failure at the same point rolls back
// at once.
func TestServerPutDeltaInPlaceCrash(t *testing.T) {
	for _, tc := range []struct {
		stage  string
		crash  bool
		coarse bool // on ext4 with 128-byte inodes: whole seconds, no birth time
	}{
		{"saved", true, false},
		{"applied", true, false},
		{"applied", false, false},
		{"applied", true, true},
	} {
		what := "crash"
		if !tc.crash {
			what = "failure"
		}
		name := what + "-after-" + tc.stage
		if tc.coarse {
			name += "-ext4-128"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.coarse {
				dir = testfs.Coarse(t, 64)
			}
			file := filepath.Join(dir, "log.bin")
			hit := errors.New("disk on fire")
			if tc.crash {
				hit = errPatchCrashed
			}
			// Once: the replay goes through.
			hook := onceAt(tc.stage, func() error { return hit })
			_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
			c := attrsClient(t, addr)
			old := randomBytes(3<<20, 1)
			ver := doneVer(t, c.put("log.bin", old))
			before, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			// An overwrite near the start, and one of the tail that runs
			// on past the old end: bytes and a size the record must undo.
			want := append(append([]byte(nil), old[:2<<20]...), randomBytes(1<<20+4096, 2)...)
			copy(want[100:], "NEW")
			rs := []peerproto.Range{{Off: 100, Len: 3}, {Off: 2 << 20, Len: 1<<20 + 4096}}
			if r := c.putDelta("log.bin", ver, want, rs); !strings.HasPrefix(r, "PUT FAIL ") {
				t.Fatalf("reply %q, want a failure", r)
			}
			if tc.crash {
				if recs := undoRecords(t, dir); len(recs) != 1 {
					t.Fatalf("after the crash: undo records %v, want one", recs)
				}
				if tc.stage == "applied" {
					if got, _ := os.ReadFile(file); bytes.Equal(got, old) {
						t.Fatal("the crash left the file as it was: the test crashed too early")
					}
				}
				// The next start.
				_, addr = testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin})
				c = attrsClient(t, addr)
			}
			got, err := os.ReadFile(file)
			if err != nil || !bytes.Equal(got, old) {
				t.Fatalf("after the %s: the file holds %d bytes (%v), not the old version's %d", what, len(got), err, len(old))
			}
			after, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if !after.ModTime().Equal(before.ModTime()) {
				t.Errorf("mtime %v, was %v", after.ModTime(), before.ModTime())
			}
			if e := c.stat("log.bin"); e.Ver != ver {
				t.Errorf("version %q after the %s, want the old version's %q", e.Ver, what, ver)
			}
			if tf := tempFiles(t, dir); len(tf) != 0 {
				t.Errorf("temporary files left: %v", tf)
			}
			// The client never got PUT DONE; its replay applies to the
			// version it named.
			if r := c.putDelta("log.bin", ver, want, rs); !strings.HasPrefix(r, "PUT DONE ") {
				t.Fatalf("the replay: %q", r)
			}
			if got, _ := os.ReadFile(file); !bytes.Equal(got, want) {
				t.Fatal("the replay did not store the new version")
			}
		})
	}
}

// TestServerUndoRecordsAtStart: records that cannot roll anything back
// are removed at start and touch nothing: one cut short while it was
// written (its file was not changed yet), one whose file was replaced
// since, one whose file is gone, and one outside the export's root.
func TestServerUndoRecordsAtStart(t *testing.T) {
	dir := t.TempDir()
	var rec []byte
	hook := func(stage string) error {
		if stage != "saved" {
			return nil
		}
		recs, _ := filepath.Glob(filepath.Join(dir, jail.UndoPrefix+"*"))
		if len(recs) != 1 {
			return fmt.Errorf("undo records %v, want one", recs)
		}
		var err error
		rec, err = os.ReadFile(recs[0])
		if err != nil {
			return err
		}
		return errors.New("stop here")
	}
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	c := attrsClient(t, addr)
	old := randomBytes(3<<20, 3)
	ver := doneVer(t, c.put("f", old))
	want := append([]byte(nil), old...)
	copy(want[5:], "xyz")
	if r := c.putDelta("f", ver, want, []peerproto.Range{{Off: 5, Len: 3}}); !strings.HasPrefix(r, "PUT FAIL ") {
		t.Fatalf("reply %q, want a failure", r)
	}
	if len(rec) == 0 {
		t.Fatal("no undo record was seen")
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := randomBytes(3<<20, 4)
	plant := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Cut short: every prefix of the record but the whole.
	for _, n := range []int{0, 10, len(rec) / 2, len(rec) - 1} {
		plant(fmt.Sprintf("%s%d", jail.UndoPrefix, n), rec[:n])
	}
	// A whole record, but f was replaced (another inode) since.
	if err := os.WriteFile(filepath.Join(dir, "f.new"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "f.new"), filepath.Join(dir, "f")); err != nil {
		t.Fatal(err)
	}
	plant(jail.UndoPrefix+"replaced", rec)
	// A whole record of a file that no longer exists.
	plant(jail.UndoPrefix+"gone", reviewForgeRecord("sub/missing", 1, unix.Timespec{}, "0123456789abcdef", []byte("x")))
	// A record outside the root, where none is ever written: a stale
	// temporary file.
	plant("sub/"+jail.UndoPrefix+"stray", rec)
	testServe(t, Options{Export: dir})
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); !bytes.Equal(got, other) {
		t.Error("a record that did not apply changed f")
	}
	if tf := tempFiles(t, dir); len(tf) != 0 {
		t.Errorf("left at start: %v", tf)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub", "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sub/missing: %v, want it not to exist", err)
	}
}
