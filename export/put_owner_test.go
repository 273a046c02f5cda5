package export

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// TestServerPutKeepsOwner: on a peer that keeps owners and may give files
// away (root; FEATURES says "keep-owner"), new content a PUT stores over
// a file, whole, inline, streamed or as a delta to a copy, keeps that
// file's owner and group, without its setuid bit (contentMode), so that a
// client sends no chown after the PUT. A peer without --owners, or one
// that may not give files away, stores content as its own and does not
// say keep-owner.
func TestServerPutKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files away needs root")
	}
	for _, tc := range []struct {
		owners, notRoot bool
	}{
		{true, false},
		{false, false},
		{true, true},
	} {
		keeps := tc.owners && !tc.notRoot
		t.Run(fmt.Sprintf("Owners=%v,notRoot=%v", tc.owners, tc.notRoot), func(t *testing.T) {
			dir := t.TempDir()
			_, addr := testServe(t, Options{Export: dir, Owners: tc.owners, AllowSetuid: true, notRoot: tc.notRoot})
			c := testConnect(t, addr)
			c.send("FEATURES attrs\n")
			if got := c.line(); strings.Contains(got, " keep-owner") != keeps {
				t.Errorf("FEATURES: %q, keep-owner %v", got, keeps)
			}
			for _, how := range []string{"whole", "inline", "stream", "delta"} {
				name := "prog-" + how
				f := filepath.Join(dir, name)
				old := []byte("#!/bin/sh\necho old\n")
				doneVer(t, c.put(name, old))
				if err := os.Chown(f, 4242, 4343); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Chmod(f, 0o4755); err != nil {
					t.Fatal(err)
				}
				ver := c.stat(name).Ver // after the chown and chmod
				want := []byte("#!/bin/sh\necho new\n")
				var r string
				switch how {
				case "whole":
					r = c.put(name, want)
				case "inline":
					c.send(fmt.Sprintf("PUT %s %d async inline\n%s", name, len(want), want))
					r = c.line()
				case "stream":
					c.send("PUT " + name + " 0 stream ver=" + ver + "\n")
					c.expect("PUT OK")
					c.send(fmt.Sprintf("DATA %d\n%sEND %d\n", len(want), want, len(want)))
					r = c.line()
				case "delta": // "old" to "new": to a copy, the file being small
					r = c.putDeltaWith(name, ver, want, []peerproto.Range{{Off: 15, Len: 3}}, "async")
				}
				if !strings.HasPrefix(r, "PUT DONE ") {
					t.Fatalf("PUT %s: %q", name, r)
				}
				st := lstatT(t, f)
				wantUid, wantGid := uint32(0), uint32(0)
				if keeps {
					wantUid, wantGid = 4242, 4343
				}
				if st.Uid != wantUid || st.Gid != wantGid || st.Mode&0o7777 != 0o755 {
					t.Errorf("%s after the PUT: uid %d gid %d mode %04o, want %d %d 0755", name, st.Uid, st.Gid, st.Mode&0o7777, wantUid, wantGid)
				}
				if got, _ := os.ReadFile(f); string(got) != string(want) {
					t.Errorf("%s holds %q", name, got)
				}
			}
		})
	}
}

// TestServerPutKeepsOwnerMeanwhile: the owner the new content gets is the
// file's when the content is complete, not when the PUT began: a chown
// made on the peer while a streamed PUT's content came is kept. A file
// put at the name meanwhile (another inode) lends its owner to nothing:
// the content is this peer's own.
func TestServerPutKeepsOwnerMeanwhile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files away needs root")
	}
	for _, replaced := range []bool{false, true} {
		t.Run(fmt.Sprintf("replaced=%v", replaced), func(t *testing.T) {
			dir := t.TempDir()
			_, addr := testServe(t, Options{Export: dir, Owners: true, AllowSetuid: true})
			c := attrsClient(t, addr)
			f := filepath.Join(dir, "prog")
			doneVer(t, c.put("prog", []byte("old\n")))
			if err := os.Chown(f, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			c.send("PUT prog 0 stream\n")
			c.expect("PUT OK")
			c.send("DATA 4\nnew\n")
			if replaced {
				// Another file, another owner, at the name.
				other := filepath.Join(dir, "other")
				if err := os.WriteFile(other, []byte("other\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(other, 6666, 6666); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(other, f); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Chown(f, 5555, 5555); err != nil {
				t.Fatal(err)
			}
			c.send("END 4\n")
			if r := c.line(); !strings.HasPrefix(r, "PUT DONE ") {
				t.Fatalf("reply %q", r)
			}
			want := uint32(5555)
			if replaced {
				want = 0
			}
			if st := lstatT(t, f); st.Uid != want || st.Gid != want {
				t.Errorf("after the PUT: %d:%d, want %d:%d", st.Uid, st.Gid, want, want)
			}
		})
	}
}

// TestServerPutOverLinkKeepsNoOwner: a PUT on a posix connection over a
// name that is a symbolic link replaces the link with a file of this
// peer's own, not one owned by the link's owner.
func TestServerPutOverLinkKeepsNoOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files away needs root")
	}
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir, Owners: true})
	c := testConnectPosix(t, addr)
	l := filepath.Join(dir, "l")
	if err := os.Symlink("target", l); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(l, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if r := c.put("l", []byte("mine\n")); !strings.HasPrefix(r, "PUT DONE ") {
		t.Fatalf("PUT over the link: %q", r)
	}
	if st := lstatT(t, l); st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid == 4242 {
		t.Errorf("after the PUT: mode %o uid %d, want a regular file of this peer's own", st.Mode, st.Uid)
	}
}
