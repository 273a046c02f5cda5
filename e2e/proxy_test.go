package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/secure"
)

// faultProxy is a TCP proxy for tests that can misbehave on command: it
// listens on 127.0.0.1:0, forwards every connection to target, and can cut
// every connection, stall (stop forwarding while keeping the sockets open)
// or cut a connection once a number of bytes have gone one way.
type faultProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and every pump

	mu       sync.Mutex // protects the fields below
	links    map[*proxyLink]struct{}
	stalled  bool
	resumed  chan struct{} // closed when a stall ends
	budget   [2]int64      // bytes left before a cut, per direction; <0: off
	accepted int
	cuts     int
	moved    [2]int64 // bytes forwarded, per direction
	closed   bool
}

// Directions of a faultProxy link.
const (
	upstream   = 0 // client -> target
	downstream = 1 // target -> client
)

// proxyLink is one proxied connection: the accepted client side and the
// dialled target side.
type proxyLink struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
}

// cut closes both sides with a reset (linger 0), as a dropped link or a
// crashed middlebox would look to both ends.
func (l *proxyLink) cut() {
	l.once.Do(func() {
		for _, c := range []net.Conn{l.client, l.server} {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
		}
		close(l.done)
	})
}

// newFaultProxy starts a proxy to target, stopped at the end of the test.
func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, target: target, links: map[*proxyLink]struct{}{}, budget: [2]int64{-1, -1}}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	if p.resumed != nil {
		close(p.resumed)
		p.resumed = nil
	}
	p.stalled = false
	p.mu.Unlock()
	p.ln.Close()
	p.cutAll()
	p.wg.Wait()
}

func (p *faultProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		l := &proxyLink{client: c, server: s, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.cut()
			return
		}
		p.links[l] = struct{}{}
		p.accepted++
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pump(l, upstream, c, s)
		go p.pump(l, downstream, s, c)
	}
}

// pump copies src to dst, obeying stalls and cut budgets, until either
// side fails or the link is cut.
func (p *faultProxy) pump(l *proxyLink, dir int, src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		l.cut()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		if !p.waitUnstalled(l) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitUnstalled(l) {
				return
			}
			k, cut := p.take(dir, n)
			if k > 0 {
				if _, werr := dst.Write(buf[:k]); werr != nil {
					return
				}
			}
			if cut {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// take accounts for n bytes going dir and says how many may pass and
// whether the link must be cut after them.
func (p *faultProxy) take(dir, n int) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.budget[dir]
	if b >= 0 && int64(n) >= b {
		p.budget[dir] = -1 // one shot
		p.cuts++
		p.moved[dir] += b
		return int(b), true
	}
	if b >= 0 {
		p.budget[dir] -= int64(n)
	}
	p.moved[dir] += int64(n)
	return n, false
}

// waitUnstalled blocks while the proxy is stalled; false if the link was
// cut meanwhile.
func (p *faultProxy) waitUnstalled(l *proxyLink) bool {
	for {
		p.mu.Lock()
		ch := p.resumed
		p.mu.Unlock()
		if ch == nil {
			select {
			case <-l.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-ch:
		case <-l.done:
			return false
		}
	}
}

// cutAll resets every open connection; new ones are accepted as before.
func (p *faultProxy) cutAll() {
	p.mu.Lock()
	links := make([]*proxyLink, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	if len(links) > 0 {
		p.cuts++
	}
	p.mu.Unlock()
	for _, l := range links {
		l.cut()
	}
}

// stall stops forwarding in both directions; sockets stay open and new
// connections are accepted (and stalled too).
func (p *faultProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resumed == nil {
		p.resumed = make(chan struct{})
	}
}

// resume ends a stall.
func (p *faultProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resumed != nil {
		close(p.resumed)
		p.resumed = nil
	}
}

// cutAfter arms a one-shot cut: the connection that carries the n-th byte
// going dir (counted from now, over all connections) is reset right after
// that byte.
func (p *faultProxy) cutAfter(dir int, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.budget[dir] = n
}

// stats returns connections accepted, cuts made and bytes moved each way.
func (p *faultProxy) stats() (accepted, cuts int, up, down int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.cuts, p.moved[upstream], p.moved[downstream]
}

// trackerRelay stands between mounts and the tracker as a member of the
// cluster (it knows the tests' secret): it terminates TLS on both sides,
// passes every line through, and rewrites peer addresses in the tracker's
// UPDATE and JOINED lines. It is how a test routes a mount's peer connections through a
// faultProxy without changing the binary: the tracker advertises a peer at
// its connection's source address (127.0.0.1 for everyone here), so the
// mount can only be told about the proxy by rewriting what it hears.
type trackerRelay struct {
	ln      net.Listener
	tracker string
	rewrite map[string]string // "name@host:port" -> "name@host:port"
	cfg     *secure.Config
	wg      sync.WaitGroup

	mu     sync.Mutex // protects the fields below
	conns  map[net.Conn]struct{}
	closed bool
}

func newTrackerRelay(t *testing.T, tracker string, rewrite map[string]string) *trackerRelay {
	t.Helper()
	cfg, err := secure.New([]byte(clusterSecret))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &trackerRelay{ln: ln, tracker: tracker, rewrite: rewrite, cfg: cfg, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.acceptLoop()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		r.closed = true
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *trackerRelay) addr() string { return r.ln.Addr().String() }

// track records open connections so the cleanup can close them; false
// once the relay is closed.
func (r *trackerRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *trackerRelay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

func (r *trackerRelay) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.serve(c)
	}
}

func (r *trackerRelay) serve(raw net.Conn) {
	defer r.wg.Done()
	defer raw.Close()
	if !r.track(raw) {
		return
	}
	defer r.untrack(raw)
	client, err := r.cfg.Server(raw, 10*time.Second)
	if err != nil {
		return
	}
	up, err := net.DialTimeout("tcp", r.tracker, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !r.track(up) {
		return
	}
	defer r.untrack(up)
	server, err := r.cfg.Client(up, 10*time.Second)
	if err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { // mount -> tracker, verbatim
		_, _ = io.Copy(server, client)
		raw.Close()
		up.Close()
		done <- struct{}{}
	}()
	go func() { // tracker -> mount, the list's addresses rewritten
		br := bufio.NewReader(server)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				if _, werr := io.WriteString(client, r.rewriteLine(line)); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		raw.Close()
		up.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
}

func (r *trackerRelay) rewriteLine(line string) string {
	if !strings.HasPrefix(line, "UPDATE") && !strings.HasPrefix(line, "JOINED ") {
		return line // the list comes as UPDATE, or as PEERS and JOINED lines
	}
	f := strings.Fields(line)
	for i, tok := range f {
		if to, ok := r.rewrite[tok]; ok {
			f[i] = to
		}
	}
	return strings.Join(f, " ") + "\n"
}

// TestProxyMountToPeer routes alice's connections to bob through a
// faultProxy (alice's tracker link goes through a relay that rewrites bob's
// advertised address) and checks, from alice's mount: reads and writes
// work through the proxy; a stalled link gives EIO within the timeout and
// works again once resumed; cutting every connection costs at most the
// operations in flight; an upload cut half way never leaves a partial file
// on bob and is delivered by the mount's retries.
func TestProxyMountToPeer(t *testing.T) {
	c := newCluster(t)
	b := c.mount("bob")
	fp := newFaultProxy(t, b.listen)
	relay := newTrackerRelay(t, c.tracker, map[string]string{"bob@" + b.listen: "bob@" + fp.addr()})
	viaRelay := &cluster{t: t, tracker: relay.addr(), tproc: c.tproc}
	a := viaRelay.mount("alice")
	a.sees(b)
	bob := a.dir(b)

	small := []byte("through the proxy\n")
	writeFile(t, filepath.Join(b.export, "small.txt"), small)
	big := randBytes(8 << 20)
	writeFile(t, filepath.Join(b.export, "big.bin"), big)
	for i := range 3 {
		writeFile(t, filepath.Join(b.export, "s"+string(rune('0'+i))+".txt"), small)
	}

	sameFile(t, filepath.Join(bob, "small.txt"), small)
	if _, _, _, down := fp.stats(); down < int64(len(small)) {
		t.Fatalf("alice read bob's file without going through the proxy (%d bytes down)", down)
	}

	// Stall: nothing moves, sockets stay open. A file alice never looked
	// at must fail with EIO within the timeout (2s; allow 3x).
	fp.stall()
	begin := time.Now()
	out, err := runCmd(t, 20*time.Second, "", "cat", filepath.Join(bob, "s0.txt"))
	took := time.Since(begin)
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Errorf("cat through a stalled link: %v %q, want EIO", err, out)
	}
	if took > 6*time.Second {
		t.Errorf("cat through a stalled link failed after %v, want within ~2s (3x allowed)", took)
	}
	fp.resume()
	waitFor(t, 15*time.Second, "bob readable after the stall", func() bool {
		got, err := os.ReadFile(filepath.Join(bob, "s0.txt"))
		return err == nil && bytes.Equal(got, small)
	})

	// Cut every connection: the next operations reconnect and succeed.
	acc0, _, _, _ := fp.stats()
	fp.cutAll()
	waitFor(t, 15*time.Second, "bob readable after the cut", func() bool {
		got, err := os.ReadFile(filepath.Join(bob, "s1.txt"))
		return err == nil && bytes.Equal(got, small)
	})
	sameFile(t, filepath.Join(bob, "big.bin"), big)
	if acc, _, _, _ := fp.stats(); acc <= acc0 {
		t.Errorf("no new connection after the cut (%d accepted before, %d after)", acc0, acc)
	}

	// An upload cut after 1 MiB of its payload: close() may fail (EIO) or
	// succeed through a retry, but bob never holds a partial file, and
	// the whole file arrives.
	put := randBytes(6 << 20)
	src := filepath.Join(t.TempDir(), "put.bin")
	writeFile(t, src, put)
	_, cuts0, _, _ := fp.stats()
	fp.cutAfter(upstream, 1<<20)
	out, err = runCmd(t, 30*time.Second, "", "cp", src, bob+"/")
	if err != nil && !strings.Contains(out, "Input/output error") {
		t.Errorf("cp with a cut upload: %v %q, want success or EIO", err, out)
	}
	if _, cuts, _, _ := fp.stats(); cuts != cuts0+1 {
		t.Errorf("the upload was not cut (%d cuts before, %d after)", cuts0, cuts)
	}
	waitFor(t, 20*time.Second, "the cut upload delivered whole", func() bool {
		got, err := os.ReadFile(filepath.Join(b.export, "put.bin"))
		if err != nil {
			return false
		}
		if !bytes.Equal(got, put) {
			t.Fatalf("bob's put.bin holds %d bytes that are not the upload (%d bytes)", len(got), len(put))
		}
		return true
	})
	noTemps(t, b.export)
}

// noTemps fails if dir holds temporary files of uploads (.peerfs-tmp-*).
// An undo record may outlive its PUT DONE by a few milliseconds (the
// change settling, export/put_undo.go): noTemps waits a little while
// only such records are left.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	names := tempFiles(t, dir)
	for deadline := time.Now().Add(5 * time.Second); len(names) > 0 && time.Now().Before(deadline); names = tempFiles(t, dir) {
		if slices.ContainsFunc(names, func(n string) bool { return !strings.HasPrefix(filepath.Base(n), ".peerfs-tmp-undo-") }) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range names {
		t.Errorf("temporary upload file left in %s: %s", dir, name)
	}
}

// tempFiles lists the .peerfs-tmp-* files under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".peerfs-tmp-") {
			names = append(names, path)
		}
		return nil
	})
	return names
}

// TestProxyPeerDial drives the peer client library against a real peer
// daemon through a faultProxy: a stalled link fails a request within the
// client's timeout, an upload cut half way returns an error and leaves the
// old content (and no temporary file), and a download cut half way
// returns an error instead of short data.
func TestProxyPeerDial(t *testing.T) {
	export := t.TempDir()
	old := []byte("old content\n")
	writeFile(t, filepath.Join(export, "f.bin"), old)
	big := randBytes(4 << 20)
	writeFile(t, filepath.Join(export, "big.bin"), big)
	addr := freeAddr(t)
	srv := start(t, "peer", nil, nil, "peer", "--shell", "off", "--name", "solo", "--export", export,
		"--listen", addr, "--log-level", "debug")
	waitListening(t, addr)
	fp := newFaultProxy(t, addr)
	cfg, err := secure.New([]byte(clusterSecret))
	if err != nil {
		t.Fatal(err)
	}
	opts := peer.ClientOptions{DialTimeout: 2 * time.Second, IOTimeout: time.Second, Secure: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func() *peer.Conn {
		t.Helper()
		pc, err := peer.Dial(ctx, fp.addr(), opts)
		if err != nil {
			t.Fatalf("dial through the proxy: %v", err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}

	// Stall: a STAT fails within the client's timeout, not never.
	pc := dial()
	if _, err := pc.Stat(ctx, "f.bin"); err != nil {
		t.Fatal(err)
	}
	fp.stall()
	begin := time.Now()
	_, err = pc.Stat(ctx, "f.bin")
	if err == nil || time.Since(begin) > 3*time.Second {
		t.Errorf("STAT over a stalled link: %v after %v, want an error within ~1s", err, time.Since(begin))
	}
	fp.resume()
	pc.Close()

	// An upload cut after 1 MiB: an error, the old content, no temp file.
	pc = dial()
	fp.cutAfter(upstream, 1<<20)
	_, err = pc.Put(ctx, "f.bin", bytes.NewReader(big), int64(len(big)), nil)
	if err == nil {
		t.Errorf("PUT cut half way succeeded")
	}
	sameFile(t, filepath.Join(export, "f.bin"), old)
	waitFor(t, 10*time.Second, "the peer dropping the cut upload's temp file", func() bool {
		return len(tempFiles(t, export)) == 0
	})

	// A download cut after 1 MiB: an error, never a short success.
	pc = dial()
	fp.cutAfter(downstream, 1<<20)
	var got bytes.Buffer
	n, err := pc.Get(ctx, "big.bin", 0, -1, &got, nil)
	if err == nil {
		t.Errorf("GET cut half way succeeded with %d of %d bytes", n, len(big))
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) && !isNetErr(err) {
		t.Logf("GET cut half way: %v", err)
	}

	// The peer serves a fresh connection normally.
	pc = dial()
	got.Reset()
	if _, err := pc.Get(ctx, "big.bin", 0, -1, &got, nil); err != nil || !bytes.Equal(got.Bytes(), big) {
		t.Errorf("GET after the faults: %v (%d bytes)", err, got.Len())
	}
	if n, _ := srv.requests("PUT"); n < 1 {
		t.Errorf("the peer logged no PUT request")
	}
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
