package jail_test

import (
	"testing"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
)

// TestJailOpenat2 checks that this machine takes the openat2 path, so the
// other tests cover it (a kernel without it, or a seccomp filter, would
// silently test os.Root twice), and that NoOpenat2 turns it off.
func TestJailOpenat2(t *testing.T) {
	off, err := jail.Open(t.TempDir(), jail.Options{NoOpenat2: true})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if off.Beneath() {
		t.Error("Options.NoOpenat2 is ignored")
	}
	j, err := jail.Open(t.TempDir(), jail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if !j.Beneath() {
		t.Skip("openat2(RESOLVE_BENEATH) is not available here: only the os.Root path is tested")
	}
}

func TestJailResolve(t *testing.T) {
	export, _ := testfs.Escapes(t)
	for _, opts := range []jail.Options{{}, {NoOpenat2: true}} {
		j, err := jail.Open(export, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for _, tc := range []struct {
			in, want string
			code     string // refusal code, "" for success
		}{
			{"hello.txt", "hello.txt", ""},
			{"in", "hello.txt", ""},
			{"sub/up", "hello.txt", ""},
			{"indir/up", "hello.txt", ""},
			{"indir/inner.txt", "sub/inner.txt", ""},
			{"indir/new.txt", "sub/new.txt", ""},
			{"new.txt", "new.txt", ""},
			{"nodir/new.txt", "", peerproto.CodeNotFound},
			{"out", "", peerproto.CodeDenied},
			{"abs", "", peerproto.CodeDenied},
			{"outdir/x", "", peerproto.CodeDenied},
			{"loop", "", peerproto.CodeInvalid},
		} {
			got, err := j.Resolve(tc.in)
			code := ""
			if err != nil {
				code, _, _ = jail.Explain(tc.in, err)
			}
			if got != tc.want || code != tc.code {
				t.Errorf("%+v: Resolve(%q) = %q, %v (code %q); want %q, code %q", opts, tc.in, got, err, code, tc.want, tc.code)
			}
		}
	}
}

func TestJailClean(t *testing.T) {
	j, err := jail.Open(t.TempDir(), jail.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, tc := range []struct{ in, want, code string }{
		{"", "", ""},
		{".", "", ""},
		{"a//b/./c/", "a/b/c", ""},
		{"..", "", peerproto.CodeDenied},
		{"a/../b", "", peerproto.CodeDenied},
		{"/a", "", peerproto.CodeDenied},
		{"a\x00", "", peerproto.CodeInvalid},
		{"x/" + jail.TempPrefix + "1/y", "", peerproto.CodeInvalid},
		{"x" + jail.TempPrefix, "x" + jail.TempPrefix, ""},
		{jail.IDFile, "", peerproto.CodeInvalid},
	} {
		got, err := j.Clean(tc.in)
		code := ""
		if err != nil {
			code, _, _ = jail.Explain(tc.in, err)
		}
		if got != tc.want || code != tc.code {
			t.Errorf("Clean(%q) = %q, code %q; want %q, code %q", tc.in, got, code, tc.want, tc.code)
		}
	}
}
