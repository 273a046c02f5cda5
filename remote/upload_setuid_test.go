package remote

import (
	"os"
	"testing"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/peerproto"
)

// TestWriteKeepingSetuid: a peer stores new content without setuid and
// setgid (export.contentMode); a writer that kept them here (a write the
// mount did not clear them for: root's) sets them again after the PUT.
// On a peer with --allow-setuid the file then ends as on a local disk,
// whether replaced by a rename or written in place (other hard links); a
// default peer refuses them. On a peer that also keeps owners, a file
// replaced by a rename gets its owner back with a chown, which clears
// them there, and they are not set again by name (putContent).
func TestWriteKeepingSetuid(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("skipping: owners need root on the peer")
	}
	const suid = 0o755 | os.ModeSetuid | os.ModeSetgid
	for _, tc := range []struct {
		name   string
		opts   export.Options
		linked bool
		want   os.FileMode
	}{
		{"allow-setuid", export.Options{AllowSetuid: true}, false, suid},
		{"allow-setuid, other hard links", export.Options{AllowSetuid: true}, true, suid},
		{"default", export.Options{}, false, 0o755},
		{"owners, allow-setuid, other hard links", export.Options{Owners: true, AllowSetuid: true}, true, suid},
		{"owners, allow-setuid", export.Options{Owners: true, AllowSetuid: true}, false, 0o755},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Export = t.TempDir()
			dan := startPeerWith(t, tc.opts)
			s := newStore(t, t.TempDir())
			s.SetPeers([]peerproto.PeerAddr{{Name: "dan", Addr: dan.addr}})
			dan.writeFile(t, "prog", []byte("#!/bin/sh\nid\n"), suid)
			if tc.linked {
				if err := os.Link(dan.path("prog"), dan.path("link")); err != nil {
					t.Fatal(err)
				}
			}
			fh := s.open(t, "dan", "prog", os.O_WRONLY|os.O_APPEND, 0)
			s.write(t, fh, "echo more\n", 14)
			if err := s.Flush(testCtx(t), fh); err != nil {
				t.Fatal(err)
			}
			s.release(t, fh)
			if got := dan.content(t, "prog"); got != "#!/bin/sh\nid\necho more\n" {
				t.Fatalf("the peer's file holds %q", got)
			}
			fi, err := os.Stat(dan.path("prog"))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid); got != tc.want {
				t.Errorf("on the peer after the upload: %v, want %v", got, tc.want)
			}
			if fi, err := s.Stat(testCtx(t), "dan", "prog"); err != nil || fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid) != tc.want {
				t.Errorf("the mount shows %v (%v), want %v", fi.Mode(), err, tc.want)
			}
		})
	}
}
