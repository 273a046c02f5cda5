package etcdstate_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/internal/etcdtest"
)

// TestMain checks that the tests leave no goroutine behind: replicas,
// etcd clients and the embedded etcd all stop. Started as an etcd
// member of etcdtest.StartProcesses, the binary runs that instead.
func TestMain(m *testing.M) {
	etcdtest.RunMemberIfAsked()
	goleak.VerifyTestMain(m)
}
