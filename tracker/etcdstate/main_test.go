package etcdstate_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the tests leave no goroutine behind: replicas,
// etcd clients and the embedded etcd all stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
