package remote

import (
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

// After "write a; mv a b; write a", the next FSYNC must reach b's data:
// with names it must name b (or sync everything).
func TestFsyncNamesFollowRename(t *testing.T) {
	s, _, _ := countedStore(t)
	s.put(t, "a", "first")
	if err := s.Rename(testCtx(t), "bob", "a", "b"); err != nil {
		t.Fatal(err)
	}
	s.put(t, "a", "second")
	if unsynced, names := s.pendingFsync("bob"); unsynced && names != nil && !names["b"] {
		t.Fatalf("the next FSYNC names %v: b's bytes (uploaded as a) are never fsynced", names)
	}
}

// A rename within one directory names the file under its new name for
// the next FSYNC, and the peer syncs that name's directory with it:
// naming the directory as well had the peer sync its parent too, an
// fsync more per editor save. A rename to another directory names the
// directory left. Written behind or not, the marks are the same.
func TestFsyncNamesAfterRename(t *testing.T) {
	for _, behind := range []bool{true, false} {
		s, bob, _ := countedStore(t)
		s.opts.SyncNamespace = !behind
		ctx := testCtx(t)
		// Files this mount holds nothing of, so that their renames
		// may be written behind.
		for _, d := range []string{"d", "e"} {
			if err := os.Mkdir(bob.path(d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		bob.writeFile(t, "d/a", []byte("x"), 0o644)
		bob.writeFile(t, "d/c", []byte("y"), 0o644)
		s.names(t, "bob", "d")
		s.names(t, "bob", "e")
		moved := func(from, to string, want ...string) {
			t.Helper()
			if err := s.Rename(ctx, "bob", from, to); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "the rename carried out", func() bool { return !s.ns.pending() })
			need, names := s.pendingFsync("bob")
			if !need || !maps.Equal(names, setOf(want...)) {
				t.Errorf("behind %v: after mv %s %s the next FSYNC names %v (due %v), want %v", behind, from, to, names, need, want)
			}
			if err := s.FlushAll(ctx); err != nil {
				t.Fatal(err)
			}
		}
		moved("d/a", "d/b", "d/b")
		moved("d/c", "e/c", "e/c", "d")
	}
}

// setOf returns the set of names.
func setOf(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// A directory rename moves the names of files uploaded under it, waiting
// for FSYNC, to their new paths: once the old path is reused (mv logs
// logs.old; mkdir logs; write logs/app.log), naming the old path would
// sync the new file and never the renamed file's data.
func TestFsyncNamesFollowDirRename(t *testing.T) {
	s, _, _ := countedStore(t)
	ctx := testCtx(t)
	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	s.put(t, "d/f", "first")
	if err := s.Rename(ctx, "bob", "d", "e"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mkdir(ctx, "bob", "d", 0o755); err != nil {
		t.Fatal(err)
	}
	s.put(t, "d/f", "second")
	if unsynced, names := s.pendingFsync("bob"); unsynced && names != nil && !names["e/f"] {
		t.Fatalf("the next FSYNC names %v: every name opens (d/f is the new file), so no syncfs; e/f's bytes (uploaded async as d/f) are never fsynced", names)
	}
}

// An upload that only applies a mode or mtime (the data went up earlier
// and was already FSYNCed) still makes the next fsync send FSYNC.
func TestFsyncAfterSetattrOnlyUpload(t *testing.T) {
	s, _, vc := countedStore(t)
	ctx := testCtx(t)
	fh := s.open(t, "bob", "f", os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	defer s.release(t, fh)
	s.write(t, fh, "data", 0)
	if err := s.Fsync(ctx, fh); err != nil { // PUT + FSYNC f
		t.Fatal(err)
	}
	if _, err := s.Chmod(ctx, "bob", "f", 0o600); err != nil { // fchmod on the open file: local
		t.Fatal(err)
	}
	vc.take()
	if err := s.Fsync(ctx, fh); err != nil { // SETATTR only
		t.Fatal(err)
	}
	got := vc.take()
	t.Logf("requests of the second fsync: %v", got)
	if got["SETATTR"] == 1 && got["FSYNC"] == 0 {
		t.Fatalf("fsync applied the chmod with SETATTR but sent no FSYNC: the mode change is not durable")
	}
}

// A second fsync running while an FSYNC covering its file is in flight
// (no tracker: Sync is FlushAll, per caller) waits for that FSYNC's answer
// instead of returning success at once.
func TestConcurrentFsyncWaitsForFsyncOK(t *testing.T) {
	const delay = 700 * time.Millisecond
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	proxy, fsyncSeen := fsyncDelayProxy(t, bob.addr, delay)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	fh := s.open(t, "bob", "g", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "g's data", 0)
	if err := s.Flush(ctx, fh); err != nil { // close(): async PUT, g unsynced
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // thread A: fsync of some other file
		defer wg.Done()
		if err := s.Sync(ctx); err != nil {
			t.Error(err)
		}
	}()
	testutil.Recv(t, "A's FSYNC on its way", fsyncSeen)
	seen := time.Now()                       // the proxy holds that FSYNC for delay from about now
	if err := s.Fsync(ctx, fh); err != nil { // thread B: fsync(g)
		t.Fatal(err)
	}
	waited := time.Since(seen)
	s.release(t, fh)
	wg.Wait()
	// B and A are woken by the same answer, in either order; what B must
	// not do is return before that answer exists: before the proxy let
	// the FSYNC through. Half the delay leaves room for a loaded machine.
	t.Logf("B's fsync(g) waited %v for an FSYNC held %v", waited, delay)
	if waited < delay/2 {
		t.Fatalf("fsync(g) returned %v after A's FSYNC was sent, before any FSYNC naming g could be answered (held %v)", waited, delay)
	}
}

// After a SYNC round in which only this client wrote, its caches are
// kept (its own uploads are in them); after one in which another peer
// wrote, they are dropped and the other's change is read at once.
func TestRoundKeepsCachesUnlessOthersWrote(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	c.bob.writeFile(t, "other", []byte("v1"), 0o644)
	if fi, err := s.Stat(ctx, "bob", "other"); err != nil || fi.Size() != 2 {
		t.Fatalf("Stat other = %v, %v", fi, err)
	}
	fh := s.open(t, "bob", "mine", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "data", 0)
	if err := s.Fsync(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	lastRound := func() uint64 { return c.meTC.State().LastRound }
	testutil.Eventually(t, "the round to end", func() bool { return lastRound() >= 1 })
	c.calls.take()
	for _, name := range []string{"mine", "other"} {
		if _, err := s.Stat(ctx, "bob", name); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.calls.take(); len(got) != 0 {
		t.Errorf("lookups after a round only this client wrote in cost %v; want none", got)
	}

	// Now bob reports a write of its own (its owner changed "other").
	c.bob.writeFile(t, "other", []byte("version 2"), 0o644)
	c.bobWrote.Store(true)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the second round to end", func() bool { return lastRound() >= 2 })
	fi, err := s.Stat(ctx, "bob", "other")
	if err != nil || fi.Size() != int64(len("version 2")) {
		t.Errorf("Stat other after a round bob wrote in = %v, %v; want the new size at once", fi, err)
	}
}

// Fsync runs a SYNC round through the tracker; the store's turn stores
// every local change, of every open file.
func TestFsyncRunsRound(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	fh1 := s.open(t, "bob", "a", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh1, "aaa", 0)
	fh2 := s.open(t, "bob", "b", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh2, "bbb", 0)

	last := c.meTC.State().LastRound
	if err := s.Fsync(ctx, fh1); err != nil {
		t.Fatalf("Fsync: %v", err)
	}
	if got := c.bob.content(t, "a") + c.bob.content(t, "b"); got != "aaabbb" {
		t.Errorf("after Fsync the peer has %q", got)
	}
	testutil.Eventually(t, "the round to end", func() bool { return c.meTC.State().LastRound > last })
	for _, fh := range []uint64{fh1, fh2} {
		if err := s.Flush(ctx, fh); err != nil {
			t.Error(err)
		}
		s.release(t, fh)
	}
	s.noLeftovers(t)
}

// Without a tracker, Sync uploads directly.
func TestSyncWithoutTracker(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	fh := s.open(t, "bob", "a", os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	s.write(t, fh, "aaa", 0)
	if err := s.Fsync(testCtx(t), fh); err != nil {
		t.Fatalf("Fsync: %v", err)
	}
	if got := bob.content(t, "a"); got != "aaa" {
		t.Errorf("after Fsync the peer has %q", got)
	}
	s.release(t, fh)
	s.noLeftovers(t)
}

// wireLog keeps what passes one way through a tapProxy.
type wireLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer // since the last take
	last string       // the last line
}

// tap records b and forwards it unchanged.
func (w *wireLog) tap(b []byte) ([]byte, bool) {
	w.mu.Lock()
	w.buf.Write(b)
	if lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); lines[len(lines)-1] != "PING" {
		w.last = lines[len(lines)-1]
	}
	w.mu.Unlock()
	return b, false
}

// lastLine returns the last line that passed, PING left out.
func (w *wireLog) lastLine() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// take returns what passed since the last call.
func (w *wireLog) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.buf.String()
	w.buf.Reset()
	return s
}

// wireVerbs counts the requests in what a client sent a peer, by verb.
// The file data of the test has no capital letters, so a request line
// after an inline payload is found too.
func wireVerbs(s string) map[string]int {
	n := map[string]int{}
	for _, v := range []string{"PUT", "FSYNC", "RENAME", "STAT", "LIST", "GET", "SETATTR", "DELETE"} {
		if c := strings.Count(s, v+" ") + strings.Count(s, v+"\n"); c > 0 {
			n[v] = c
		}
	}
	return n
}

// trackerLines counts the lines a client sent its tracker, by line
// (PING, which comes on a timer, left out).
func trackerLines(s string) map[string]int {
	n := map[string]int{}
	for l := range strings.SplitSeq(s, "\n") {
		if l != "" && l != "PING" {
			n[l]++
		}
	}
	return n
}

// editorRig is a tracker, a peer bob and a Store "me" wired to the
// tracker as a mount is, with every request to bob and every line to
// the tracker counted: bob is registered at a proxy's port, and me's
// tracker client connects through another.
type editorRig struct {
	store   *testStore
	bob     *testPeer
	calls   *verbCounter // the store's requests to bob, by verb (round trips)
	toPeer  *wireLog     // what the store sent bob
	toTrack *wireLog     // what me's tracker client sent the tracker
}

func newEditorRig(t *testing.T) *editorRig {
	t.Helper()
	r := &editorRig{calls: &verbCounter{n: map[string]int{}}, toPeer: &wireLog{}, toTrack: &wireLog{}}
	_, trAddr := testutil.StartTracker(t, testTimeout)
	r.bob = startPeer(t, t.TempDir())
	proxy := tapProxy(t, r.bob.addr, r.toPeer.tap, nil)
	r.store = newStoreWith(t, t.TempDir(), func(o *Options) {
		o.Observer = r.calls
		o.AttrTTL = time.Hour // no STAT from an entry growing old mid-test
	})
	s := r.store.Store
	meTC := tracker.NewClient(tracker.ClientOptions{
		Addr: tapProxy(t, trAddr, r.toTrack.tap, nil), Name: "me", Port: 1, Logger: zerolog.Nop(),
		Handler: s,
	})
	s.SetSyncer(meTC)
	testutil.RunTrackerClient(t, meTC)
	c := &cluster{trackerAddr: trAddr, bob: r.bob}
	_, port, _ := strings.Cut(proxy, ":")
	c.bobTC = c.registerBob(t, atoi(t, port))
	testutil.Eventually(t, "the store to learn of bob from the tracker", func() bool {
		addr, ok := s.PeerAddr("bob")
		return ok && addr == proxy
	})
	return r
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a port: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// save is what an editor's save does through the mount (bench/fsbench.sh's
// rename_editor): the kernel's lookup of the temporary file, its
// creation, a write, fsync, close, and the rename over the document.
func (r *editorRig) save(t *testing.T, data string) {
	t.Helper()
	ctx := testCtx(t)
	s := r.store
	const doc, tmp = "edit/doc.txt", "edit/.doc.txt.swp"
	if _, err := s.Stat(ctx, "bob", tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lookup of %s: %v, want it absent", tmp, err)
	}
	fh := s.open(t, "bob", tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, data, 0)
	if err := s.Fsync(ctx, fh); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	// Durable: what the fsync stored, and the last save's rename.
	if need, names := s.pendingFsync("bob"); need {
		t.Fatalf("after fsync returned, an FSYNC is still due for %v", names)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatalf("close: %v", err)
	}
	s.release(t, fh)
	// The turn that wrote left this mount holding writes for the next
	// round: the rename has nothing to tell the tracker, and nothing to
	// wait for.
	testutil.Eventually(t, "WRITES held after the turn", func() bool { return r.toTrack.lastLine() == "WRITES held" })
	if err := s.Rename(ctx, "bob", tmp, doc); err != nil {
		t.Fatalf("rename: %v", err)
	}
}

// TestEditorSaveRoundTrips counts what one editor save (write a temporary
// file, fsync, close, rename it over the document) costs on the wire,
// with a real tracker and a real peer: the requests to the peer that are
// waited for, one by one (round trips), the request lines that reach it,
// and the lines sent to the tracker.
func TestEditorSaveRoundTrips(t *testing.T) {
	r := newEditorRig(t)
	if err := os.Mkdir(r.bob.path("edit"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := strings.Repeat("x", 4096)
	r.save(t, data) // the first lists the directory, and so on
	r.save(t, data)
	// The rename is written behind (behind.go): counted once it is out.
	written := func() {
		testutil.Eventually(t, "the renames written behind sent", func() bool { return !r.store.ns.pending() })
	}
	written()
	r.calls.take()
	r.toPeer.take()
	r.toTrack.take()
	const saves = 5
	for range saves {
		r.save(t, data)
	}
	written()
	if got := r.bob.content(t, "edit/doc.txt"); got != data {
		t.Fatalf("bob's document: %d bytes, want %d", len(got), len(data))
	}
	wire := r.toPeer.take()
	trips, lines, track := r.calls.take(), wireVerbs(wire), trackerLines(r.toTrack.take())
	t.Logf("per %d saves: round trips to the peer %v; request lines %v; lines to the tracker %v", saves, trips, lines, track)
	// The FSYNC goes behind the PUT, in its round trip; the RENAME is the
	// other one, which no program waits for (written behind).
	if want := map[string]int{"PUT": saves, "RENAME": saves}; !maps.Equal(trips, want) {
		t.Errorf("round trips to the peer: %v, want %v", trips, want)
	}
	// (STATs may ride behind a request, in its round trip: counted
	// there if they take one of their own.)
	delete(lines, "STAT")
	if want := map[string]int{"PUT": saves, "FSYNC": saves, "RENAME": saves}; !maps.Equal(lines, want) {
		t.Errorf("requests to the peer: %v, want %v", lines, want)
	}
	// Each FSYNC names the save's temporary file alone: the peer's fsync
	// of its directory makes the last save's rename durable too, and the
	// document's content was durable before it (one fsync less per save).
	for l := range strings.SplitSeq(wire, "\n") {
		// (A PUT's payload has no newline: the FSYNC behind it follows
		// it on one "line".)
		if i := strings.Index(l, "FSYNC"); i >= 0 && l[i:] != "FSYNC edit/.doc.txt.swp" {
			t.Errorf("request %q, want FSYNC edit/.doc.txt.swp", l[i:])
		}
	}
	// One SYNC round trip per fsync (its SYNC FIN is not waited for),
	// and the WRITES held sent behind the SYNC FIN.
	if want := map[string]int{"SYNC": saves, "SYNC FIN wrote": saves, "WRITES held": saves}; !maps.Equal(track, want) {
		t.Errorf("lines to the tracker: %v, want %v", track, want)
	}
}

// An FSYNC sent behind an fsync's PUT that the peer refuses leaves what
// it was to make durable (a file closed before, and the PUT's own) to the
// FSYNC of the turn: fsync returns only once the peer said FSYNC OK for
// all of it.
func TestFsyncBehindPutRefused(t *testing.T) {
	s, bob, vc := countedStore(t)
	var refused atomic.Bool
	proxy := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		const ok = "FSYNC OK\n"
		if i := bytes.Index(b, []byte(ok)); i >= 0 && refused.CompareAndSwap(false, true) {
			b = append(append(bytes.Clone(b[:i]), "FSYNC FAIL io injected\n"...), b[i+len(ok):]...)
		}
		return b, false
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	s.put(t, "a", "closed, not synced")
	vc.take()
	fh := s.open(t, "bob", "b", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "synced", 0)
	if err := s.Fsync(testCtx(t), fh); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	s.release(t, fh)
	if !refused.Load() {
		t.Fatal("no FSYNC went behind the PUT")
	}
	if need, names := s.pendingFsync("bob"); need {
		t.Fatalf("fsync returned with an FSYNC still due for %v", names)
	}
	if got := vc.take(); got["PUT"] != 1 || got["FSYNC"] != 1 {
		t.Fatalf("requests: %v, want the PUT (its FSYNC refused) and one FSYNC after it", got)
	}
}
