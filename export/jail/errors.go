package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/peerfs/peerfs/peerproto"
)

// Refusal is a name refused before it reaches the filesystem, or a
// filesystem error that says the name escapes the export.
type Refusal struct {
	Code    string // a peerproto.Code* constant
	Text    string // for people
	Hostile bool   // an attempt to leave the export, worth a warning in the log
}

// Error returns the refusal's code and text.
func (e *Refusal) Error() string { return e.Code + " " + e.Text }

// ErrSymlink is the error of a path refused by the Strict view because one
// of its elements is a symbolic link, which it does not follow. It matches
// syscall.ELOOP, which open(2) gives for a link it must not follow.
var ErrSymlink error = symlinkError{}

type symlinkError struct{}

func (symlinkError) Error() string        { return "symbolic link in the path, not followed" }
func (symlinkError) Is(target error) bool { return target == syscall.ELOOP }

// Escapes reports whether err is the refusal of a path that leads outside
// the export: openat2's, or os.Root's, which os does not export, so it is
// recognised by its text at the bottom of the chain.
func Escapes(err error) bool {
	if errors.Is(err, errEscape) {
		return true
	}
	for err != nil {
		if err.Error() == "path escapes from parent" {
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}

// Explain turns a filesystem error about name (or a *Refusal) into the
// code and text of a refusal, and reports whether it smells hostile (an
// escape).
func Explain(name string, err error) (code, text string, hostile bool) {
	var pe *Refusal
	if errors.As(err, &pe) {
		return pe.Code, pe.Text, pe.Hostile
	}
	if errors.Is(err, ErrSymlink) {
		return peerproto.CodeLoop, fmt.Sprintf("%q: a symbolic link in the path, which this connection does not follow", name), false
	}
	if Escapes(err) {
		return peerproto.CodeDenied, fmt.Sprintf("path escapes the export: %q leads outside through a symbolic link", name), true
	}
	code = peerproto.CodeOf(err)
	switch code {
	case peerproto.CodeNotFound:
		text = fmt.Sprintf("no such file or directory %q", name)
	case peerproto.CodeExists:
		text = fmt.Sprintf("%q already exists", name)
	case peerproto.CodeNotEmpty:
		text = fmt.Sprintf("directory %q is not empty", name)
	case peerproto.CodeNotDir:
		text = fmt.Sprintf("%q (or one of its parents) is not a directory", name)
	case peerproto.CodeIsDir:
		text = fmt.Sprintf("%q is a directory", name)
	case peerproto.CodeDenied:
		text = fmt.Sprintf("permission denied on %q", name)
	case peerproto.CodeNoSpace:
		text = fmt.Sprintf("no space left on the export writing %q", name)
	case peerproto.CodeTooLarge:
		text = fmt.Sprintf("%q: size over a limit of the filesystem", name)
	case peerproto.CodeNameTooLong:
		text = fmt.Sprintf("%q: name over a limit of the filesystem", name)
	case peerproto.CodeReadOnly:
		text = "export is on a read-only filesystem"
	default:
		text = fmt.Sprintf("%q: %v", name, BareError(err))
	}
	if errors.Is(err, syscall.ELOOP) {
		code, text = peerproto.CodeInvalid, fmt.Sprintf("too many levels of symbolic links in %q", name)
	}
	return code, text, false
}

// BareError strips the *PathError wrapper, whose path is relative to the
// export and would repeat the name.
func BareError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
