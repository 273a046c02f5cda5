package e2e

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// shellPeer is a `peerfs peer --shell on` process driven through stdin.
type shellPeer struct {
	*proc
	in  io.WriteCloser
	out *syncBuffer
	dir string
}

func startShellPeer(t *testing.T, name, tracker string) *shellPeer {
	t.Helper()
	export := t.TempDir()
	// An *os.File, not an io.Pipe: exec.Cmd.Wait would wait for a copying
	// goroutine that only ends when the test closes its end.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	p := start(t, name, pr, out, "peer", "--shell", "on", "--name", name, "--export", export,
		"--listen", "127.0.0.1:0", "--timeout", "3s")
	pr.Close()
	t.Cleanup(func() { pw.Close() })
	return &shellPeer{proc: p, in: pw, out: out, dir: export}
}

// do types a command and waits until the output contains want.
func (s *shellPeer) do(t *testing.T, cmd, want string) string {
	t.Helper()
	before := len(s.out.String())
	if _, err := io.WriteString(s.in, cmd+"\n"); err != nil {
		t.Fatalf("%s: typing %q: %v", s.name, cmd, err)
	}
	var got string
	waitFor(t, 15*time.Second, s.name+": "+cmd+" -> "+want, func() bool {
		got = s.out.String()[before:]
		return strings.Contains(got, want)
	})
	return got
}

// TestShellExchange drives the built binary through the seed's command
// shell: a tracker and two peers register, connect and exchange files.
func TestShellExchange(t *testing.T) {
	trackerAddr := freeAddr(t)
	start(t, "tracker", nil, nil, "tracker", "--listen", trackerAddr)
	a := startShellPeer(t, "alice", trackerAddr)
	b := startShellPeer(t, "bob", trackerAddr)
	host, port := splitAddr(t, trackerAddr)

	a.do(t, "register "+host+" "+port, "REGISTER OK")
	b.do(t, "register "+host+" "+port, "REGISTER OK")
	// alice learns of bob through an UPDATE.
	waitFor(t, 10*time.Second, "alice hears of bob", func() bool {
		return strings.Contains(a.out.String(), " bob@127.0.0.1:")
	})
	out := a.do(t, "peers", "PEERS OK 2")
	m := regexp.MustCompile(`bob\s+(127\.0\.0\.1:\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("peers output lacks bob's address: %q", out)
	}
	bh, bp := splitAddr(t, m[1])

	out = a.do(t, "connect "+bh+" "+bp, "CONNECT OK")
	if !strings.Contains(out, "CONNECT OK 1") {
		t.Fatalf("connect output %q lacks connection id 1", out)
	}
	a.do(t, "connect 127.0.0.1 1", "CONNECT FAIL")

	// put: a local file of alice's goes into bob's export.
	data := make([]byte, 3<<20)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "photo.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a.do(t, "put 1 "+src, "PUT OK")
	got, err := os.ReadFile(filepath.Join(b.dir, "photo.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("bob's export has %d bytes (err %v), want the %d alice sent", len(got), err, len(data))
	}

	// get: a file of bob's comes to alice.
	if err := os.WriteFile(filepath.Join(b.dir, "notes.txt"), []byte("from bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "notes-copy.txt")
	a.do(t, "get 1 notes.txt "+dst, "GET OK")
	if got, _ := os.ReadFile(dst); string(got) != "from bob\n" {
		t.Fatalf("got %q", got)
	}
	a.do(t, "get 1 missing.txt "+dst+".x", "GET FAIL")
	if _, err := os.Stat(dst + ".x"); !os.IsNotExist(err) {
		t.Fatalf("a failed get left %s behind", dst+".x")
	}
	a.do(t, "get 1 ../../etc/passwd "+dst+".y", "GET FAIL")

	// a bad command prints usage and the shell goes on.
	a.do(t, "frobnicate", "unknown command")
	a.do(t, "put 1", "usage")

	// sync: alice gets the token; bob reads, then takes his turn.
	a.do(t, "sync", "SYNC FIN")
	waitFor(t, 10*time.Second, "bob sees the round", func() bool {
		o := b.out.String()
		return strings.Contains(o, "SYNC READ") && strings.Contains(o, "SYNC END")
	})

	a.do(t, "quit", "")
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatal("alice did not exit after quit")
	}
	// bob learns alice left.
	waitFor(t, 10*time.Second, "bob's UPDATE without alice", func() bool {
		return strings.Contains(b.out.String(), "* UPDATE bob@")
	})
}

func splitAddr(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// TestDemoScript runs README's first command in its self-checking form:
// mount.sh --demo starts a tracker and two mounting peers on loopback.
func TestDemoScript(t *testing.T) {
	needFUSE(t)
	out, err := runCmd(t, 3*time.Minute, "..", "./mount.sh", "--demo", "--selftest")
	if err != nil || !strings.Contains(out, "demo selftest passed") {
		t.Fatalf("mount.sh --demo --selftest: %v\n%s", err, out)
	}
}
