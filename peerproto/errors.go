package peerproto

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// ErrLineTooLong is returned (wrapped in a *ProtocolError) for a line longer
// than MaxLine.
var ErrLineTooLong = errors.New("line too long")

// ProtocolError reports input that does not follow the grammar. The
// connection it came from can no longer be trusted to be in step.
type ProtocolError struct {
	Line string // the offending line, truncated for display
	Msg  string // what is wrong with it
	Err  error  // underlying cause, if any
}

func (e *ProtocolError) Error() string {
	if e.Line == "" {
		return "peerproto: " + e.Msg
	}
	return fmt.Sprintf("peerproto: %s: %q", e.Msg, e.Line)
}

// Unwrap returns the underlying cause.
func (e *ProtocolError) Unwrap() error { return e.Err }

func protoErr(line []byte, format string, args ...any) *ProtocolError {
	const max = 80
	l := string(line)
	if len(l) > max {
		l = l[:max] + "..."
	}
	return &ProtocolError{Line: l, Msg: fmt.Sprintf(format, args...)}
}

// Failure codes: the first word of every "<VERB> FAIL" reason. The rest of
// the reason is free text for people.
const (
	CodeNotFound    = "notfound"    // no such file or directory
	CodeExists      = "exists"      // target already exists
	CodeNotEmpty    = "notempty"    // directory not empty
	CodeNotDir      = "notdir"      // a path element is not a directory
	CodeIsDir       = "isdir"       // operation needs a file, got a directory
	CodeDenied      = "denied"      // permission denied, or the path escapes the export
	CodeNoSpace     = "nospace"     // not enough free space
	CodeInvalid     = "invalid"     // malformed request or invalid name
	CodeTooLarge    = "toolarge"    // size, count (or, from older peers, name) over a limit
	CodeNameTooLong = "nametoolong" // a name or one of its elements over a limit
	CodeBusy        = "busy"        // server at its connection or transfer limit
	CodeReadOnly    = "readonly"    // export is read-only
	CodeIO          = "io"          // I/O error on the serving side
	CodeUnsupported = "unsupported" // verb or option not supported
	CodeExpired     = "expired"     // a SYNC lease ran out
	CodeState       = "state"       // request not valid in the current state
	CodeConflict    = "conflict"    // a conditional PUT's base is not the current version
	CodeLoop        = "loop"        // a path through a symbolic link, which the peer does not follow (FeaturePosix)
)

// FailError is a well-formed refusal from the other side:
// "<Verb> FAIL <Code> <Text>".
type FailError struct {
	Verb string // verb of the refused request, e.g. "PUT"
	Code string // one of the Code constants (or an unknown word from a foreign peer)
	Text string // human-readable detail, may be empty
}

func (e *FailError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("%s FAIL %s", e.Verb, e.Code)
	}
	return fmt.Sprintf("%s FAIL %s %s", e.Verb, e.Code, e.Text)
}

// Errno maps the failure code to the errno a filesystem caller expects.
func (e *FailError) Errno() syscall.Errno {
	switch e.Code {
	case CodeNotFound:
		return syscall.ENOENT
	case CodeExists:
		return syscall.EEXIST
	case CodeNotEmpty:
		return syscall.ENOTEMPTY
	case CodeNotDir:
		return syscall.ENOTDIR
	case CodeIsDir:
		return syscall.EISDIR
	case CodeDenied:
		return syscall.EACCES
	case CodeNoSpace:
		return syscall.ENOSPC
	case CodeInvalid:
		return syscall.EINVAL
	case CodeTooLarge:
		// Peers before the code nametoolong sent toolarge for names too:
		// a request that carries no size can only have had its name
		// refused.
		switch e.Verb {
		case VerbStat, VerbGet, VerbDelete, VerbRename, VerbMkdir, VerbRmdir,
			VerbSymlink, VerbReadlink, VerbLink, VerbMknod, VerbSum:
			return syscall.ENAMETOOLONG
		}
		return syscall.EFBIG
	case CodeNameTooLong:
		return syscall.ENAMETOOLONG
	case CodeBusy:
		return syscall.EBUSY
	case CodeReadOnly:
		return syscall.EROFS
	case CodeUnsupported:
		return syscall.ENOTSUP
	case CodeConflict:
		return syscall.ESTALE
	case CodeLoop:
		return syscall.ELOOP
	default:
		return syscall.EIO
	}
}

// Is lets errors.Is match a FailError against the io/fs sentinels.
func (e *FailError) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Code == CodeNotFound
	case fs.ErrExist:
		return e.Code == CodeExists
	case fs.ErrPermission:
		return e.Code == CodeDenied || e.Code == CodeReadOnly
	}
	return false
}

// Fail builds a *FailError.
func Fail(verb, code, format string, args ...any) *FailError {
	return &FailError{Verb: verb, Code: code, Text: fmt.Sprintf(format, args...)}
}

// CodeOf maps a local error (typically from the os package) to a failure
// code, so that a server can refuse with the reason a filesystem would give.
func CodeOf(err error) string {
	var fe *FailError
	if errors.As(err, &fe) {
		return fe.Code
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT:
			return CodeNotFound
		case syscall.EEXIST:
			return CodeExists
		case syscall.ENOTEMPTY:
			return CodeNotEmpty
		case syscall.ENOTDIR:
			return CodeNotDir
		case syscall.EISDIR:
			return CodeIsDir
		case syscall.EACCES, syscall.EPERM:
			return CodeDenied
		case syscall.ENOSPC, syscall.EDQUOT:
			return CodeNoSpace
		case syscall.EINVAL:
			return CodeInvalid
		case syscall.EFBIG:
			return CodeTooLarge
		case syscall.ENAMETOOLONG:
			return CodeNameTooLong
		case syscall.EROFS:
			return CodeReadOnly
		case syscall.ENOTSUP:
			return CodeUnsupported
		case syscall.ELOOP:
			return CodeLoop
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return CodeNotFound
	case errors.Is(err, fs.ErrExist):
		return CodeExists
	case errors.Is(err, fs.ErrPermission):
		return CodeDenied
	}
	return CodeIO
}
