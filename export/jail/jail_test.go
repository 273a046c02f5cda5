package jail_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
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

// TestJailStrict: the Strict view follows no link in any element, with
// openat2 and without, while the jail itself still follows those inside.
func TestJailStrict(t *testing.T) {
	export, _ := testfs.Escapes(t)
	for _, opts := range []jail.Options{{}, {NoOpenat2: true}} {
		j, err := jail.Open(export, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		s := j.Strict()
		if !s.IsStrict() || j.IsStrict() || s.Strict() != s || s.Root() != nil {
			t.Fatalf("%+v: Strict view %v, jail %v", opts, s.IsStrict(), j.IsStrict())
		}
		for _, tc := range []struct {
			p     string
			flags int
			err   error // nil: opens
		}{
			{"hello.txt", unix.O_RDONLY, nil},
			{"sub/inner.txt", unix.O_RDONLY, nil},
			{"", unix.O_RDONLY | unix.O_DIRECTORY, nil},
			{"in", unix.O_RDONLY, jail.ErrSymlink},
			{"in", unix.O_PATH, jail.ErrSymlink},
			{"in", unix.O_PATH | unix.O_NOFOLLOW, nil}, // the link itself
			{"indir", unix.O_PATH | unix.O_DIRECTORY, jail.ErrSymlink},
			{"indir/inner.txt", unix.O_RDONLY, jail.ErrSymlink},
			{"outdir/secret.txt", unix.O_RDONLY, jail.ErrSymlink},
			{"loop/x", unix.O_PATH, jail.ErrSymlink},
			{"hello.txt/x", unix.O_RDONLY, unix.ENOTDIR},
			{"nope/x", unix.O_RDONLY, unix.ENOENT},
		} {
			fd, err := s.Open(tc.p, tc.flags)
			if err == nil {
				unix.Close(fd)
			}
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("%+v: Strict Open(%q, %#x) = %v, want %v", opts, tc.p, tc.flags, err, tc.err)
			}
			if errors.Is(err, jail.ErrSymlink) {
				if code, _, _ := jail.Explain(tc.p, err); code != peerproto.CodeLoop {
					t.Errorf("%q: code %q, want loop", tc.p, code)
				}
			}
		}
		// The jail itself follows links inside the export, as before.
		for _, p := range []string{"in", "indir/inner.txt"} {
			fd, err := j.Open(p, unix.O_RDONLY)
			if err != nil {
				t.Errorf("%+v: Open(%q): %v", opts, p, err)
				continue
			}
			unix.Close(fd)
		}
		if st, err := s.StatLink("in"); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("StatLink(in): %o, %v", st.Mode, err)
		}
		if target, err := s.Readlink("sub/up"); err != nil || target != "../hello.txt" {
			t.Errorf("Readlink(sub/up): %q, %v", target, err)
		}
		if _, _, err := s.OpenFile("in", unix.O_RDONLY); err == nil {
			t.Error("OpenFile of a link opened it")
		}
		if fd, st, err := s.OpenFile("hello.txt", unix.O_RDONLY); err != nil || st.Size != 5 {
			t.Errorf("OpenFile(hello.txt): %v", err)
		} else {
			unix.Close(fd)
		}
		if err := s.Close(); err != nil {
			t.Errorf("closing the view: %v", err)
		}
		if fd, err := j.Open("hello.txt", unix.O_RDONLY); err != nil {
			t.Errorf("the view's Close closed the jail: %v", err)
		} else {
			unix.Close(fd)
		}
	}
}

// TestJailLongPaths: a path longer than PATH_MAX opens, in the jail and
// in its view, and a link deep in it still stops the view.
func TestJailLongPaths(t *testing.T) {
	export := t.TempDir()
	root, err := os.OpenRoot(export)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var elems []string
	for i := range 30 {
		elems = append(elems, fmt.Sprintf("%02d", i)+strings.Repeat("x", 248))
		if err := root.Mkdir(strings.Join(elems, "/"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	deep := strings.Join(elems, "/") // 7529 bytes
	if err := root.WriteFile(deep+"/f", []byte("deep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := root.Symlink(elems[25], strings.Join(elems[:25], "/")+"/link"); err != nil {
		t.Fatal(err)
	}
	through := strings.Join(elems[:25], "/") + "/link/" + strings.Join(elems[26:], "/") + "/f"
	for _, opts := range []jail.Options{{}, {NoOpenat2: true}} {
		j, err := jail.Open(export, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for _, jj := range []*jail.Jail{j, j.Strict()} {
			fd, err := jj.Open(deep+"/f", unix.O_RDONLY)
			if err != nil {
				t.Errorf("%+v strict %v: Open of %d bytes: %.200v", opts, jj.IsStrict(), len(deep)+2, err)
				continue
			}
			unix.Close(fd)
		}
		if _, err := j.Strict().Open(through, unix.O_RDONLY); !errors.Is(err, jail.ErrSymlink) {
			t.Errorf("%+v: Strict Open through a link past PATH_MAX: %.200v", opts, err)
		}
		if fd, err := j.Open(through, unix.O_RDONLY); err != nil {
			t.Errorf("%+v: Open through a link inside: %.200v", opts, err)
		} else {
			unix.Close(fd)
		}
	}
}
