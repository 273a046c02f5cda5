package shell

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peer"
)

// waitTimeout bounds every wait for shell output.
const waitTimeout = 15 * time.Second

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// session is a shell running Run on its own goroutine, fed through a pipe.
type session struct {
	t      *testing.T
	name   string
	in     *io.PipeWriter
	out    *syncBuffer
	errOut *syncBuffer
	cancel context.CancelFunc
	done   chan error
	seen   int // bytes of out already matched by expect
}

// testOptions returns Options with short timeouts and a quiet logger.
func testOptions() Options {
	return Options{
		Client: peer.ClientOptions{DialTimeout: 2 * time.Second, IOTimeout: 5 * time.Second},
		Logger: zerolog.Nop(),
	}
}

// startShell runs a shell with opts (In, Out and Err are replaced). It is
// stopped at cleanup if the test did not quit it.
func startShell(t *testing.T, name string, opts Options) *session {
	t.Helper()
	pr, pw := io.Pipe()
	s := &session{t: t, name: name, in: pw, out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan error, 1)}
	opts.In, opts.Out, opts.Err = pr, s.out, s.errOut
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- Run(ctx, opts)
		pr.Close()
	}()
	t.Cleanup(func() {
		cancel()
		pw.Close()
		select {
		case <-s.done:
		case <-time.After(waitTimeout):
			t.Errorf("%s: Run did not return after cancel", name)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, s.out.String())
		}
	})
	return s
}

// send types one command line.
func (s *session) send(line string) {
	s.t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := io.WriteString(s.in, line+"\n")
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			s.t.Fatalf("%s: type %q: %v", s.name, line, err)
		}
	case <-time.After(waitTimeout):
		s.t.Fatalf("%s: shell did not take %q; output:\n%s", s.name, line, s.out.String())
	}
}

// expect waits for an output line, after those already matched, that
// matches pattern, and returns its submatches. Lines in between (notices)
// are skipped.
func (s *session) expect(pattern string) []string {
	s.t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(waitTimeout)
	for {
		out := s.out.String()
		rest := out[s.seen:]
		off := s.seen
		for {
			i := strings.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			line := rest[:i]
			off += i + 1
			rest = rest[i+1:]
			if m := re.FindStringSubmatch(line); m != nil {
				s.seen = off
				return m
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no line matching %q; output after the last match:\n%s", s.name, pattern, out[s.seen:])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run types line and waits for a line matching pattern.
func (s *session) run(line, pattern string) []string {
	s.t.Helper()
	s.send(line)
	return s.expect(pattern)
}

// quit types quit and waits for Run to return nil.
func (s *session) quit() {
	s.t.Helper()
	s.run("quit", `^QUIT OK$`)
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("%s: Run after quit: %v", s.name, err)
		}
		s.done <- err // for the cleanup
	case <-time.After(waitTimeout):
		s.t.Fatalf("%s: Run did not return after quit", s.name)
	}
}

// startPeer serves a fresh export directory and returns its address and
// directory.
func startPeer(t *testing.T, opts export.Options) (addr, dir string) {
	t.Helper()
	if opts.Export == "" {
		opts.Export = t.TempDir()
	}
	opts.Logger = zerolog.Nop()
	srv, err := export.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.Serve(t, srv), opts.Export
}

// hostPortArgs renders addr as the shell's "<ip> <port>" arguments.
func hostPortArgs(t *testing.T, addr string) string {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h + " " + p
}

// portOf returns addr's port.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fakePeer serves one connection with handle, after the CONNECT OK
// greeting; for failures a real server does not produce on demand.
func fakePeer(t *testing.T, handle func(r *bufio.Reader, w net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := io.WriteString(nc, "CONNECT OK\n"); err != nil {
			return
		}
		handle(bufio.NewReader(nc), nc)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}
