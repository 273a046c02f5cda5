package etcdtest

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// TestMain runs an etcd member instead of the tests when
// StartProcesses started the binary for one.
func TestMain(m *testing.M) {
	RunMemberIfAsked()
	os.Exit(m.Run())
}

// TestStartProcessesPicksOtherPorts: a member whose client port another
// process took after it was picked does not start; StartProcesses kills
// the rest and starts the cluster again on other ports.
func TestStartProcessesPicksOtherPorts(t *testing.T) {
	var taken net.Listener
	plans := 0
	planProcesses = func(n int, dir string) ([]Member, error) {
		ms, err := Plan(n, dir)
		plans++
		if err == nil && plans == 1 {
			taken, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ms[0].ClientPort))
		}
		return ms, err
	}
	t.Cleanup(func() {
		planProcesses = Plan
		if taken != nil {
			taken.Close()
		}
	})
	ps := StartProcesses(t, 3)
	if plans != 2 {
		t.Errorf("planned %d times, want 2 (the first plan's port taken)", plans)
	}
	if len(ps) != 3 {
		t.Fatalf("%d members, want 3", len(ps))
	}
	for _, p := range ps {
		if p.ClientPort == taken.Addr().(*net.TCPAddr).Port {
			t.Errorf("member %s on the taken port %d", p.Name, p.ClientPort)
		}
	}
}
