package export

// From the review of ae993bc (undo records in the export's root, naming
// their file by its path in the export): each test is a defect it found,
// over real servers on 127.0.0.1. They fail on the code reviewed.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// TestRootReviewPathChangedBeforeChange: the record names the file by
// t.target, the path findTarget saw when the PUT began; the change itself
// goes through t.dfd, the directory findTarget opened then. patchMu is
// taken only after the payload has come in, so a RENAME of the file's
// directory (or a DELETE and SYMLINK of a link on its path) by another
// client while the payload is on its way is not fenced: the change
// applies to the file where it now is, and its record names a path that
// no longer leads to it. After a crash the next start found nothing
// there (or another file), removed the record, and the file kept the
// half-applied change, under the old version token the replay names. Now
// the change checks, once renames are fenced, that the path still leads
// to the file, and is refused as a conflict (the client's retry starts
// over from the path as it is) before anything is written.
func TestRootReviewPathChangedBeforeChange(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		put   string   // the PUT's path
		moves []string // requests on another connection, while the payload is on its way
		after string   // where the file is then
	}{
		{
			name:  "dir-renamed",
			setup: func(t *testing.T, dir string) { mustMkdir(t, filepath.Join(dir, "d")) },
			put:   "d/log.bin",
			moves: []string{"RENAME d e"},
			after: "e/log.bin",
		},
		{
			name: "link-retargeted",
			setup: func(t *testing.T, dir string) {
				mustMkdir(t, filepath.Join(dir, "d"))
				mustMkdir(t, filepath.Join(dir, "d2"))
				if err := os.Symlink("d", filepath.Join(dir, "ln")); err != nil {
					t.Fatal(err)
				}
			},
			put:   "ln/log.bin",
			moves: []string{"RENAME ln ln.old", "SYMLINK ln d2"},
			after: "d/log.bin",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: crashAt("applied")})
			c := attrsClient(t, addr)
			side := testConnect(t, addr)
			old := randomBytes(3<<20, 41)
			ver := doneVer(t, c.put(tc.put, old))
			want, rs := twoRangeDelta(old)
			line, payload := deltaLine(tc.put, ver, want, rs, "async")
			c.send(line + "\n")
			c.expect("PUT OK")
			for _, req := range tc.moves {
				verb, _, _ := strings.Cut(req, " ")
				if r := side.roundTrip(req); r != verb+" OK" {
					t.Fatalf("%s: %q", req, r)
				}
			}
			if err := c.write(payload); err != nil {
				t.Fatal(err)
			}
			if r := c.line(); !strings.HasPrefix(r, "PUT FAIL "+peerproto.CodeConflict) {
				t.Fatalf("reply %q, want a conflict: the path moved before the change began", r)
			}
			file := filepath.Join(dir, tc.after)
			if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, old) {
				t.Fatalf("%s was changed (%v) though the PUT was refused", tc.after, err)
			}
			if recs := undoRecords(t, dir); len(recs) != 0 {
				t.Errorf("undo records left: %v", recs)
			}
		})
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestRootReviewLongResolvedPath: a PUT to a symbolic link writes to
// what it names, and t.target is that path resolved (Jail.Resolve), every
// link on the way expanded: it may be far longer than the request's name
// and than peerproto.MaxName (16 KiB; the record's u16 length would wrap
// at 64 KiB). writeUndo recorded it as it is, but readUndo accepts only
// names CleanPath takes (cleanRecordName), so at the next start the
// record "did not check out", was removed as one cut short before the
// file was touched, and the half-applied change stayed. Now such a file
// is changed by a copy, not in place: no record, no crash window.
func TestRootReviewLongResolvedPath(t *testing.T) {
	dir := t.TempDir()
	// A chain of 80 directories of 250-byte names (a 20 KiB path), and
	// links that lead down it 15 directories at a time: x0 in the root,
	// x1 in the 15th directory, and so on; s -> x0/x1/.../log.bin.
	const depth, step = 80, 15
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	var home int // where the current segment's link goes
	var seg []string
	for i := 0; i < depth; i++ {
		if i%step == 0 {
			if home, err = unix.Dup(dfd); err != nil {
				t.Fatal(err)
			}
		}
		name := fmt.Sprintf("%03d", i) + strings.Repeat("d", 247)
		seg = append(seg, name)
		if err := unix.Mkdirat(dfd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(dfd)
		dfd = fd
		if len(seg) == step || i == depth-1 {
			x := fmt.Sprintf("x%d", len(links))
			if err := unix.Symlinkat(strings.Join(seg, "/"), home, x); err != nil {
				t.Fatal(err)
			}
			unix.Close(home)
			links = append(links, x)
			seg = nil
		}
	}
	unix.Close(dfd)
	if err := os.Symlink(strings.Join(links, "/")+"/log.bin", filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir, noReflink: true, undoMinSize: undoTestMin, patchHook: crashAt("applied")})
	c := attrsClient(t, addr)
	old := randomBytes(3<<20, 42)
	ver := doneVer(t, c.put("s", old))
	file := filepath.Join(dir, "s") // the kernel follows the links
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("PUT s did not store through the links (%v)", err)
	}
	want, rs := twoRangeDelta(old)
	if r := c.putDelta("s", ver, want, rs); !strings.HasPrefix(r, "PUT DONE ") {
		t.Fatalf("reply %q, want the delta stored by a copy (the crash hook is for changes in place)", r)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, want) {
		t.Error("the delta through the links did not store the new version")
	}
	if recs := rootUndoRecords(t, dir); len(recs) != 0 {
		t.Errorf("undo records in the root %v", recs)
	}
}

// rootUndoRecords lists the undo records in dir itself (undoRecords
// walks the tree with paths too long for one system call here).
func rootUndoRecords(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, d := range des {
		if strings.HasPrefix(d.Name(), jail.UndoPrefix) {
			found = append(found, d.Name())
		}
	}
	return found
}
