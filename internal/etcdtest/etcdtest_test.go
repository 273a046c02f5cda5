package etcdtest

import (
	"net"
	"testing"
)

// TestPortTakenIsRecognised: a member whose client port another process
// holds fails with an error Start knows to retry on other ports, and
// Start itself still brings a member up.
func TestPortTakenIsRecognised(t *testing.T) {
	ms, err := Plan(1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ms[0].ClientURL()[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e, err := StartMember(ms[0])
	if err == nil {
		e.Close()
		t.Fatal("etcd started on a port another listener holds")
	}
	if !addrInUse(err) {
		t.Fatalf("bind failure not recognised as EADDRINUSE: %v", err)
	}
	if eps := Start(t); len(eps) != 1 {
		t.Fatalf("Start gave %v", eps)
	}
}
