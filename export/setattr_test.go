package export

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// setattr sends a SETATTR and returns the entry of its reply.
func (c *testClient) setattr(req string) peerproto.Entry {
	c.t.Helper()
	reply, err := peerproto.ParseReply([]byte(c.roundTrip("SETATTR "+req)), peerproto.VerbSetattr)
	if err != nil {
		c.t.Fatalf("SETATTR %s: %v", req, err)
	}
	return reply.(peerproto.SetattrOK).Entry
}

func lstatT(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestServerSetattrOwners: uid= and gid= are refused unless the peer
// stores owners (Options.Owners, advertised as "owners"); then they are
// lchown, on both kinds of connection, and a mode given with them
// survives the chown.
func TestServerSetattrOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files away needs root")
	}
	for _, owners := range []bool{false, true} {
		t.Run(fmt.Sprintf("Owners=%v", owners), func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "f", "x")
			if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
				t.Fatal(err)
			}
			_, addr := testServe(t, Options{Export: dir, Owners: owners, AllowSetuid: true})
			c := testConnect(t, addr)
			c.send("FEATURES posix\n")
			if got := c.line(); strings.Contains(got, " owners") != owners {
				t.Errorf("FEATURES: %q", got)
			}
			plain := testConnect(t, addr)
			if !owners {
				for _, cl := range []*testClient{c, plain} {
					for _, req := range []string{"SETATTR f uid=1234", "SETATTR f gid=5", "SETATTR l uid=1 mode=0644"} {
						want := `SETATTR FAIL denied this peer does not store owners (it runs without --owners): cannot change the owner of "` + strings.Fields(req)[1] + `"`
						if got := cl.roundTrip(req); got != want {
							t.Errorf("%s: %q, want %q", req, got, want)
						}
					}
				}
				if st := lstatT(t, filepath.Join(dir, "f")); st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != 0o644 {
					t.Errorf("f changed: %+v", st)
				}
				return
			}
			if e := c.setattr("f uid=1234 gid=5678 mode=06755"); e.Uid != 1234 || e.Gid != 5678 || e.Mode != 0o6755 {
				t.Errorf("SETATTR f: %+v", e)
			}
			if st := lstatT(t, filepath.Join(dir, "f")); st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o6755 {
				t.Errorf("f: uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode&0o7777)
			}
			// The owner of a link is the link's, on a posix connection.
			if e := c.setattr("l uid=42"); e.Type != peerproto.TypeSymlink || e.Uid != 42 || e.Target != "f" {
				t.Errorf("SETATTR l: %+v", e)
			}
			if st := lstatT(t, filepath.Join(dir, "l")); st.Uid != 42 {
				t.Errorf("l: uid %d", st.Uid)
			}
			if st := lstatT(t, filepath.Join(dir, "f")); st.Uid != 1234 {
				t.Errorf("f followed the link's chown: uid %d", st.Uid)
			}
			// A plain connection follows the link, as it always does.
			if r := plain.roundTrip("SETATTR l gid=99"); !strings.HasPrefix(r, "SETATTR OK f 0") {
				t.Errorf("plain SETATTR l: %q", r)
			}
			if st := lstatT(t, filepath.Join(dir, "f")); st.Gid != 99 {
				t.Errorf("f: gid %d", st.Gid)
			}
		})
	}
}

// TestServerSetattrTimes: atime= and mtime= set each time alone or both,
// "now" is the peer's clock, the other time stays, and a link's times
// are its own.
func TestServerSetattrTimes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "data")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	for _, posix := range []bool{false, true} {
		c := testConnect(t, addr)
		if posix {
			c.send("FEATURES posix\n")
			c.expectPrefix("FEATURES OK ")
		}
		const a, m = int64(1500000000123456789), int64(1600000000987654321)
		e := c.setattr(fmt.Sprintf("f atime=%d mtime=%d", a, m))
		if st := lstatT(t, filepath.Join(dir, "f")); st.Atim.Nano() != a || st.Mtim.Nano() != m || e.Mtime != m {
			t.Errorf("posix %v: f: atime %d mtime %d, reply %+v", posix, st.Atim.Nano(), st.Mtim.Nano(), e)
		}
		if posix && e.Atime != a {
			t.Errorf("reply atime %d", e.Atime)
		}
		ver := c.stat("f").Ver
		before := time.Now().UnixNano()
		c.setattr("f mtime=now")
		after := time.Now().UnixNano()
		st := lstatT(t, filepath.Join(dir, "f"))
		if st.Mtim.Nano() < before-int64(10*time.Millisecond) || st.Mtim.Nano() > after || st.Atim.Nano() != a {
			t.Errorf("posix %v: mtime=now: atime %d mtime %d, want atime %d and mtime in [%d, %d]", posix, st.Atim.Nano(), st.Mtim.Nano(), a, before, after)
		}
		if posix && st.Ctim.Nano() < before-int64(10*time.Millisecond) {
			t.Errorf("ctime %d did not move", st.Ctim.Nano())
		}
		if posix {
			if v := c.stat("f").Ver; v != ver {
				t.Errorf("version %s after mtime=now, want %s kept (same content)", v, ver)
			}
		}
		c.setattr(fmt.Sprintf("f atime=now mtime=%d", m))
		if st := lstatT(t, filepath.Join(dir, "f")); st.Mtim.Nano() != m || st.Atim.Nano() < before-int64(10*time.Millisecond) {
			t.Errorf("posix %v: atime=now: atime %d mtime %d", posix, st.Atim.Nano(), st.Mtim.Nano())
		}
		if posix {
			// A FIFO's times are set without opening it.
			c.setattr(fmt.Sprintf("fifo mtime=%d", m))
			if st := lstatT(t, filepath.Join(dir, "fifo")); st.Mtim.Nano() != m {
				t.Errorf("fifo: mtime %d", st.Mtim.Nano())
			}
		}
	}
}
