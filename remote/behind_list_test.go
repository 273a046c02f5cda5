package remote

import (
	"bytes"
	"context"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// holdOnce is a proxy tap that, once armed, holds back the first write
// containing word until released: held is closed when it does.
type holdOnce struct {
	word    []byte
	mu      sync.Mutex
	armed   bool
	once    sync.Once
	held    chan struct{}
	release chan struct{}
	freed   sync.Once
}

// newHoldOnce returns a disarmed holdOnce for word, released when the
// test ends if it was not before.
func newHoldOnce(t *testing.T, word string) *holdOnce {
	h := &holdOnce{word: []byte(word), held: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(h.free)
	return h
}

func (h *holdOnce) arm() {
	h.mu.Lock()
	h.armed = true
	h.mu.Unlock()
}

func (h *holdOnce) free() { h.freed.Do(func() { close(h.release) }) }

func (h *holdOnce) tap(b []byte) ([]byte, bool) {
	h.mu.Lock()
	hold := h.armed && bytes.Contains(b, h.word)
	if hold {
		h.armed = false
	}
	h.mu.Unlock()
	if hold {
		h.once.Do(func() { close(h.held) })
		<-h.release
	}
	return b, false
}

// listed is the outcome of listLater.
type listed struct {
	names []string
	err   error
}

// listLater lists dir on peer in a goroutine, whose outcome the channel
// gives.
func listLater(ctx context.Context, s *testStore, peerName, dir string) <-chan listed {
	out := make(chan listed, 1)
	go func() {
		list, err := s.List(ctx, peerName, dir)
		var names []string
		for _, fi := range list {
			names = append(names, fi.Name())
		}
		out <- listed{names, err}
	}()
	return out
}

// listRig is a store whose link to bob goes through a proxy with the
// given taps, bob's export holding d/a and d/b, listed once.
func listRig(t *testing.T, up, down tap) (*testStore, *testPeer) {
	t.Helper()
	s, bob, _ := countedStore(t)
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		bob.writeFile(t, "d/"+n, []byte(n), 0o644)
	}
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: tapProxy(t, bob.addr, up, down)}})
	if got := s.names(t, "bob", "d"); len(got) != 2 {
		t.Fatalf("d lists %q, want a and b", got)
	}
	return s, bob
}

// expireListing makes the cached listing of dir on bob stale.
func expireListing(t *testing.T, s *testStore, dir string) {
	t.Helper()
	p, err := s.peer("bob")
	if err != nil {
		t.Fatal(err)
	}
	p.attrs.forget(dir + "/x")
}

// removedAndSettled finishes both tests: d/a is gone from bob, a later
// change settles the removal, the held LIST answer is let through, and
// neither it nor the next listing may show a.
func removedAndSettled(t *testing.T, s *testStore, bob *testPeer, answer *holdOnce, got <-chan listed) {
	t.Helper()
	ctx := testCtx(t)
	if err := s.FlushAll(ctx); err != nil { // the DELETE is carried out, if written behind
		t.Fatal(err)
	}
	if bob.exists(t, "d/a") {
		t.Fatal("d/a still on bob after FlushAll")
	}
	if _, err := s.Mkdir(ctx, "bob", "e", 0o755); err != nil { // settles a removal written behind
		t.Fatal(err)
	}
	answer.free()
	r := testutil.Recv(t, "the held listing", got)
	if r.err != nil {
		t.Fatalf("List: %v", r.err)
	}
	if slices.Contains(r.names, "a") {
		t.Errorf("a listing answered before d/a was removed shows it: %q", r.names)
	}
	if names := s.names(t, "bob", "d"); !slices.Equal(names, []string{"b"}) {
		t.Errorf("d lists %q after the removal; want [b]", names)
	}
}

// TestListFromBeforeRemovalNotShown: a LIST the peer answered before
// this mount removed a name in that directory, whose answer arrives only
// after the removal was done (and after a later change to the peer,
// which would also settle a removal written behind), does not bring the
// removed name back: neither to the program that listed nor to the
// listing cache. The LIST is asked again (attrCache.supersedeLocked).
// (With a request to the peer outstanding the removal goes
// synchronously here.)
func TestListFromBeforeRemovalNotShown(t *testing.T) {
	answer := newHoldOnce(t, "LIST OK")
	s, bob := listRig(t, nil, answer.tap)
	expireListing(t, s, "d")
	answer.arm()
	got := listLater(testCtx(t), s, "bob", "d")
	testutil.Recv(t, "bob's answer to LIST", answer.held) // bob listed d with a in it; the answer waits
	if err := s.Remove(testCtx(t), "bob", "d/a"); err != nil {
		t.Fatal(err)
	}
	removedAndSettled(t, s, bob, answer, got)
}

// TestListFromBeforeBehindRemovalSettled is the same with the removal
// written behind: the peer lists the directory before the DELETE reaches
// it, the answer arrives after the DELETE was carried out and a later
// change to the peer settled it (its name no longer hidden): the name
// must not come back.
func TestListFromBeforeBehindRemovalSettled(t *testing.T) {
	del, answer := newHoldOnce(t, "DELETE"), newHoldOnce(t, "LIST OK")
	s, bob := listRig(t, del.tap, answer.tap)
	del.arm()
	answer.arm()
	if err := s.Remove(testCtx(t), "bob", "d/a"); err != nil {
		t.Fatal(err)
	}
	if !s.ns.pending() {
		t.Fatal("the removal was not written behind")
	}
	testutil.Recv(t, "the DELETE", del.held) // it waits in the proxy: bob still has d/a
	expireListing(t, s, "d")
	got := listLater(testCtx(t), s, "bob", "d")
	testutil.Recv(t, "bob's answer to LIST", answer.held) // bob listed d with a in it; the answer waits
	del.free()
	removedAndSettled(t, s, bob, answer, got)
}
