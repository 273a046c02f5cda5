// Package etcdtest starts etcd members for tests: embedded in the test
// process (go.etcd.io/etcd/server/v3/embed), or each in a process of its
// own (StartProcesses: the test binary run again, for kill -9), on
// loopback ports picked free, with their data in the test's temporary
// directory. Nothing from outside is needed.
package etcdtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long a member may take to be ready.
const startTimeout = 30 * time.Second

// Member says how to run one member of a cluster.
type Member struct {
	Name       string
	Dir        string // data directory
	ClientPort int
	PeerPort   int
	// Cluster is the initial cluster: name=http://127.0.0.1:peerport,...
	Cluster string
	// Durable keeps etcd's fsyncs (a benchmark's realism); tests leave
	// them out, for speed.
	Durable bool
}

// ClientURL is the member's client URL.
func (m Member) ClientURL() string { return fmt.Sprintf("http://127.0.0.1:%d", m.ClientPort) }

func (m Member) peerURL() string { return fmt.Sprintf("http://127.0.0.1:%d", m.PeerPort) }

// Plan lays out a cluster of n members with their data under dir and
// free loopback ports.
func Plan(n int, dir string) ([]Member, error) {
	ms := make([]Member, n)
	var cluster []string
	for i := range ms {
		cp, err := FreePort()
		if err != nil {
			return nil, err
		}
		pp, err := FreePort()
		if err != nil {
			return nil, err
		}
		ms[i] = Member{Name: fmt.Sprintf("etcd%d", i), Dir: fmt.Sprintf("%s/etcd%d", dir, i), ClientPort: cp, PeerPort: pp}
		cluster = append(cluster, ms[i].Name+"="+ms[i].peerURL())
	}
	for i := range ms {
		ms[i].Cluster = strings.Join(cluster, ",")
	}
	return ms, nil
}

// FreePort returns a loopback TCP port nothing listens on now, picked
// below the kernel's ephemeral range when it can be: a port from that
// range (what a listen on port 0 gives) is the next candidate for every
// outgoing connection on the machine, and test packages running side by
// side make thousands, so one of them can take the port before its user
// binds it. Below the range only another picker like this one competes.
func FreePort() (int, error) {
	lo := ephemeralLow()
	for range 64 {
		port := lowestPicked + rand.IntN(lo-lowestPicked)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lowestPicked is the lowest port FreePort picks: well above the ports
// services are configured on.
const lowestPicked = 20000

// ephemeralLow is the first port of the kernel's ephemeral range, or
// 32768 (Linux's default) when it cannot be read or leaves no room.
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return fallback
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= lowestPicked+1000 {
		return fallback
	}
	return lo
}

// StartMember starts m embedded and returns it once it serves clients
// (for a member of several, once a leader is elected: start them
// together). Close it with Close.
func StartMember(m Member) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cu, _ := url.Parse(m.ClientURL())
	pu, _ := url.Parse(m.peerURL())
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = m.Cluster
	cfg.InitialClusterToken = "peerfs-test"
	// Tests do not need etcd's durability; they need it fast.
	cfg.UnsafeNoFsync = !m.Durable
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdtest: %s: %w", m.Name, err)
	case <-time.After(startTimeout):
		e.Close()
		return nil, fmt.Errorf("etcdtest: %s not ready after %v", m.Name, startTimeout)
	}
}

// startAttempts bounds how often Start picks new ports after losing the
// ones it picked to another process.
const startAttempts = 5

// Start runs a one-member etcd until the test ends and returns its
// client URLs. A port found free can be taken by another test process
// before etcd binds it (go test runs packages side by side), so a bind
// that fails with EADDRINUSE is tried again on new ports.
func Start(t testing.TB) []string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ms, err := Plan(1, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		e, err := StartMember(ms[0])
		if err == nil {
			t.Cleanup(e.Close)
			return []string{ms[0].ClientURL()}
		}
		if !addrInUse(err) || attempt == startAttempts {
			t.Fatal(err)
		}
		t.Logf("etcdtest: %v; picking other ports", err)
	}
}

// addrInUse reports whether err is a listener's EADDRINUSE; etcd does not
// always wrap the net error, so its text is checked as well.
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
