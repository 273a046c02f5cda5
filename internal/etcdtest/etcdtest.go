// Package etcdtest starts etcd members for tests: embedded in the test
// process (go.etcd.io/etcd/server/v3/embed), on loopback ports picked
// free, with their data in the test's temporary directory. Nothing from
// outside is needed.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
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

// FreePort returns a loopback TCP port nothing listens on now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
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

// Start runs a one-member etcd until the test ends and returns its
// client URLs.
func Start(t testing.TB) []string {
	t.Helper()
	ms, err := Plan(1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := StartMember(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return []string{ms[0].ClientURL()}
}
