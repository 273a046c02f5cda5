package export

// From the review of d55cb27 (delta PUTs applied in place behind an undo
// record): each test is a defect it found, over real servers on
// 127.0.0.1, and failed before the fix.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// reviewSideConn is a second connection to a server, usable from a
// patchHook (which runs on the server's goroutine of another connection,
// under putMu): it reports errors rather than failing the test.
type reviewSideConn struct {
	nc net.Conn
	r  *bufio.Reader
}

// sendHeldUp sends request line from a patchHook, while the change in
// place holds patchMu, and reports an error if it is answered within
// 200 ms: it must wait for the change to end.
func (s *reviewSideConn) sendHeldUp(line string) error {
	if _, err := s.nc.Write([]byte(line + "\n")); err != nil {
		return err
	}
	s.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if r, err := s.r.ReadString('\n'); err == nil {
		return errors.New("answered during the change in place: " + r)
	}
	return nil
}

func reviewDialSide(t *testing.T, addr string) *reviewSideConn {
	t.Helper()
	c := attrsClient(t, addr) // CONNECT OK and FEATURES attrs read here
	return &reviewSideConn{nc: c.nc, r: c.r}
}

// reviewCrashMidChange stores old as name, then sends a delta PUT of two
// ranges that a crash stops after the first range was written into the
// file (hook "applied"). It returns the version of old and the delta's new content.
func reviewCrashMidChange(t *testing.T, dir, name string, old []byte) (ver string, want []byte, rs []peerproto.Range) {
	t.Helper()
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: crashAt("applied")})
	c := attrsClient(t, addr)
	ver = doneVer(t, c.put(name, old))
	want, rs = twoRangeDelta(old)
	if r := c.putDelta(name, ver, want, rs); !strings.HasPrefix(r, "PUT FAIL ") {
		t.Fatalf("reply %q, want a failure (the simulated crash)", r)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, name)); bytes.Equal(got, old) {
		t.Fatal("the crash left the file as it was: the test crashed too early")
	}
	return ver, want, rs
}

// TestReviewUndoReadOnlyRestartServesTornFile: PROTOCOL.md promises that
// after a crash "the peer's next start puts back the old bytes ... before
// it serves anything". NewServer skips recovery when the export is
// read-only, so a read-only restart serves the half-applied file (first
// range new, second old): content that is neither version, under a token
// derived from its attributes, which clients may cache.
func TestReviewUndoReadOnlyRestartServesTornFile(t *testing.T) {
	dir := t.TempDir()
	old := randomBytes(3<<20, 11)
	reviewCrashMidChange(t, dir, "log.bin", old)
	if recs := undoRecords(t, dir); len(recs) != 1 {
		t.Fatalf("undo records %v, want one", recs)
	}
	_, addr := testServe(t, Options{Export: dir, ReadOnly: true})
	c := attrsClient(t, addr)
	if got := c.get("log.bin"); !bytes.Equal(got, old) {
		t.Errorf("a read-only restart serves the torn file (bytes 100..103 %q, want %q): the undo record was not applied before serving",
			got[100:103], old[100:103])
	}
}

// TestReviewUndoRenamedDuringChange: a RENAME of the file while a change
// in place runs waits for it (Server.patchMu): otherwise a crash in
// between would leave a record naming the old name, the next start would
// find nothing there, and the renamed file would keep the half-applied
// change. (A crash itself cannot be followed by the rename; so the test
// checks that the RENAME is not answered before the change is done.)
func TestReviewUndoRenamedDuringChange(t *testing.T) {
	testWaitsForChange(t, "RENAME log.bin moved.bin", func(t *testing.T, dir string, c *testClient, want []byte, nv string) {
		got, err := os.ReadFile(filepath.Join(dir, "moved.bin"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("moved.bin after the change and the rename: %d bytes (%v), want the new version's %d", len(got), err, len(want))
		}
		if e := c.stat("moved.bin"); e.Ver != nv {
			t.Errorf("moved.bin's version %s, want PUT DONE's %s", e.Ver, nv)
		}
	})
}

// testWaitsForChange sends request line (about log.bin) on a second
// connection while a change in place of log.bin runs (from the hook,
// after the first range was written), checks that it is not answered
// until the change is done, and then calls check with the new content
// and the version PUT DONE gave.
func testWaitsForChange(t *testing.T, line string, check func(t *testing.T, dir string, c *testClient, want []byte, nv string)) {
	dir := t.TempDir()
	var side *reviewSideConn
	var fired atomic.Bool
	var midErr error
	hook := onceAt("applied", func() error {
		fired.Store(true)
		midErr = side.sendHeldUp(line)
		return nil
	})
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
	c := attrsClient(t, addr)
	side = reviewDialSide(t, addr)
	old := randomBytes(3<<20, 14)
	ver := doneVer(t, c.put("log.bin", old))
	want, rs := twoRangeDelta(old)
	reply := c.putDelta("log.bin", ver, want, rs)
	if midErr != nil {
		t.Fatal(midErr)
	}
	if !fired.Load() {
		t.Fatal("the delta was not applied in place")
	}
	if !strings.HasPrefix(reply, "PUT DONE ") {
		t.Fatalf("PUT: %q", reply)
	}
	side.nc.SetReadDeadline(time.Now().Add(testTimeout))
	if r, err := side.r.ReadString('\n'); err != nil || !strings.HasSuffix(strings.TrimSuffix(r, "\n"), " OK") && !strings.Contains(r, " OK ") {
		t.Fatalf("%s, after the change: %q, %v", line, r, err)
	}
	check(t, dir, c, want, doneVer(t, reply))
}

// TestReviewUndoInodeReuse: a record named its file by device and inode
// number only. If the file is removed after the crash and a new file
// takes its name (ext4 hands out a freed inode number again at once), the
// next start "rolled back" the new, unrelated file: wrote the old bytes
// into it, truncated it to the old size and set the old mtime and token.
// Now the birth time tells them apart, and on ext4 with 128-byte inodes,
// which keep none, the inode generation.
func TestReviewUndoInodeReuse(t *testing.T) {
	for _, fsys := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"tmp", func(t *testing.T) string { return t.TempDir() }},
		{"ext4-128", func(t *testing.T) string { return testfs.Coarse(t, 64) }},
	} {
		t.Run(fsys.name, func(t *testing.T) {
			dir := fsys.dir(t)
			old := randomBytes(3<<20, 13)
			reviewCrashMidChange(t, dir, "log.bin", old)
			file := filepath.Join(dir, "log.bin")
			ino := inode(t, file)
			// A local rotation: the file removed, a new one made under its name.
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			fresh := []byte(strings.Repeat("a new, unrelated log\n", 1000))
			reused := false
			for i := 0; i < 200 && !reused; i++ {
				p := filepath.Join(dir, "new.tmp")
				if err := os.WriteFile(p, fresh, 0o644); err != nil {
					t.Fatal(err)
				}
				if inode(t, p) == ino {
					if err := os.Rename(p, file); err != nil {
						t.Fatal(err)
					}
					reused = true
					break
				}
				// Keep that inode busy and try for the next free one.
				if err := os.Rename(p, filepath.Join(dir, fmt.Sprintf("hold-%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			if !reused {
				t.Skipf("the filesystem did not hand out inode %d again", ino)
			}
			testServe(t, Options{Export: dir})
			if got, _ := os.ReadFile(file); !bytes.Equal(got, fresh) {
				t.Errorf("the start rolled back a file that only reuses the inode number: it holds %d bytes, was %d", len(got), len(fresh))
			}
		})
	}
}

// TestReviewUndoSetattrDuringChange: a truncation by another client
// while a change in place runs waits for it: otherwise it landed in the
// middle, and PUT DONE gave a new token for content the file did not
// hold. After both, the file is the new version cut, under a version
// that is not PUT DONE's.
func TestReviewUndoSetattrDuringChange(t *testing.T) {
	testWaitsForChange(t, "SETATTR log.bin size=1000", func(t *testing.T, dir string, c *testClient, want []byte, nv string) {
		got, err := os.ReadFile(filepath.Join(dir, "log.bin"))
		if err != nil || !bytes.Equal(got, want[:1000]) {
			t.Errorf("log.bin after the change and the truncation: %d bytes (%v), want the new version's first 1000", len(got), err)
		}
		if e := c.stat("log.bin"); e.Ver == nv {
			t.Errorf("the truncated file kept PUT DONE's version %s", nv)
		}
	})
}

// TestReviewUndoHardLinkOutsideExport: SECURITY.md: "A PUT to [a hard
// link to a file outside the export] replaces the link with a new file
// and leaves the outside file as it was." (only posix connections write
// into files with other links, and that is documented). A delta PUT on a
// plain connection, applied in place, now writes into the outside file,
// and into every other hard link of any file.
func TestReviewUndoHardLinkOutsideExport(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "export")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(base, "outside.bin")
	old := randomBytes(3<<20, 15)
	if err := os.WriteFile(outside, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(dir, "shared.bin")); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin})
	c := attrsClient(t, addr)
	ver := c.stat("shared.bin").Ver
	want := append([]byte(nil), old...)
	copy(want[4096:], "changed by a member")
	if r := c.putDelta("shared.bin", ver, want, []peerproto.Range{{Off: 4096, Len: 19}}); !strings.HasPrefix(r, "PUT DONE ") {
		t.Fatalf("delta PUT: %q", r)
	}
	if got := c.get("shared.bin"); !bytes.Equal(got, want) {
		t.Fatal("the export's name does not hold the new content")
	}
	if got, _ := os.ReadFile(outside); !bytes.Equal(got, old) {
		t.Errorf("the file outside the export was changed through its hard link: %q", got[4096:4096+19])
	}
}

// reviewForgeRecord builds an undo record (the format of put_undo.go)
// that "restores" file name (ino, current mtime and token) to data.
func reviewForgeRecord(name string, ino uint64, mtime unix.Timespec, token string, data []byte) []byte {
	rec := &undoRecord{name: name, ino: ino, mode: 0o644, size: int64(len(data)), mtime: mtime, token: token,
		saved: []peerproto.Range{{Off: 0, Len: int64(len(data))}}}
	b := append(rec.header(), data...)
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return append(b, undoTrailer...)
}

// TestReviewUndoRecordPlantedThroughSymlink: clients must not touch
// reserved names (.peerfs-tmp-*), but findTarget follows a symbolic link
// to a name Resolve never checks: SYMLINK evil -> .peerfs-tmp-undo-x, then
// PUT evil, creates .peerfs-tmp-undo-x with the client's bytes. Undo
// records are now trusted at start: a forged one rewrites another file
// and gives it back its old mtime and version token, so the change is
// invisible to every client that cached the file under that token. (The
// inode number is in STAT on a posix connection.) Now a link to a
// reserved name is refused.
func TestReviewUndoRecordPlantedThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	c := attrsClient(t, addr)
	orig := []byte("the victim's content, as every client cached it\n")
	vver := doneVer(t, c.put("victim.txt", orig))
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "victim.txt"), &st); err != nil {
		t.Fatal(err)
	}
	forged := []byte("forged by a member, under the same version token!\n")
	rec := reviewForgeRecord("victim.txt", st.Ino, st.Mtim, vver, forged)
	evil := jail.UndoPrefix + "planted"
	if r := c.roundTrip("SYMLINK evil " + peerproto.EncodeName(evil)); r != "SYMLINK OK" {
		t.Fatalf("SYMLINK: %q", r)
	}
	r := c.put("evil", rec)
	if _, err := os.Lstat(filepath.Join(dir, evil)); err == nil {
		t.Errorf("a client created the reserved name %s (PUT through a symbolic link: %q)", evil, r)
	}
	// The next start of the peer.
	_, addr = testServe(t, Options{Export: dir})
	c = attrsClient(t, addr)
	got := c.get("victim.txt")
	if e := c.stat("victim.txt"); !bytes.Equal(got, orig) {
		t.Errorf("a planted undo record rewrote victim.txt at start: %q, version %s (was %s)", got, e.Ver, vver)
	}
}
