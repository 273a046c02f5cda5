package etcdtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
)

// memberEnv names the variable that makes a test binary run one etcd
// member (its JSON Member) instead of its tests: see RunMemberIfAsked.
const memberEnv = "PEERFS_ETCDTEST_MEMBER"

// RunMemberIfAsked runs the etcd member a test binary was started for
// by StartProcesses, until SIGTERM or SIGINT, and exits; it returns at
// once in a binary started to run tests. Call it first in TestMain.
func RunMemberIfAsked() {
	spec := os.Getenv(memberEnv)
	if spec == "" {
		return
	}
	os.Exit(runMember(spec))
}

func runMember(spec string) int {
	var m Member
	if err := json.Unmarshal([]byte(spec), &m); err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest:", err)
		return 1
	}
	e, err := StartMember(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, err)
	}
	e.Close()
	return 0
}

// Process is one member of a cluster StartProcesses runs, in a process
// of its own, so that a test can kill -9 it.
type Process struct {
	Member
	Cmd *exec.Cmd
	log testutil.LogBuffer
}

// Kill kills the member with SIGKILL: no goodbye to its peers or clients.
func (p *Process) Kill() error { return p.Cmd.Process.Kill() }

// StartProcesses runs an n-member etcd cluster on loopback until the
// test ends, each member in a process of its own: the test binary
// itself, started again with the member in its environment (its
// TestMain must call RunMemberIfAsked). As Start, it picks other ports
// when another process took one of those it picked before etcd bound it.
func StartProcesses(t testing.TB, n int) []*Process {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ps, err := startProcesses(t, n)
		if err == nil {
			return ps
		}
		if !addrInUse(err) || attempt == startAttempts {
			t.Fatal(err)
		}
		t.Logf("etcdtest: %v; picking other ports", err)
	}
}

// planProcesses lays out the members StartProcesses starts (Plan; a
// test's hook).
var planProcesses = Plan

// startProcesses is one try of StartProcesses. If a member does not
// start, it kills the others (they may wait for a quorum that never
// comes) and says why; the test's end reaps them.
func startProcesses(t testing.TB, n int) ([]*Process, error) {
	ms, err := planProcesses(n, t.TempDir())
	if err != nil {
		return nil, err
	}
	var ps []*Process
	killAll := func() {
		for _, p := range ps {
			_ = p.Cmd.Process.Kill()
		}
	}
	started := make(chan error, len(ms))
	for _, m := range ms {
		spec, _ := json.Marshal(m)
		p := &Process{Member: m, Cmd: exec.Command(os.Args[0], "-test.run=^$")}
		p.Cmd.Env = append(os.Environ(), memberEnv+"="+string(spec))
		// Killed with the test binary too: a test's timeout panics it,
		// and no cleanup runs then.
		p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := p.Cmd.StdoutPipe()
		if err == nil {
			p.Cmd.Stderr = &p.log
			err = p.Cmd.Start()
		}
		if err != nil {
			killAll()
			return nil, err
		}
		t.Cleanup(func() {
			_ = p.Cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = p.Cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = p.Cmd.Process.Kill()
				<-done
			}
		})
		ps = append(ps, p)
		go func() {
			// The members of a new cluster are ready together, once
			// they have elected a leader.
			b := make([]byte, len("ready\n"))
			if n, _ := out.Read(b); string(b[:n]) != "ready\n" {
				// Its log is complete once it is reaped.
				_ = p.Cmd.Process.Kill()
				_ = p.Cmd.Wait()
				started <- fmt.Errorf("etcd member %s did not start: %s", m.Name, p.log.String())
				return
			}
			started <- nil
		}()
	}
	var first error
	for range ms {
		if err := <-started; err != nil && first == nil {
			first = err
			killAll()
		}
	}
	return ps, first
}

// ClientURLs lists the members' client URLs.
func ClientURLs(ps []*Process) []string {
	var urls []string
	for _, p := range ps {
		urls = append(urls, p.ClientURL())
	}
	return urls
}
