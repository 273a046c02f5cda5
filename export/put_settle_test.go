package export

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// A change in place ends after its PUT DONE (settle, put_undo.go): the
// undo record's removal, and for an async PUT the file's fsync, come
// after the answer. These tests cut it there.

// settleCase is a change in place cut after its PUT DONE: the old
// version and its token, the new content and the token PUT DONE gave
// it, and the server's export.
type settleCase struct {
	dir, file      string
	old, want      []byte
	oldVer, newVer string
	ranges         []peerproto.Range
}

// crashAfterDone stores a 3 MiB file, then changes it in place (an
// overwrite near its start and, if grow, a range past its old end) with
// the words opts, the server crashing (patchHook "settle") once it has
// answered PUT DONE. The undo record is left, as a crash leaves it.
func crashAfterDone(t *testing.T, dir string, grow bool, opts ...string) settleCase {
	t.Helper()
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: crashAt("settle")})
	c := attrsClient(t, addr)
	sc := settleCase{dir: dir, file: filepath.Join(dir, "log.bin"), old: randomBytes(3<<20, 11)}
	sc.oldVer = doneVer(t, c.put("log.bin", sc.old))
	sc.want = append([]byte(nil), sc.old...)
	copy(sc.want[100:], "NEW")
	sc.ranges = []peerproto.Range{{Off: 100, Len: 3}}
	if grow {
		sc.want = append(sc.want[:2<<20], randomBytes(1<<20+4096, 12)...)
		sc.ranges = append(sc.ranges, peerproto.Range{Off: 2 << 20, Len: 1<<20 + 4096})
	}
	r := c.putDeltaWith("log.bin", sc.oldVer, sc.want, sc.ranges, opts...)
	if !strings.HasPrefix(r, "PUT DONE ") {
		t.Fatalf("reply %q, want PUT DONE", r)
	}
	sc.newVer = doneVer(t, r)
	if recs := undoRecords(t, dir); len(recs) != 1 {
		t.Fatalf("after the crash: undo records %v, want one", recs)
	}
	return sc
}

// restart starts the server again on sc's export, as after the crash,
// and returns a client of it.
func (sc settleCase) restart(t *testing.T) *testClient {
	t.Helper()
	_, addr := testServe(t, Options{Export: sc.dir, noReflink: true, undoMinSize: undoTestMin})
	return attrsClient(t, addr)
}

// TestServerSettleCrashKeepsLanded: a crash after PUT DONE, before the
// undo record is removed, leaves the change whole in the file; the next
// start keeps it, under the token PUT DONE gave (the client may have been
// told), and removes the record. Async or not, on a filesystem with fine
// timestamps or coarse ones.
func TestServerSettleCrashKeepsLanded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []string
		coarse bool
	}{
		{"async", []string{"async"}, false},
		{"durable", nil, false},
		{"async-ext4-128", []string{"async"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.coarse {
				dir = testfs.Coarse(t, 64)
			}
			sc := crashAfterDone(t, dir, true, tc.opts...)
			c := sc.restart(t)
			if got, err := os.ReadFile(sc.file); err != nil || !bytes.Equal(got, sc.want) {
				t.Fatalf("after the start: %d bytes (%v), want the %d of the change", len(got), err, len(sc.want))
			}
			if e := c.stat("log.bin"); e.Ver != sc.newVer {
				t.Errorf("version %q after the start, want %q, PUT DONE's", e.Ver, sc.newVer)
			}
			if tf := tempFiles(t, dir); len(tf) != 0 {
				t.Errorf("left at start: %v", tf)
			}
			// The client goes on from the version it was told.
			next := append([]byte(nil), sc.want...)
			copy(next[10:], "more")
			if r := c.putDelta("log.bin", sc.newVer, next, []peerproto.Range{{Off: 10, Len: 4}}); !strings.HasPrefix(r, "PUT DONE ") {
				t.Fatalf("the next change: %q", r)
			}
			if r := c.roundTrip("FSYNC"); r != "FSYNC OK" {
				t.Fatalf("FSYNC: %q", r)
			}
			if got, _ := os.ReadFile(sc.file); !bytes.Equal(got, next) {
				t.Error("the next change did not land")
			}
		})
	}
}

// TestServerSettleCrashPartlyWritten: an async change cut by a power loss
// before its file reached the disk can leave the file partly changed: a
// byte written not there, the size or the mode not changed (each stands
// in for what did not reach the disk). The next start finds that the
// change did not land whole and puts the old version back, token
// included: never part of a change under either token.
func TestServerSettleCrashPartlyWritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, sc settleCase)
	}{
		{"last-byte", func(t *testing.T, sc settleCase) {
			f, err := os.OpenFile(sc.file, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			last := sc.ranges[len(sc.ranges)-1].End() - 1
			if _, err := f.WriteAt([]byte{^sc.want[last]}, last); err != nil {
				t.Fatal(err)
			}
		}},
		{"size", func(t *testing.T, sc settleCase) {
			if err := os.Truncate(sc.file, int64(len(sc.want))+4096); err != nil {
				t.Fatal(err)
			}
		}},
		{"mode", func(t *testing.T, sc settleCase) {
			if err := os.Chmod(sc.file, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sc := crashAfterDone(t, dir, true, "async")
			tc.lose(t, sc)
			c := sc.restart(t)
			if got, err := os.ReadFile(sc.file); err != nil || !bytes.Equal(got, sc.old) {
				t.Fatalf("after the start: %d bytes (%v), want the old version's %d", len(got), err, len(sc.old))
			}
			if e := c.stat("log.bin"); e.Ver != sc.oldVer {
				t.Errorf("version %q after the start, want the old version's %q", e.Ver, sc.oldVer)
			}
			if tf := tempFiles(t, dir); len(tf) != 0 {
				t.Errorf("left at start: %v", tf)
			}
		})
	}
}

// TestServerSettleCrashTokenLost: a power loss can take the bytes of a
// change to the disk without what holds its token (the extended
// attribute, the mtime): the file would then pass for its old version
// with the new content, and clients that cached the old one would trust
// it. The start keeps the content and gives it a new token.
func TestServerSettleCrashTokenLost(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(probe, versionXattr, []byte("x"), 0); err != nil {
		t.Skipf("no user extended attributes here: %v", err)
	}
	os.Remove(probe)
	sc := crashAfterDone(t, dir, false, "async") // the size stays
	// What the disk holds if the inode's mtime and attribute stayed as
	// they were while the bytes went: the attribute names the old token
	// at the size and mtime the file shows.
	var st unix.Stat_t
	if err := unix.Stat(sc.file, &st); err != nil {
		t.Fatal(err)
	}
	val := fmt.Sprintf("%s %d %d", sc.oldVer, st.Size, st.Mtim.Nano())
	if err := unix.Setxattr(sc.file, versionXattr, []byte(val), 0); err != nil {
		t.Fatal(err)
	}
	c := sc.restart(t)
	if got, err := os.ReadFile(sc.file); err != nil || !bytes.Equal(got, sc.want) {
		t.Fatalf("after the start: %d bytes (%v), want the %d of the change", len(got), err, len(sc.want))
	}
	if e := c.stat("log.bin"); e.Ver == sc.oldVer || e.Ver == "" {
		t.Errorf("version %q after the start: the changed content under the old version's token", e.Ver)
	}
	if tf := tempFiles(t, dir); len(tf) != 0 {
		t.Errorf("left at start: %v", tf)
	}
}

// TestServerSettleFsyncFailure: an async change whose file's fsync fails
// after PUT DONE may not be on the disk: it is rolled back (the old
// content and token), and the failure is answered to the next FSYNC that
// covers the file, once; an FSYNC of another file, on another
// connection, is not answered it.
func TestServerSettleFsyncFailure(t *testing.T) {
	dir := t.TempDir()
	hook := onceAt("settle-fsync", func() error { return errors.New("disk on fire") })
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	a := attrsClient(t, addr)
	b := attrsClient(t, addr)
	old := randomBytes(3<<20, 13)
	ver := doneVer(t, a.put("f", old))
	if r := b.put("other", []byte("other\n")); !strings.HasPrefix(r, "PUT DONE ") {
		t.Fatal(r)
	}
	want, rs := twoRangeDelta(old)
	if r := a.putDelta("f", ver, want, rs); !strings.HasPrefix(r, "PUT DONE ") {
		t.Fatalf("reply %q, want PUT DONE", r)
	}
	if r := b.roundTrip("FSYNC other"); r != "FSYNC OK" {
		t.Errorf("another client's FSYNC of another file: %q, want FSYNC OK", r)
	}
	if r := a.roundTrip("FSYNC f"); !strings.HasPrefix(r, "FSYNC FAIL io ") || !strings.Contains(r, "disk on fire") {
		t.Errorf("FSYNC f after its change failed to reach the disk: %q, want FSYNC FAIL io naming it", r)
	}
	if r := a.roundTrip("FSYNC f"); r != "FSYNC OK" {
		t.Errorf("the FSYNC after: %q, want FSYNC OK", r)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); !bytes.Equal(got, old) {
		t.Error("the change whose fsync failed was not rolled back")
	}
	if e := a.stat("f"); e.Ver != ver {
		t.Errorf("version %q, want the old version's %q", e.Ver, ver)
	}
	if tf := tempFiles(t, dir); len(tf) != 0 {
		t.Errorf("left: %v", tf)
	}
}

// TestServerSettleRecordNotRemovable (found in review): a record that
// cannot be removed after PUT DONE (the root made immutable stands in for
// an I/O error) must not come back at a start over the changes
// acknowledged after it: it is emptied first, which a start discards.
func TestServerSettleRecordNotRemovable(t *testing.T) {
	dir := t.TempDir()
	hook := onceAt("settle", func() error {
		setImmutable(t, dir, true)
		return nil
	})
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	c := attrsClient(t, addr)
	old := randomBytes(3<<20, 51)
	ver := doneVer(t, c.put("log.bin", old))
	wantA, rsA := twoRangeDelta(old)
	ra := c.putDelta("log.bin", ver, wantA, rsA)
	if !strings.HasPrefix(ra, "PUT DONE ") {
		t.Fatalf("A: %q", ra)
	}
	r := c.roundTrip("FSYNC")
	setImmutable(t, dir, false)
	if r != "FSYNC OK" {
		t.Errorf("FSYNC after A: %q", r)
	}
	wantC := append([]byte(nil), wantA...)
	copy(wantC[100:], "CCC")
	copy(wantC[1<<20:], "CCC")
	if rc := c.putDelta("log.bin", doneVer(t, ra), wantC, []peerproto.Range{{Off: 100, Len: 3}, {Off: 1 << 20, Len: 3}}); !strings.HasPrefix(rc, "PUT DONE ") {
		t.Fatalf("C: %q", rc)
	}
	if r := c.roundTrip("FSYNC"); r != "FSYNC OK" {
		t.Fatalf("FSYNC after C: %q", r)
	}
	testServe(t, Options{Export: dir}) // the next start
	if got, _ := os.ReadFile(filepath.Join(dir, "log.bin")); !bytes.Equal(got, wantC) {
		t.Error("the next start did not leave the file as the last acknowledged change made it")
	}
	if tf := tempFiles(t, dir); len(tf) != 0 {
		t.Errorf("left at start: %v", tf)
	}
}

// TestServerSettleHoldsChanges: until a change in place has ended after
// its PUT DONE, no other change reaches its file (a SETATTR from another
// connection waits), and an FSYNC waits; both are answered once it ends,
// and the record is gone by then.
func TestServerSettleHoldsChanges(t *testing.T) {
	dir := t.TempDir()
	release := make(chan struct{})
	hook := onceAt("settle", func() error { <-release; return nil })
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	a := attrsClient(t, addr)
	b := attrsClient(t, addr)
	f := attrsClient(t, addr)
	old := randomBytes(3<<20, 14)
	ver := doneVer(t, a.put("log.bin", old))
	want, rs := twoRangeDelta(old)
	if r := a.putDelta("log.bin", ver, want, rs); !strings.HasPrefix(r, "PUT DONE ") {
		close(release)
		t.Fatalf("reply %q, want PUT DONE", r)
	}
	b.send("SETATTR log.bin mode=600\n")
	f.send("FSYNC log.bin\n")
	answered := make(chan string, 2)
	go func() { answered <- "SETATTR: " + b.line() }()
	go func() { answered <- "FSYNC: " + f.line() }()
	select {
	case r := <-answered:
		close(release)
		t.Fatalf("answered while the change had not ended: %s", r)
	case <-time.After(300 * time.Millisecond):
	}
	if recs := undoRecords(t, dir); len(recs) != 1 {
		t.Errorf("undo records %v while the change has not ended, want one", recs)
	}
	close(release)
	for range 2 {
		select {
		case r := <-answered:
			if !strings.HasPrefix(r, "SETATTR: SETATTR OK ") && r != "FSYNC: FSYNC OK" {
				t.Errorf("after the end: %s", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("not answered after the change ended")
		}
	}
	if tf := tempFiles(t, dir); len(tf) != 0 {
		t.Errorf("left: %v", tf)
	}
}
