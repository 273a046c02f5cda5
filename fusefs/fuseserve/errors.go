package fuseserve

import "errors"

// The server's own refusals. It picks no errno: Options.Errno maps these
// as it maps the errors of node methods.
var (
	// ErrStale: the request names a node or handle the server does not
	// know (forgotten, released, or never given out).
	ErrStale = errors.New("fuseserve: unknown node or handle")
	// ErrNotImplemented: the server does not serve this kind of request
	// (poll, ioctl, locks...). To the kernel it should mean "never
	// implemented", so that it stops asking.
	ErrNotImplemented = errors.New("fuseserve: request not implemented")
	// ErrNotInFlight: an INTERRUPT names a request that has been answered
	// already or not read yet; the kernel should send it again if the
	// request is still pending.
	ErrNotInFlight = errors.New("fuseserve: interrupted request not in flight")
	// ErrXattrTooLarge: an extended attribute (or the list of names)
	// does not fit the size the caller asked for.
	ErrXattrTooLarge = errors.New("fuseserve: extended attribute larger than the buffer")
	// ErrPanic: a node method panicked; the server has logged the panic
	// and its stack.
	ErrPanic = errors.New("fuseserve: panic in a node method")
	// ErrMalformed: the kernel sent a request the connection could not
	// decode (fusedev.BadRequest).
	ErrMalformed = errors.New("fuseserve: malformed request")
)

// UnsupportedError is the answer to a request about a node or handle
// that does not implement its method (a Mkdir on a node that is no
// bfs.NodeMkdirer).
type UnsupportedError struct {
	Op string // the operation, as Options.Observe names it: "mkdir", "getxattr"...
}

func (e *UnsupportedError) Error() string {
	return "fuseserve: " + e.Op + " not supported by this node"
}
