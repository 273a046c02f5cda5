package remote

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peerproto"
)

// The Store's errors say what happened in the terms of fusefs's error
// vocabulary (fusefs.ErrUnavailable, ErrConflict...) and io/fs's, plus
// the peer's refusals (*peerproto.FailError) as they came; the FUSE edge
// turns them into errnos. Only a failure of this machine's own disk keeps
// the errno the system gave it (ENOSPC...).

// UnreachableError is a request that could not reach its peer: the
// network, or the peer, failed (fusefs.ErrUnavailable). The cause is
// kept for the message only: an errno of the connection (ECONNREFUSED)
// is not the program's.
type UnreachableError struct {
	Peer, Addr string
	Cause      error
}

// Error implements error.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("remote: peer %s (%s) unreachable: %v", e.Peer, e.Addr, e.Cause)
}

// Unwrap returns fusefs.ErrUnavailable.
func (e *UnreachableError) Unwrap() error { return fusefs.ErrUnavailable }

// ConflictError is an upload refused because another writer replaced the
// file since this one opened it: this writer's data is kept as KeptAs
// (fusefs.ErrConflict).
type ConflictError struct {
	Peer, Path string // the file
	KeptAs     string // the conflict copy's path
	Reason     string // the peer's words
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("remote: %s: %s; this writer's data is kept as %q", e.Peer, e.Reason, e.KeptAs)
}

// Unwrap returns fusefs.ErrConflict.
func (e *ConflictError) Unwrap() error { return fusefs.ErrConflict }

// netErr turns the failure of a request to p into the Store's error:
// refusals and cancellations are kept as they are, a failure on this
// side keeps its cause's errno (a local copy that ended early is EIO),
// anything else is an *UnreachableError.
func netErr(p *peerConn, err error) error {
	if err == nil {
		return nil
	}
	var fe *peerproto.FailError
	if errors.As(err, &fe) || errors.Is(err, context.Canceled) || errors.Is(err, fusefs.ErrNotPermitted) {
		return err // a refusal, by the peer or for it (what it serves)
	}
	if isLocal(err) {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return fmt.Errorf("remote: the local copy of a file of peer %s: %w", p.name, err)
		}
		return fmt.Errorf("remote: the local copy of a file of peer %s: %v: %w", p.name, err, syscall.EIO)
	}
	return &UnreachableError{Peer: p.name, Addr: p.addr, Cause: err}
}
