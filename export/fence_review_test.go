package export

// From the review of 0889873, adbac97 and c2e479a (changes in place
// fenced by Server.patchMu, undo records naming their file by inode,
// birth time and generation): each test is a defect it found, over real
// servers on 127.0.0.1. They fail on the code reviewed.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// TestFenceReviewCopyDeltaDuringFailedChange: a delta PUT applied to a
// copy (cloneBase) reads the old content with no fence at all. If it
// copies the file while a change in place of it runs, and that change
// then fails and is rolled back, the rollback gives the file back its
// old mtime and version token, so the copying PUT's recheck under putMu
// finds "its" version and installs the copy: the old version with part
// of the failed change in it, answered PUT DONE. On a filesystem with
// whole-second timestamps (ext4 -I 128 here, FAT, NAS shares) nothing
// tells the torn state from the version it names: the in-place write
// keeps size and mtime, so checkBase and openBase let the copy through.
// Now the copy waits for the change (or its rollback) to end.
func TestFenceReviewCopyDeltaDuringFailedChange(t *testing.T) {
	dir := testfs.Coarse(t, 64)
	old := randomBytes(3<<20, 31)
	// A: a delta that overwrites two thirds of the file (applied to a copy).
	wantA := append([]byte(nil), old...)
	copy(wantA[1<<20:], randomBytes(2<<20, 32))
	rsA := []peerproto.Range{{Off: 1 << 20, Len: 2 << 20}}
	var lineA string
	var payloadA []byte

	var side *reviewSideConn
	var fired atomic.Bool
	var midErr error
	hook := onceAt("applied", func() error {
		fired.Store(true)
		// B's first range is in the file. A starts now; its copy of
		// the old content must wait for B to end.
		if midErr = side.sendHeldUp(lineA); midErr != nil {
			return nil
		}
		return errors.New("simulated failure of the change in place (a full disk, an I/O error)")
	})
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	c := attrsClient(t, addr)
	side = reviewDialSide(t, addr)
	testfs.SameSecond(800 * time.Millisecond)
	ver := doneVer(t, c.put("log.bin", old))
	lineA, payloadA = deltaLine("log.bin", ver, wantA, rsA, "async")

	// B: a small delta, applied in place, that fails after its first range.
	wantB, rsB := twoRangeDelta(old)
	if r := c.putDelta("log.bin", ver, wantB, rsB); !strings.HasPrefix(r, "PUT FAIL ") {
		t.Fatalf("B: %q, want the simulated failure", r)
	}
	if !fired.Load() {
		t.Fatal("B was not applied in place")
	}
	if midErr != nil {
		t.Fatal(midErr)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "log.bin")); !bytes.Equal(got, old) {
		t.Fatal("B's failure was not rolled back")
	}
	side.nc.SetReadDeadline(time.Now().Add(testTimeout))
	if r, err := side.r.ReadString('\n'); err != nil || r != "PUT OK\n" {
		t.Fatalf("A's PUT after B's change: %q %v", r, err)
	}
	if _, err := side.nc.Write(payloadA); err != nil {
		t.Fatal(err)
	}
	side.nc.SetReadDeadline(time.Now().Add(testTimeout))
	r, err := side.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r, "PUT DONE ") {
		return // refused as a conflict: what a fix may do
	}
	got, _ := os.ReadFile(filepath.Join(dir, "log.bin"))
	if !bytes.Equal(got, wantA) {
		t.Errorf("A (%q) stored the old version with part of B's failed change in it: bytes 100..103 %q, want %q",
			strings.TrimSpace(r), got[100:103], wantA[100:103])
	}
}

// setImmutable sets or clears FS_IMMUTABLE_FL on file p.
func setImmutable(t *testing.T, p string, on bool) {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Skipf("FS_IOC_GETFLAGS: %v", err)
	}
	if on {
		flags |= fsImmutableFl
	} else {
		flags &^= fsImmutableFl
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
		t.Skipf("FS_IOC_SETFLAGS: %v", err)
	}
}

// TestFenceReviewStaleRecordAfterFailedRollback: when a change in place
// failed and its rollback failed too (a disk that fills between the
// truncation and the write back, an I/O error; an immutable flag stands
// in for it here), patchUndo keeps the undo record "for the next start"
// but the server goes on serving the file and changing it in place.
// Nothing looks at the record until the next start, which then rolls
// the file back over later changes that clients were told are stored:
// the saved ranges, the size, the mtime and the version token of the
// version before the failed change come back, over content that is now
// neither version. Now a failed rollback gives up at once: the record goes,
// the file keeps what it holds under a new version token.
func TestFenceReviewStaleRecordAfterFailedRollback(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "log.bin")
	hook := onceAt("applied", func() error {
		setImmutable(t, file, true)
		return errors.New("simulated failure of the change in place")
	})
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	c := attrsClient(t, addr)
	old := randomBytes(3<<20, 41)
	ver := doneVer(t, c.put("log.bin", old))
	wantB, rsB := twoRangeDelta(old)
	r := c.putDelta("log.bin", ver, wantB, rsB)
	setImmutable(t, file, false)
	if !strings.HasPrefix(r, "PUT FAIL ") {
		t.Fatalf("B: %q, want the simulated failure", r)
	}
	// A failed rollback gives up: the file stays as it is, under a new
	// version, and no record is left to roll it back later.
	if recs := undoRecords(t, dir); len(recs) != 0 {
		t.Errorf("undo records %v left after a failed rollback", recs)
	}
	if e := c.stat("log.bin"); e.Ver == ver {
		t.Errorf("the partly changed file kept the version %s of the version before", ver)
	}
	// The server goes on: a client reads what the file holds now and
	// changes it (in place, with its own record), and is told it is stored.
	cur := c.get("log.bin")
	e := c.stat("log.bin")
	wantC := append([]byte(nil), cur...)
	copy(wantC[50:], "the member's next save")
	rsC := []peerproto.Range{{Off: 50, Len: 22}}
	rc := c.putDelta("log.bin", e.Ver, wantC, rsC)
	if !strings.HasPrefix(rc, "PUT DONE ") {
		return // refused while the record is there: what a fix may do
	}
	cver := doneVer(t, rc)
	// The server has ended the change (settle, put_undo.go), as one does
	// before it is stopped: this start is not after a crash.
	if r := c.roundTrip("FSYNC"); r != "FSYNC OK" {
		t.Fatalf("FSYNC: %q", r)
	}
	// The next start of the peer.
	_, addr = testServe(t, Options{Export: dir})
	c2 := attrsClient(t, addr)
	got := c2.get("log.bin")
	if !bytes.Equal(got, wantC) {
		i := 0
		for i < len(got) && i < len(wantC) && got[i] == wantC[i] {
			i++
		}
		t.Errorf("the next start rolled back a change answered PUT DONE (version %s): the file differs from it at byte %d, and has version %s (that of the version before the failed change: %v)",
			cver, i, c2.stat("log.bin").Ver, c2.stat("log.bin").Ver == ver)
	}
}

// fsImmutableFl is FS_IMMUTABLE_FL (linux/fs.h), not in x/sys/unix.
const fsImmutableFl = 0x00000010

// TestServerGetWaitsForChangeInPlace: a GET of a file while a change in
// place of it runs reads it once the change is done (readFenced), never
// half done: here the change has written its first range and waits, and
// the GET, sent then, returns the new version whole.
func TestServerGetWaitsForChangeInPlace(t *testing.T) {
	dir := t.TempDir()
	var side *reviewSideConn
	var fired atomic.Bool
	var midErr error
	hook := onceAt("applied", func() error {
		fired.Store(true)
		midErr = side.getHeldUp("log.bin")
		return nil
	})
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	c := attrsClient(t, addr)
	side = reviewDialSide(t, addr)
	old := randomBytes(3<<20, 51)
	ver := doneVer(t, c.put("log.bin", old))
	want, rs := twoRangeDelta(old)
	if r := c.putDelta("log.bin", ver, want, rs); !strings.HasPrefix(r, "PUT DONE ") {
		t.Fatalf("PUT: %q", r)
	}
	if !fired.Load() {
		t.Fatal("the delta was not applied in place")
	}
	if midErr != nil {
		t.Fatal(midErr)
	}
	side.nc.SetReadDeadline(time.Now().Add(testTimeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(side.r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the GET read the file half changed: bytes 100..103 %q, at 2 MiB %#x; want %q, %#x", got[100:103], got[2<<20], want[100:103], want[2<<20])
	}
}

// getHeldUp sends "GET name" from a patchHook, while the change in place
// holds patchMu: its reply line comes at once (it is sent before the file
// is read), and no byte of the file may follow within 200 ms.
func (s *reviewSideConn) getHeldUp(name string) error {
	if _, err := s.nc.Write([]byte("GET " + name + "\n")); err != nil {
		return err
	}
	s.nc.SetReadDeadline(time.Now().Add(testTimeout))
	if line, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "GET OK ") {
		return fmt.Errorf("GET during the change in place: %q, %v", line, err)
	}
	s.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := s.r.ReadByte(); err == nil {
		return errors.New("the GET sent the file's data during the change in place")
	}
	return nil
}

// TestServerUndoAtStartCannotApply: a record whose file cannot be rolled
// back at start (it cannot be opened for writing, nor the record removed:
// immutable flags stand in for a failing disk) stops a writable server
// with an error naming the record, rather than letting it serve a file
// the record could later roll back over acknowledged changes; once the
// cause is gone, the next start rolls back.
func TestServerUndoAtStartCannotApply(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "d")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	old := randomBytes(3<<20, 61)
	file := filepath.Join(sub, "log.bin")
	reviewCrashMidChange(t, dir, "d/log.bin", old)
	setImmutable(t, file, true)
	t.Cleanup(func() { setImmutable(t, file, false) })
	setImmutable(t, sub, true)
	t.Cleanup(func() { setImmutable(t, sub, false) })
	_, err := NewServer(Options{Export: dir, Logger: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), jail.UndoPrefix) {
		t.Fatalf("NewServer with a record it can neither apply nor remove: %v, want an error naming it", err)
	}
	setImmutable(t, sub, false)
	setImmutable(t, file, false)
	testServe(t, Options{Export: dir})
	if got, _ := os.ReadFile(file); !bytes.Equal(got, old) {
		t.Error("the start after the cause was gone did not roll back")
	}
	if recs := undoRecords(t, dir); len(recs) != 0 {
		t.Errorf("records left: %v", recs)
	}
}
