package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/etcdtest"
	"github.com/peerfs/peerfs/secure"
)

// bin is the peerfs binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	etcdtest.RunMemberIfAsked()
	if h := os.Getenv("PEERFS_E2E_HELPER"); h != "" {
		os.Exit(runHelper(h, os.Args[len(os.Args)-1]))
	}
	flag.Parse()
	if testing.Short() {
		// go test -short: the quick loop skips real mounts and daemons
		// (and the binary they need: a -race build takes a while).
		fmt.Println("e2e: skipped under -short (real mounts and daemons)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "peerfs-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "peerfs")
	build := exec.Command("go", "build", "-race", "-o", bin, "../cmd/peerfs")
	if os.Getenv("PEERFS_E2E_NORACE") != "" {
		build = exec.Command("go", "build", "-o", bin, "../cmd/peerfs")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building peerfs:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a 127.0.0.1 address with a port free right now, picked
// outside the range outgoing connections take theirs from
// (etcdtest.FreePort).
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := etcdtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// proc is a peerfs process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemonAttr is how the tests start a daemon: in a process group of its
// own (signals to the test's group do not reach it), and sent SIGTERM
// (a mount then unmounts) if the test binary dies first, as when go
// test's timeout panics it and no cleanup runs. The kernel sends it when
// the thread that started the daemon ends, which in Go is the process's
// end, or a goroutine that ends while locked to its thread
// (runtime.LockOSThread without UnlockOSThread, or a t.Fatal between
// the two): such a goroutine must not start daemons, and every test
// that locks a thread must unlock it, or daemons die mid-test.
func daemonAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// start runs the peerfs binary with args; the process is killed (and, for a
// mount, unmounted) at the end of the test. Its log is printed if the test
// failed.
func start(t *testing.T, name string, stdin io.Reader, stdout io.Writer, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, nil, stdin, stdout, args...)
}

// startEnv is start with env added to the process's environment (a later
// value of a variable wins).
func startEnv(t *testing.T, name string, env []string, stdin io.Reader, stdout io.Writer, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "PEERFS_LOG_FORMAT=json")
	if !slices.Contains(args, "--insecure") {
		// Every process is a member of the tests' cluster, as in production.
		p.cmd.Env = append(p.cmd.Env, "PEERFS_SECRET="+clusterSecret)
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdin = stdin
	if stdout != nil {
		p.cmd.Stdout = stdout
	} else {
		p.cmd.Stdout = p.log
	}
	p.cmd.Stderr = p.log
	p.cmd.SysProcAttr = daemonAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("---- log of %s ----\n%s", name, p.log.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits up to 15s, then SIGKILL.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop on SIGTERM within 15s; killing", p.name)
		p.kill()
	}
}

// requests counts the requests with the given verb that a peer server
// logged (at debug level) and the payload bytes they moved.
func (p *proc) requests(verb string) (n int, bytes int64) {
	for _, line := range strings.Split(p.log.String(), "\n") {
		var rec struct {
			Message string `json:"message"`
			Verb    string `json:"verb"`
			Bytes   int64  `json:"bytes"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Message == "request" && rec.Verb == verb {
			n++
			bytes += rec.Bytes
		}
	}
	return n, bytes
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterSecret is the PEERFS_SECRET of every process the tests start
// (unless started with --insecure).
var clusterSecret = "e2e-" + rand.Text()

// lineConn is a raw, line-by-line exchange with a daemon, as a person
// with nc would have (over TLS, as a member, unless made by dialPlain).
type lineConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// dialLine connects to addr as a member of the tests' cluster: TLS and
// the membership proof, then the raw protocol.
func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	return dialLineSecret(t, addr, clusterSecret)
}

// dialLineSecret is dialLine with another secret; the proof exchange must
// succeed.
func dialLineSecret(t *testing.T, addr, secret string) *lineConn {
	t.Helper()
	cfg, err := secure.New([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.Client(nc, 5*time.Second)
	if err != nil {
		t.Fatalf("secure connection to %s: %v", addr, err)
	}
	t.Cleanup(func() { sc.Close() })
	return &lineConn{t: t, nc: sc, r: bufio.NewReader(sc)}
}

// dialPlain connects to addr in plaintext, exactly like nc.
func dialPlain(t *testing.T, addr string) *lineConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &lineConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// send writes raw bytes, exactly as typed.
func (c *lineConn) send(s string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads one line and checks it equals want (without "\n").
func (c *lineConn) expect(want string) {
	c.t.Helper()
	if got := c.line(); got != want {
		c.t.Fatalf("got line %q, want %q", got, want)
	}
}

func (c *lineConn) line() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading line: %v (partial %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

// runCtx runs a program with a timeout and returns its combined output.
func runCmd(t *testing.T, timeout time.Duration, dir string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s %v: timed out after %v", name, args, timeout)
	}
	return string(out), err
}

// mustRun is runCmd that fails the test on error.
func mustRun(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, err := runCmd(t, 60*time.Second, dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func dialQuiet(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }
