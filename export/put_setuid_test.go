package export

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// modeOf returns the permission bits (07777) of file p.
func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode & 0o7777
}

// TestPutDropsSetuid: new content a PUT stores never keeps the setuid and
// setgid bits of the file it changes, with AllowSetuid too (a client
// whose writer keeps them sets them again with SETATTR mode=): replaced
// by a rename, written in place over a file with other hard links (whole
// and delta), and changed in place behind an undo record. In place, the
// bits are gone before the first byte changes, and a chmod made on the
// peer while the payload came is kept, not undone by the mode the PUT
// saw when it began.
func TestPutDropsSetuid(t *testing.T) {
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	for _, allow := range []bool{false, true} {
		for _, path := range []string{"rename", "in place", "delta in place", "undo record"} {
			name := strings.ReplaceAll(path, " ", "_") + map[bool]string{false: "", true: "/AllowSetuid"}[allow]
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				file := filepath.Join(dir, "prog")
				content := []byte("#!/bin/sh\nid\n")
				if path == "undo record" {
					content = randomBytes(3<<20, 5)
				}
				if err := os.WriteFile(file, content, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(file, 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
					t.Fatal(err)
				}
				if path == "in place" || path == "delta in place" {
					if err := os.Link(file, filepath.Join(dir, "link")); err != nil {
						t.Fatal(err)
					}
				}
				// The mode once content went in place: at the first range
				// of a change behind an undo record, or once a file with
				// other hard links is written (before finishInPlace).
				var during uint32
				stage := map[bool]string{false: "written", true: "applied"}[path == "undo record"]
				hook := onceAt(stage, func() error {
					during = modeOf(t, file)
					return nil
				})
				_, addr := testServe(t, Options{Export: dir, AllowSetuid: allow, noReflink: true, undoMinSize: undoTestMin, patchHook: hook})
				var c *testClient
				if path == "rename" || path == "undo record" {
					c = attrsClient(t, addr)
				} else {
					c = testConnectPosix(t, addr)
				}
				ver := c.stat("prog").Ver
				want := append([]byte(nil), content...)
				copy(want[3:], "evil")
				var line string
				payload := want
				switch path {
				case "rename", "in place":
					line = "PUT prog " + strconv.Itoa(len(want)) + " async"
				default:
					line, payload = deltaLine("prog", ver, want, []peerproto.Range{{Off: 3, Len: 4}}, "async")
				}
				c.send(line + "\n")
				if r := c.line(); r != "PUT OK" {
					t.Fatalf("%s: %q", line, r)
				}
				// While the payload of an unconditional PUT in place
				// comes, the peer's owner narrows the mode (and sets
				// setuid again): the change keeps the 0700, less the
				// bits. (A conditional PUT would meet a conflict: the
				// chmod is a new version of the file.)
				if path == "in place" {
					if err := os.Chmod(file, 0o700|os.ModeSetuid); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.write(payload); err != nil {
					t.Fatal(err)
				}
				if r := c.line(); !strings.HasPrefix(r, "PUT DONE ") {
					t.Fatalf("%s: %q", line, r)
				}
				if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("the file holds %d bytes (%v), not the new content", len(got), err)
				}
				wantMode := uint32(0o755)
				if path == "in place" {
					wantMode = 0o700
				}
				if got := modeOf(t, file); got != wantMode {
					t.Errorf("after the PUT: %04o, want %04o", got, wantMode)
				}
				if path != "rename" && during != wantMode {
					t.Errorf("with new content in place (%s): %04o, want %04o (the bits go before the content changes)", stage, during, wantMode)
				}
				if e := c.stat("prog"); e.Mode != wantMode {
					t.Errorf("STAT shows %04o, want %04o", e.Mode, wantMode)
				}
				// Where the export allows them, the client sets them again.
				if allow {
					if r := c.roundTrip("SETATTR prog mode=04755"); !strings.HasPrefix(r, "SETATTR OK f 04755 ") {
						t.Errorf("SETATTR mode=04755 after the PUT: %q", r)
					}
				}
			})
		}
	}
}

// TestPutInPlaceRollbackKeepsSetuid: a change in place that fails after
// its first range (the bits already dropped) puts back the old mode with
// the old content, setuid and setgid included, and so does the next start
// after a crash there.
func TestPutInPlaceRollbackKeepsSetuid(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "failure", true: "crash"}[crash], func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "prog")
			old := randomBytes(3<<20, 9)
			if err := os.WriteFile(file, old, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
				t.Fatal(err)
			}
			hit := errors.New("disk on fire")
			if crash {
				hit = errPatchCrashed
			}
			var during uint32
			hook := onceAt("applied", func() error {
				during = modeOf(t, file)
				return hit
			})
			opts := Options{Export: dir, AllowSetuid: true, noReflink: true, undoMinSize: undoTestMin}
			o := opts
			o.patchHook = hook
			_, addr := testServe(t, o)
			c := attrsClient(t, addr)
			want, rs := twoRangeDelta(old)
			if r := c.putDelta("prog", c.stat("prog").Ver, want, rs); !strings.HasPrefix(r, "PUT FAIL ") {
				t.Fatalf("reply %q, want a failure", r)
			}
			if during != 0o755 {
				t.Fatalf("at the first range: %04o, want 0755", during)
			}
			if crash {
				testServe(t, opts) // the next start rolls back
			}
			if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, old) {
				t.Fatalf("the file holds %d bytes (%v), not the old content", len(got), err)
			}
			if got := modeOf(t, file); got != 0o6755 {
				t.Errorf("after the roll back: %04o, want 06755", got)
			}
		})
	}
}

// TestPutSetidKeepsBits: a PUT that says "setid" (its writer may keep
// them) stores its content with the setuid and setgid bits the file has,
// where the export allows them: replaced by a rename (whole, streamed,
// delta to a copy), written in place over a file with other hard links,
// or behind an undo record; without AllowSetuid they go as without the
// word. A bit is kept only where the content has the owner (setuid) or
// group (setgid) it gives the rights of: on a peer that does not keep
// owners, the content is this peer's own, and a program of another user
// does not become this peer's setuid program.
func TestPutSetidKeepsBits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("files of other owners need root")
	}
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	for _, tc := range []struct {
		name     string
		opts     Options
		uid, gid int // the file's owner
		path     string
		want     uint32
	}{
		{"rename", Options{AllowSetuid: true}, 0, 0, "whole", 0o6755},
		{"stream", Options{AllowSetuid: true}, 0, 0, "stream", 0o6755},
		{"delta to a copy", Options{AllowSetuid: true}, 0, 0, "delta", 0o6755},
		{"in place", Options{AllowSetuid: true}, 0, 0, "in place", 0o6755},
		{"undo record", Options{AllowSetuid: true}, 0, 0, "undo", 0o6755},
		{"not allowed", Options{}, 0, 0, "whole", 0o755},
		{"not allowed, in place", Options{}, 0, 0, "in place", 0o755},
		{"another user's, owners kept", Options{AllowSetuid: true, Owners: true}, 4242, 4343, "whole", 0o6755},
		{"another user's, owners not kept", Options{AllowSetuid: true}, 4242, 0, "whole", 0o2755},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "prog")
			content := []byte("#!/bin/sh\nid\n")
			if tc.path == "undo" {
				content = randomBytes(3<<20, 5)
			}
			if err := os.WriteFile(file, content, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(file, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
				t.Fatal(err)
			}
			if tc.path == "in place" {
				if err := os.Link(file, filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
			}
			tc.opts.Export, tc.opts.noReflink, tc.opts.undoMinSize = dir, true, undoTestMin
			_, addr := testServe(t, tc.opts)
			c := attrsClient(t, addr)
			if tc.path == "in place" {
				c = testConnectPosix(t, addr)
			}
			ver := c.stat("prog").Ver
			want := append([]byte(nil), content...)
			copy(want[3:], "new!")
			var r string
			switch tc.path {
			case "whole", "in place":
				c.send(fmt.Sprintf("PUT prog %d async inline setid\n%s", len(want), want))
				r = c.line()
			case "stream":
				c.send("PUT prog 0 stream ver=" + ver + " setid\n")
				c.expect("PUT OK")
				c.send(fmt.Sprintf("DATA %d\n%sEND %d\n", len(want), want, len(want)))
				r = c.line()
			default:
				r = c.putDeltaWith("prog", ver, want, []peerproto.Range{{Off: 3, Len: 4}}, "async", "setid")
			}
			if !strings.HasPrefix(r, "PUT DONE ") {
				t.Fatalf("PUT: %q", r)
			}
			if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("the file holds %d bytes (%v), not the new content", len(got), err)
			}
			st := lstatT(t, file)
			if st.Mode&0o7777 != tc.want {
				t.Errorf("after the PUT: %04o, want %04o", st.Mode&0o7777, tc.want)
			}
			if tc.opts.Owners && (st.Uid != uint32(tc.uid) || st.Gid != uint32(tc.gid)) {
				t.Errorf("after the PUT: owned by %d:%d, want %d:%d", st.Uid, st.Gid, tc.uid, tc.gid)
			}
		})
	}
}
