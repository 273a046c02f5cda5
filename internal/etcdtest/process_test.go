package etcdtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
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

// dieEnv asks this test binary, started again by
// TestMembersDieWithTheTest, to start a member and exit at once.
const dieEnv = "PEERFS_ETCDTEST_START_AND_DIE"

// TestStartAndDie is TestMembersDieWithTheTest's child: it starts a
// member, says its pid and exits without any cleanup, as a test binary
// that a timeout panics does. Skipped otherwise.
func TestStartAndDie(t *testing.T) {
	if os.Getenv(dieEnv) == "" {
		t.Skip("run by TestMembersDieWithTheTest")
	}
	ps := StartProcesses(t, 1)
	fmt.Printf("pid %d\n", ps[0].Cmd.Process.Pid)
	os.Exit(0)
}

// TestMembersDieWithTheTest: a member StartProcesses started does not
// outlive the test binary when it dies without cleaning up (a go test
// timeout): it is killed with it.
func TestMembersDieWithTheTest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStartAndDie$")
	// The child's member data (a 64 MB WAL) under this test's directory:
	// the child exits without removing its own.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), dieEnv+"=1", "TMPDIR="+tmp)
	out, err := cmd.Output()
	var pid int
	if _, serr := fmt.Sscanf(string(out), "pid %d", &pid); serr != nil {
		t.Fatalf("the child said %q (%v, %v)", out, err, serr)
	}
	t.Cleanup(func() {
		if !testutil.Ended(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testutil.Eventually(t, "the member to end with the test binary that started it", func() bool {
		return testutil.Ended(pid)
	})
	if des, _ := os.ReadDir(tmp); len(des) == 0 {
		t.Errorf("the child's member kept its data elsewhere than TMPDIR %s, which nothing removes", tmp)
	}
}
