package remote

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// Every test runs against real components on 127.0.0.1: peer servers,
// a tracker and its clients, and a cache in a temporary directory.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// errnoOf returns the errno a program gets for err, as the FUSE edge
// maps it.
func errnoOf(err error) syscall.Errno { return fusefs.Errno(err) }

// testTimeout bounds every test's context: no test may hang.
const testTimeout = 30 * time.Second

// testCtx returns a context that ends with the test or after testTimeout.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// goroutineIn reports whether some goroutine's stack includes fn (e.g.
// "remote.(*Store).waitTurn"): the only way to know, without changing the
// code under test, that a call has reached the point where it blocks.
func goroutineIn(fn string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Contains(buf[:n], []byte(fn+"("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// ---- peer servers ----

// countingListener counts the bytes written to and read from every
// connection it accepted: what the peer server sent and received.
type countingListener struct {
	net.Listener
	sent, recv *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{nc, l.sent, l.recv}, nil
}

type countingConn struct {
	net.Conn
	sent, recv *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.recv.Add(int64(n))
	return n, err
}

// testPeer is a real peer server on 127.0.0.1 serving export.
type testPeer struct {
	export string
	addr   string
	port   int
	sent   atomic.Int64 // bytes the server has written to its clients
	recv   atomic.Int64 // bytes the server has read from its clients

	stopOnce sync.Once
	srv      *export.Server
	served   chan struct{}
}

// startPeer serves dir on a new loopback port until the test ends.
func startPeer(t *testing.T, dir string) *testPeer {
	t.Helper()
	return startPeerWith(t, export.Options{Export: dir})
}

// startPeerWith is startPeer with the server's options (Export: the
// directory served).
func startPeerWith(t *testing.T, opts export.Options) *testPeer {
	t.Helper()
	dir := opts.Export
	opts.Logger = zerolog.Nop()
	srv, err := export.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	p := &testPeer{export: dir, addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port, srv: srv, served: make(chan struct{})}
	go func() {
		defer close(p.served)
		_ = srv.Serve(countingListener{ln, &p.sent, &p.recv})
	}()
	t.Cleanup(p.stop)
	return p
}

// stop closes the server (idempotent): its port then refuses connections.
func (p *testPeer) stop() {
	p.stopOnce.Do(func() {
		p.srv.Close()
		<-p.served
	})
}

// path returns the local path of name in the export.
func (p *testPeer) path(name string) string { return filepath.Join(p.export, filepath.FromSlash(name)) }

// content returns the export's copy of name, failing the test if missing.
func (p *testPeer) content(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(p.path(name))
	if err != nil {
		t.Fatalf("peer's %s: %v", name, err)
	}
	return string(b)
}

// mode returns the permission bits of the export's copy of name.
func (p *testPeer) mode(t *testing.T, name string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p.path(name))
	if err != nil {
		t.Fatalf("peer's %s: %v", name, err)
	}
	return fi.Mode().Perm()
}

// exists reports whether name exists in the export.
func (p *testPeer) exists(t *testing.T, name string) bool {
	t.Helper()
	_, err := os.Lstat(p.path(name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// writeFile puts a file into the export directly, as its owner would.
func (p *testPeer) writeFile(t *testing.T, name string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p.path(name), data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p.path(name), mode); err != nil { // umask
		t.Fatal(err)
	}
}

// ---- stores ----

// testStore is a Store over a real cache; close is idempotent and also
// runs at the end of the test.
type testStore struct {
	*Store
	cache *cache.Cache
	close func()
}

// newStore opens a cache in dir and a Store named "me" on it, with short
// timeouts so that an unreachable peer fails fast.
func newStore(t *testing.T, dir string) *testStore {
	t.Helper()
	return newStoreWith(t, dir, nil)
}

// newStoreWith is newStore with its Options changed by tune, if not nil.
func newStoreWith(t *testing.T, dir string, tune func(*Options)) *testStore {
	t.Helper()
	return newStoreOn(t, cache.Options{Dir: dir, Logger: zerolog.Nop()}, tune)
}

// newStoreOn is newStoreWith on a cache opened with copts (a boot ID
// file of its own, to see a reboot).
func newStoreOn(t *testing.T, copts cache.Options, tune func(*Options)) *testStore {
	t.Helper()
	c, err := cache.Open(copts)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Self:          "me",
		Cluster:       "test-cluster",
		Cache:         c,
		Client:        peer.ClientOptions{DialTimeout: 2 * time.Second, IOTimeout: 5 * time.Second},
		RetryInterval: 20 * time.Millisecond,
		HoldTimeout:   testTimeout,
		Logger:        zerolog.Nop(),
		// Not watched (watch.go), unless a test asks: the tests of
		// other parts set up a peer changed behind a mount that has not
		// heard of it yet, which an event would race, and move fake
		// clocks past AttrTTL to make it ask again, which a watched
		// listing would not. watch_test.go and e2e run watched.
		WatchTTL: -1,
	}
	if tune != nil {
		tune(&opts)
	}
	s, err := New(opts)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	var once sync.Once
	ts := &testStore{Store: s, cache: c, close: func() {
		once.Do(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Store.Close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("cache.Close: %v", err)
			}
		})
	}}
	t.Cleanup(ts.close)
	return ts
}

// open opens peer:path and fails the test on error.
func (s *testStore) open(t *testing.T, peerName, path string, flags int, mode os.FileMode) uint64 {
	t.Helper()
	fh, _, err := s.Open(testCtx(t), peerName, path, flags, mode)
	if err != nil {
		t.Fatalf("Open(%s, %#o): %v", path, flags, err)
	}
	return fh
}

// write writes data at off and fails the test on error.
func (s *testStore) write(t *testing.T, fh uint64, data string, off int64) {
	t.Helper()
	n, err := s.WriteAt(testCtx(t), fh, []byte(data), off)
	if err != nil || n != len(data) {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
}

// release releases fh and fails the test on error.
func (s *testStore) release(t *testing.T, fh uint64) {
	t.Helper()
	if err := s.Release(fh); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// names lists peer:dir and returns the entry names.
func (s *testStore) names(t *testing.T, peerName, dir string) []string {
	t.Helper()
	list, err := s.List(testCtx(t), peerName, dir)
	if err != nil {
		t.Fatalf("List(%q): %v", dir, err)
	}
	var out []string
	for _, fi := range list {
		out = append(out, fi.Name())
	}
	return out
}

// noLeftovers checks that nothing is left pinned or tracked once every
// handle is released and every change is stored.
func (s *testStore) noLeftovers(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, "no pending uploads", func() bool { f, _ := s.PendingInfo(); return f == 0 })
	// An upload unpins its copy just after it leaves the queue.
	testutil.Eventually(t, "no pinned copies", func() bool { return s.cache.Stats().Pinned == 0 })
	s.mu.Lock()
	states, handles := len(s.files), len(s.handles)
	s.mu.Unlock()
	if states != 0 || handles != 0 {
		t.Errorf("after every handle is released: %d file states, %d handles remain", states, handles)
	}
	if st := s.cache.Stats(); st.Pinned != 0 || st.DirtyFiles != 0 {
		t.Errorf("after every handle is released: cache has %d pinned, %d dirty entries", st.Pinned, st.DirtyFiles)
	}
}

// ---- tracker ----

// cluster is a tracker, a peer "bob" serving an export and registered
// with it, and a Store "me" wired to its tracker client as in
// cmd/peerfs/mount.go.
type cluster struct {
	tracker     *tracker.Tracker
	trackerAddr string
	bob         *testPeer
	bobTC       *tracker.Client
	store       *testStore
	meTC        *tracker.Client

	calls    *verbCounter // the store's requests, by verb
	bobWrote atomic.Bool  // what bob's next SYNC FIN reports

	mu        sync.Mutex
	hold      *roundHold // the next turn of bob's waits for this hold's release
	stopBobTC func()     // stops bob's current tracker client
}

// roundHold keeps bob's turn, and so the SYNC round, open.
type roundHold struct {
	entered chan struct{} // closed when bob's turn has begun
	release chan struct{} // closed to end bob's turn
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterWith(t, nil)
}

// newClusterWith is newCluster with the store's Options changed by tune,
// if not nil.
func newClusterWith(t *testing.T, tune func(*Options)) *cluster {
	t.Helper()
	c := &cluster{}
	tr, trAddr := testutil.StartTracker(t, testTimeout)
	c.tracker = tr
	c.trackerAddr = trAddr
	c.bob = startPeer(t, t.TempDir())
	c.store = newStoreWith(t, t.TempDir(), tune)
	c.calls = &verbCounter{n: map[string]int{}}
	c.store.opts.Observer = c.calls // before any goroutine uses the store

	s := c.store.Store
	c.meTC = tracker.NewClient(tracker.ClientOptions{
		Addr: trAddr, Name: "me", Port: 1, Logger: zerolog.Nop(),
		Handler: s,
	})
	s.SetSyncer(c.meTC)
	testutil.RunTrackerClient(t, c.meTC)

	c.bobTC = c.registerBob(t, c.bob.port)
	testutil.Eventually(t, "the store to learn of bob from the tracker", func() bool {
		addr, ok := s.PeerAddr("bob")
		return ok && addr == c.bob.addr
	})
	return c
}

// registerBob registers bob, serving on port, with the cluster's tracker
// until the test ends or c.dropBob, and returns his tracker client.
func (c *cluster) registerBob(t *testing.T, port int) *tracker.Client {
	t.Helper()
	tc := tracker.NewClient(tracker.ClientOptions{
		Addr: c.trackerAddr, Name: "bob", Port: port, Logger: zerolog.Nop(),
		Handler: bobHandler{c: c},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tc.Run(ctx)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	c.mu.Lock()
	c.stopBobTC = stop
	c.mu.Unlock()
	rctx, rcancel := context.WithTimeout(ctx, testutil.Wait)
	defer rcancel()
	if err := tc.WaitRegistered(rctx); err != nil {
		t.Fatalf("bob's tracker client: register: %v", err)
	}
	return tc
}

// dropBob stops bob's tracker client without a QUIT, as a crash or a
// SIGTERM does: the tracker drops him.
func (c *cluster) dropBob() {
	c.mu.Lock()
	stop := c.stopBobTC
	c.mu.Unlock()
	stop()
}

// bobHandler is bob's tracker handler: his turns (bobTurn), and what his
// SYNC FIN reports (bobWrote).
type bobHandler struct {
	tracker.NopHandler
	c *cluster
}

func (h bobHandler) SyncTurn(ctx context.Context) error { return h.c.bobTurn(ctx) }
func (h bobHandler) TakeWrote() bool                    { return h.c.bobWrote.Swap(false) }

// bobTurn is bob's turn: it returns at once unless a hold is armed.
func (c *cluster) bobTurn(ctx context.Context) error {
	c.mu.Lock()
	h := c.hold
	c.hold = nil
	c.mu.Unlock()
	if h == nil {
		return nil
	}
	close(h.entered)
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return nil
}

// holdRound has bob start a SYNC round and keep its turn, so that the
// store's client is in SYNC READ with the token elsewhere. The returned
// function ends bob's turn and waits until the whole round (the store's
// own turn included) is over.
func (c *cluster) holdRound(t *testing.T) (endRound func()) {
	t.Helper()
	h := &roundHold{entered: make(chan struct{}), release: make(chan struct{})}
	c.mu.Lock()
	c.hold = h
	c.mu.Unlock()
	synced := make(chan error, 1)
	go func() { synced <- c.bobTC.Sync(context.Background()) }()
	var once sync.Once
	releaseTurn := func() {
		t.Helper()
		once.Do(func() {
			close(h.release)
			if err := testutil.Recv(t, "bob's Sync", synced); err != nil {
				t.Errorf("bob's Sync: %v", err)
			}
		})
	}
	t.Cleanup(releaseTurn)

	testutil.Recv(t, "bob's turn", h.entered)
	round, holder, _ := c.tracker.Round()
	if holder != "bob" {
		t.Fatalf("round %d: holder %q, want bob", round, holder)
	}
	testutil.Eventually(t, "SYNC READ at the store's client", func() bool {
		st := c.meTC.State()
		return st.InRound && !st.Holding
	})
	return func() {
		t.Helper()
		releaseTurn()
		testutil.Eventually(t, "the end of the round", func() bool {
			st := c.meTC.State()
			return !st.InRound && st.LastRound >= round
		})
	}
}

// flushAsync runs Flush(fh) on its own goroutine; the test must receive
// from the returned channel.
func (s *testStore) flushAsync(t *testing.T, fh uint64) <-chan error {
	done := make(chan error, 1)
	ctx := testCtx(t)
	go func() { done <- s.Flush(ctx, fh) }()
	return done
}

// waitHeld waits until an upload is held back in waitTurn.
func waitHeld(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, "an upload held back by the round", func() bool { return goroutineIn("remote.(*Store).waitTurn") })
}

// tap sees a chunk of bytes read from one side of a tapProxy connection
// before it is forwarded, and returns what to forward instead and whether
// to close the connection after that. It may block (to hold a request
// back); it runs on the goroutine of that connection and direction.
type tap func(b []byte) (forward []byte, cut bool)

// tapProxy forwards connections on a loopback port to addr; up taps what
// the client sends, down what the peer answers (nil: forwarded as is).
// It is how a test makes the network lose, delay or cut a given request
// or answer between a real client and a real peer.
func tapProxy(t *testing.T, addr string, up, down tap) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go pipeTap(u, c, up)
			go pipeTap(c, u, down)
		}
	}()
	return ln.Addr().String()
}

// pipeTap copies what src sends to dst through fn (nil: as is), until
// either side closes or fn cuts; then it closes both.
func pipeTap(dst, src net.Conn, fn tap) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := src.Read(buf)
		b, cut := buf[:n], false
		if n > 0 && fn != nil {
			b, cut = fn(b)
		}
		if len(b) > 0 {
			if _, werr := dst.Write(b); werr != nil {
				return
			}
		}
		if cut || err != nil {
			return
		}
	}
}

// restartProxy is a tapProxy on the way down that can be restarted at
// the same address with another tap, every connection through it closed
// first: to a client, its peer restarted (upgraded, say).
type restartProxy struct {
	t      *testing.T
	to     string
	addr   string // the proxy's, once started
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	closed bool
}

// newRestartProxy starts a restartProxy to addr with down as its tap.
func newRestartProxy(t *testing.T, addr string, down tap) *restartProxy {
	t.Helper()
	p := &restartProxy{t: t, to: addr, addr: "127.0.0.1:0"}
	p.start(down)
	t.Cleanup(p.stop)
	return p
}

// start listens at p.addr and forwards with down.
func (p *restartProxy) start(down tap) {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr, p.closed = ln, ln.Addr().String(), false
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				c.Close()
				u.Close()
				return
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go pipeTap(u, c, nil)
			go pipeTap(c, u, down)
		}
	}()
}

// stop closes the listener and every connection through it.
func (p *restartProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restart is stop, then start at the same address with down.
func (p *restartProxy) restart(down tap) {
	p.t.Helper()
	p.stop()
	p.start(down)
}

// cutGetProxy forwards connections to addr, except that the answer to
// the GET after the first pass ones (a server write holding "GET OK") is
// forwarded only up to a few bytes of the payload, and the connection is
// then closed: what the client sees when the peer's file shrinks while
// it is sent. left drops below zero once that GET is cut.
func cutGetProxy(t *testing.T, addr string, pass int32) (proxy string, left *atomic.Int32) {
	left = new(atomic.Int32)
	left.Store(pass)
	return tapProxy(t, addr, nil, func(b []byte) ([]byte, bool) {
		i := bytes.Index(b, []byte("GET OK "))
		if i < 0 || left.Add(-1) != -1 {
			return b, false
		}
		end := len(b)
		if nl := bytes.IndexByte(b[i:], '\n'); nl >= 0 {
			end = min(end, i+nl+1+100) // the answer line, 100 payload bytes
		}
		return b[:end], true
	}), left
}

// put writes name on peer bob and closes it (an async PUT).
func (s *testStore) put(t *testing.T, name, data string) {
	t.Helper()
	fh := s.open(t, "bob", name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, data, 0)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
}

// pendingFsync returns what the next FSYNC to peerName covers: whether
// one is due, and the names it will carry (nil: everything).
func (s *testStore) pendingFsync(peerName string) (bool, map[string]bool) {
	p, _ := s.peer(peerName)
	u := &p.unsynced
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.need, maps.Clone(u.names)
}

// fsyncDelayProxy forwards connections to addr, holding every client
// write that contains "FSYNC" back for delay; seen is closed when the
// first such write arrives.
func fsyncDelayProxy(t *testing.T, addr string, delay time.Duration) (proxy string, seen <-chan struct{}) {
	seenc := make(chan struct{})
	var once sync.Once
	return tapProxy(t, addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("FSYNC")) {
			once.Do(func() { close(seenc) })
			time.Sleep(delay)
		}
		return b, false
	}, nil), seenc
}

// verbCounter is an Observer counting the requests sent, by verb.
type verbCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (v *verbCounter) PeerRequest(peer, verb string, d time.Duration, err error) {
	v.mu.Lock()
	v.n[verb]++
	v.mu.Unlock()
}

func (v *verbCounter) PeerBytes(string, int64, int64) {}

// take returns the counts so far and starts again from zero.
func (v *verbCounter) take() map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.n
	v.n = map[string]int{}
	return n
}

// countedStore is a Store talking to one real peer, bob, whose requests
// are counted.
func countedStore(t *testing.T) (*testStore, *testPeer, *verbCounter) {
	t.Helper()
	return countedStoreWith(t, nil)
}

// countedStoreWith is countedStore with the Store's Options changed by
// tune, if not nil.
func countedStoreWith(t *testing.T, tune func(*Options)) (*testStore, *testPeer, *verbCounter) {
	t.Helper()
	bob := startPeer(t, t.TempDir())
	vc := &verbCounter{n: map[string]int{}}
	s := newStoreWith(t, t.TempDir(), func(o *Options) {
		o.Observer = vc
		if tune != nil {
			tune(o)
		}
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	return s, bob, vc
}

// loseTwoAttempts writes f on bob (holding "v1", an hour old) through s
// twice and leaves it open: the first upload ("attempt one") reaches bob,
// who stores it, but its answer is lost; the second ("attempt TWO") never
// reaches him. It returns the open handle.
func loseTwoAttempts(t *testing.T, s *testStore, bob *testPeer) uint64 {
	t.Helper()
	ctx := testCtx(t)
	bob.writeFile(t, "f", []byte("v1"), 0o644)
	future(t, bob.path("f"), -1) // the attempt stored later gets another mtime
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: replyCutProxy(t, bob.addr, "PUT ")}})
	fh := s.open(t, "bob", "f", os.O_RDWR|os.O_TRUNC, 0)
	s.write(t, fh, "attempt one", 0)
	if err := s.Flush(ctx, fh); err == nil {
		t.Fatal("Flush whose answer was cut succeeded")
	}
	testutil.Eventually(t, "bob to store the attempt whose answer was lost", func() bool {
		return bob.content(t, "f") == "attempt one"
	})
	// The peer is unreachable for a while: the next attempt never gets
	// there, and the writer goes on writing meanwhile.
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: testutil.ClosedAddr(t)}})
	s.write(t, fh, "attempt TWO", 0)
	if err := s.Flush(ctx, fh); err == nil {
		t.Fatal("Flush to an unreachable peer succeeded")
	}
	return fh
}

// replyCutProxy forwards connections to addr and closes the client's side
// as soon as the peer answers a line starting with cut: the request was
// carried out, its answer is lost.
func replyCutProxy(t *testing.T, addr, cut string) string {
	return tapProxy(t, addr, nil, func(b []byte) ([]byte, bool) {
		if bytes.HasPrefix(b, []byte(cut)) {
			return nil, true
		}
		if i := bytes.Index(b, []byte("\n"+cut)); i >= 0 {
			return b[:i+1], true
		}
		return b, false
	})
}

// readAll reads fh from offset 0 in 128 KiB requests, as the kernel does.
func (s *testStore) readAll(t *testing.T, fh uint64, size int) []byte {
	t.Helper()
	out := make([]byte, 0, size)
	buf := make([]byte, 128<<10)
	for off := int64(0); ; {
		n, err := s.ReadAt(testCtx(t), fh, buf, off)
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
		if n == 0 {
			return out
		}
		out = append(out, buf[:n]...)
		off += int64(n)
	}
}

// gateProxy forwards to addr, but holds any request holding hold until
// release is closed.
func gateProxy(t *testing.T, addr, hold string, release chan struct{}) string {
	return tapProxy(t, addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte(hold)) {
			<-release
		}
		return b, false
	}, nil)
}

// future sets path's mtime hours ahead: a version no earlier write of the
// test can share, whatever the clock's granularity.
func future(t *testing.T, path string, hours int) {
	t.Helper()
	when := time.Now().Add(time.Duration(hours) * time.Hour)
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

// lostAnswersProxy forwards to bob, with two faults: the first request
// chunk holding a DELETE is held until open is called (held receives when
// it arrives), so that what is queued behind it goes out in one batch;
// and the first answer chunk holding cutVerb is dropped with its
// connection once gone (a name in bob's export) no longer exists: the
// batch carried out, its answers lost. wasCut reports whether that
// happened.
func lostAnswersProxy(t *testing.T, bob *testPeer, cutVerb, gone string) (proxy string, held <-chan struct{}, open func(), wasCut func() bool) {
	t.Helper()
	hold := make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(open)
	arrived := make(chan struct{}, 1)
	var cut, holding atomic.Bool
	proxy = tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte("DELETE")) && holding.CompareAndSwap(false, true) {
			arrived <- struct{}{}
			<-hold
		}
		return b, false
	}, func(b []byte) ([]byte, bool) {
		if bytes.Contains(b, []byte(cutVerb)) && cut.CompareAndSwap(false, true) {
			for end := time.Now().Add(testTimeout); time.Now().Before(end); time.Sleep(time.Millisecond) {
				if _, err := os.Lstat(bob.path(gone)); errors.Is(err, fs.ErrNotExist) {
					break
				}
			}
			return nil, true
		}
		return b, false
	})
	return proxy, arrived, open, cut.Load
}

// holdQueue removes bob's "junk" through s and waits until a
// lostAnswersProxy holds that DELETE (held): what s queues for bob after
// it goes out in one batch once the proxy is opened.
func holdQueue(t *testing.T, s *testStore, held <-chan struct{}) {
	t.Helper()
	if err := s.Remove(testCtx(t), "bob", "junk"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(testTimeout):
		t.Fatal("the DELETE never reached the proxy")
	}
}
