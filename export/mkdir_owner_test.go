package export

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerMkdirOwner: MKDIR's uid= and gid= make the directory with
// that owner in one request, on a peer that stores owners (advertised as
// "mkdir-owner"), on both kinds of connection; in a setgid directory it
// keeps the parent's group, as mkdir(2) gives it. A peer without
// --owners refuses it and makes nothing.
func TestServerMkdirOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving directories away needs root")
	}
	for _, owners := range []bool{false, true} {
		t.Run(fmt.Sprintf("Owners=%v", owners), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "sg"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(dir, "sg"), 0, 777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, "sg"), 0o2775|os.ModeSetgid); err != nil {
				t.Fatal(err)
			}
			_, addr := testServe(t, Options{Export: dir, Owners: owners, AllowSetuid: true})
			posix := testConnect(t, addr)
			posix.send("FEATURES posix\n")
			if got := posix.line(); strings.Contains(got, " mkdir-owner") != owners {
				t.Errorf("FEATURES: %q", got)
			}
			plain := testConnect(t, addr)
			for i, c := range []*testClient{posix, plain} {
				name := fmt.Sprintf("d%d", i)
				got := c.roundTrip("MKDIR " + name + " 0750 uid=1234 gid=5678")
				if !owners {
					want := `MKDIR FAIL denied this peer does not store owners (it runs without --owners): cannot make "` + name + `" with an owner`
					if got != want {
						t.Errorf("MKDIR %s: %q, want %q", name, got, want)
					}
					if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
						t.Errorf("%s made after all: %v", name, err)
					}
					continue
				}
				if got != "MKDIR OK" {
					t.Fatalf("MKDIR %s: %q", name, got)
				}
				if st := lstatT(t, filepath.Join(dir, name)); st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o750 {
					t.Errorf("%s: uid %d gid %d mode %o, want 1234 5678 750", name, st.Uid, st.Gid, st.Mode&0o7777)
				}
				sub := "sg/" + name
				if got := c.roundTrip("MKDIR " + sub + " 0755 uid=1234 gid=5678"); got != "MKDIR OK" {
					t.Fatalf("MKDIR %s: %q", sub, got)
				}
				if st := lstatT(t, filepath.Join(dir, sub)); st.Uid != 1234 || st.Gid != 777 || st.Mode&0o7777 != 0o2755 {
					t.Errorf("%s in a setgid directory: uid %d gid %d mode %o, want 1234 777 2755", sub, st.Uid, st.Gid, st.Mode&0o7777)
				}
				// Owner or not, a name taken is refused as before.
				if got := c.roundTrip("MKDIR " + name + " 0750 uid=1 gid=1"); !strings.HasPrefix(got, "MKDIR FAIL exists ") {
					t.Errorf("MKDIR %s again: %q", name, got)
				}
				if st := lstatT(t, filepath.Join(dir, name)); st.Uid != 1234 {
					t.Errorf("%s given away by a refused MKDIR: uid %d", name, st.Uid)
				}
			}
		})
	}
}
