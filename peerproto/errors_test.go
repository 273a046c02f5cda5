package peerproto_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

// codes is the failure-code table of docs/PROTOCOL.md.
var codes = []struct {
	code  string
	errno syscall.Errno
	is    error // the io/fs sentinel errors.Is matches, if any
}{
	{peerproto.CodeNotFound, syscall.ENOENT, fs.ErrNotExist},
	{peerproto.CodeExists, syscall.EEXIST, fs.ErrExist},
	{peerproto.CodeNotEmpty, syscall.ENOTEMPTY, nil},
	{peerproto.CodeNotDir, syscall.ENOTDIR, nil},
	{peerproto.CodeIsDir, syscall.EISDIR, nil},
	{peerproto.CodeDenied, syscall.EACCES, fs.ErrPermission},
	{peerproto.CodeNoSpace, syscall.ENOSPC, nil},
	{peerproto.CodeInvalid, syscall.EINVAL, nil},
	{peerproto.CodeTooLarge, syscall.EFBIG, nil}, // of a PUT: see TestTooLargeByVerb
	{peerproto.CodeNameTooLong, syscall.ENAMETOOLONG, nil},
	{peerproto.CodeBusy, syscall.EBUSY, nil},
	{peerproto.CodeReadOnly, syscall.EROFS, fs.ErrPermission},
	{peerproto.CodeIO, syscall.EIO, nil},
	{peerproto.CodeUnsupported, syscall.ENOTSUP, nil},
	{peerproto.CodeExpired, syscall.EIO, nil},
	{peerproto.CodeState, syscall.EIO, nil},
	{"martian", syscall.EIO, nil}, // a word from a newer peer
}

func TestFailErrorErrnoAndIs(t *testing.T) {
	sentinels := []error{fs.ErrNotExist, fs.ErrExist, fs.ErrPermission, fs.ErrInvalid, fs.ErrClosed}
	for _, c := range codes {
		// As a caller sees it: parsed from the wire and wrapped with context.
		_, err := peerproto.ParseReply([]byte("PUT FAIL "+c.code+" detail"), peerproto.VerbPut)
		err = fmt.Errorf("peer: put %q to bob: %w", "a.txt", err)
		var fe *peerproto.FailError
		if !errors.As(err, &fe) {
			t.Fatalf("code %s: errors.As(*FailError) failed on %v", c.code, err)
		}
		if fe.Code != c.code || fe.Text != "detail" || fe.Verb != "PUT" {
			t.Errorf("code %s: parsed %#v", c.code, fe)
		}
		if got := fe.Errno(); got != c.errno {
			t.Errorf("FailError{Code: %s}.Errno() = %v, want %v", c.code, got, c.errno)
		}
		for _, s := range sentinels {
			if got, want := errors.Is(err, s), s == c.is; got != want {
				t.Errorf("errors.Is(FAIL %s, %v) = %v, want %v", c.code, s, got, want)
			}
		}
	}
}

// TestTooLargeByVerb: toolarge is a size (EFBIG) where the request has
// one, and can only be the name (ENAMETOOLONG, as older peers sent it for
// names) where it has none; nametoolong is always the name.
func TestTooLargeByVerb(t *testing.T) {
	for verb, want := range map[string]syscall.Errno{
		peerproto.VerbPut: syscall.EFBIG, peerproto.VerbSetattr: syscall.EFBIG, peerproto.VerbList: syscall.EFBIG,
		peerproto.VerbStat: syscall.ENAMETOOLONG, peerproto.VerbGet: syscall.ENAMETOOLONG,
		peerproto.VerbDelete: syscall.ENAMETOOLONG, peerproto.VerbRename: syscall.ENAMETOOLONG,
		peerproto.VerbMkdir: syscall.ENAMETOOLONG, peerproto.VerbRmdir: syscall.ENAMETOOLONG,
	} {
		if got := peerproto.Fail(verb, peerproto.CodeTooLarge, "").Errno(); got != want {
			t.Errorf("%s FAIL toolarge: errno %v, want %v", verb, got, want)
		}
		if got := peerproto.Fail(verb, peerproto.CodeNameTooLong, "").Errno(); got != syscall.ENAMETOOLONG {
			t.Errorf("%s FAIL nametoolong: errno %v, want ENAMETOOLONG", verb, got)
		}
	}
}

func TestFailErrorString(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{peerproto.Fail("PUT", peerproto.CodeNoSpace, "need %d bytes", 5), "PUT FAIL nospace need 5 bytes"},
		{peerproto.Fail("GET", peerproto.CodeNotFound, ""), "GET FAIL notfound"},
		{&peerproto.FailError{Verb: "SYNC", Code: "state"}, "SYNC FAIL state"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestCodeOf(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full")
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	osErr := func(_ any, err error) error { return err }

	tests := []struct {
		what string
		err  error
		want string
	}{
		{"open missing", osErr(os.Open(filepath.Join(dir, "missing"))), peerproto.CodeNotFound},
		{"mkdir existing", os.Mkdir(full, 0o755), peerproto.CodeExists},
		{"remove non-empty dir", os.Remove(full), peerproto.CodeNotEmpty},
		{"readdir of a file", osErr(os.ReadDir(file)), peerproto.CodeNotDir},
		{"open below a file", osErr(os.Open(filepath.Join(file, "x"))), peerproto.CodeNotDir},
		{"read a directory", osErr(os.ReadFile(full)), peerproto.CodeIsDir},
		{"wrapped", fmt.Errorf("peer: put: %w", osErr(os.Open(filepath.Join(dir, "missing")))), peerproto.CodeNotFound},
		{"EPERM", syscall.EPERM, peerproto.CodeDenied},
		{"EACCES", &fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, peerproto.CodeDenied},
		{"ENOSPC", syscall.ENOSPC, peerproto.CodeNoSpace},
		{"EDQUOT", syscall.EDQUOT, peerproto.CodeNoSpace},
		{"EINVAL", syscall.EINVAL, peerproto.CodeInvalid},
		{"EFBIG", syscall.EFBIG, peerproto.CodeTooLarge},
		{"ENAMETOOLONG", syscall.ENAMETOOLONG, peerproto.CodeNameTooLong},
		{"EROFS", syscall.EROFS, peerproto.CodeReadOnly},
		{"ENOTSUP", syscall.ENOTSUP, peerproto.CodeUnsupported},
		{"EIO", syscall.EIO, peerproto.CodeIO},
		{"fs.ErrNotExist", fs.ErrNotExist, peerproto.CodeNotFound},
		{"fs.ErrExist", fmt.Errorf("x: %w", fs.ErrExist), peerproto.CodeExists},
		{"fs.ErrPermission", fs.ErrPermission, peerproto.CodeDenied},
		{"FailError", fmt.Errorf("x: %w", peerproto.Fail("PUT", peerproto.CodeBusy, "")), peerproto.CodeBusy},
		{"plain error", errors.New("boom"), peerproto.CodeIO},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: the setup did not fail", tt.what)
			continue
		}
		if got := peerproto.CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%s: %v) = %q, want %q", tt.what, tt.err, got, tt.want)
		}
	}
}

// TestCodeOfRoundTrip checks that an errno sent as a code comes back as
// the same errno, for every errno a code stands for.
func TestCodeOfRoundTrip(t *testing.T) {
	for _, c := range codes {
		if c.errno == syscall.EIO || c.errno == syscall.EBUSY {
			continue // several codes share EIO; EBUSY is never a local file error
		}
		code := peerproto.CodeOf(c.errno)
		if got := (&peerproto.FailError{Code: code}).Errno(); got != c.errno {
			t.Errorf("errno %v -> code %q -> errno %v", c.errno, code, got)
		}
	}
}
