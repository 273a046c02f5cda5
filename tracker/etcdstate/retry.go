package etcdstate

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backoff between tries of an operation that met a transient error.
const (
	retryFirst = 20 * time.Millisecond
	retryMost  = 500 * time.Millisecond
)

// transient reports whether err is etcd unable to answer for a moment:
// the member the request went to is gone, or the cluster is electing a
// leader (gRPC's Unavailable, which etcd gives for "leader changed",
// "no leader" and "request timed out" too). etcd's client retries such
// errors only for reads: a write may have been carried out before its
// answer was lost.
func transient(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable
}

// retry runs op until it succeeds, fails for good, or ctx ends (then
// the last error). op must be safe to run again after a write it made
// whose answer was lost: every write here is a compare-and-swap, or one
// that finds its own earlier effect (Join, the token's key), so a retry
// reads the store again and does no more than the first try would have.
//
// The session's end does not stop it: etcd's client gives a session up
// once its keep-alives go unanswered for the TTL, which an election can
// outlast while the lease lives on, and what a peer asked meanwhile is
// still to be recorded (a write that needs the token is fenced by it).
func (x *session) retry(ctx context.Context, op func() error) error {
	wait := retryFirst
	for {
		err := op()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, retryMost)
	}
}
