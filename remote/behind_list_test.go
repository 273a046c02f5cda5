package remote

import (
	"bytes"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

// TestListFromBeforeRemovalNotShown: a LIST the peer answered before
// this mount removed a name in that directory, whose answer arrives only
// after the removal was done (and after a later change to the peer,
// which would also settle a removal written behind), does not bring the
// removed name back: neither to the program that listed nor to the
// listing cache. The LIST is asked again (attrCache.supersedeLocked).
// (With a request to the peer outstanding the removal goes
// synchronously here.)
func TestListFromBeforeRemovalNotShown(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		bob.writeFile(t, "d/"+n, []byte(n), 0o644)
	}
	// Answers to LIST are held back, once armed, until released.
	var (
		mu       sync.Mutex
		armed    bool
		held     = make(chan struct{})
		release  = make(chan struct{})
		heldOnce sync.Once
	)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	proxy := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		mu.Lock()
		hold := armed && bytes.Contains(b, []byte("LIST OK"))
		if hold {
			armed = false
		}
		mu.Unlock()
		if hold {
			heldOnce.Do(func() { close(held) })
			<-release
		}
		return b, false
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	if got := s.names(t, "bob", "d"); len(got) != 2 {
		t.Fatalf("d lists %q, want a and b", got)
	}
	p, err := s.peer("bob")
	if err != nil {
		t.Fatal(err)
	}
	p.attrs.forget("d/x") // the listing of d expires

	mu.Lock()
	armed = true
	mu.Unlock()
	listed := make(chan []string, 1)
	go func() {
		list, err := s.List(ctx, "bob", "d")
		if err != nil {
			t.Errorf("List: %v", err)
		}
		var out []string
		for _, fi := range list {
			out = append(out, fi.Name())
		}
		listed <- out
	}()
	<-held // bob listed d with a in it; the answer waits

	if err := s.Remove(ctx, "bob", "d/a"); err != nil {
		t.Fatal(err)
	}
	if err := s.FlushAll(ctx); err != nil { // the DELETE is carried out, if written behind
		t.Fatal(err)
	}
	if bob.exists(t, "d/a") {
		t.Fatal("d/a still on bob after FlushAll")
	}
	if _, err := s.Mkdir(ctx, "bob", "e", 0o755); err != nil { // settles a removal written behind
		t.Fatal(err)
	}
	close(release)
	if got := <-listed; slices.Contains(got, "a") {
		t.Errorf("a listing answered before d/a was removed here shows it: %q", got)
	}
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("d lists %q after the removal; want [b]", got)
	}
}

// TestListFromBeforeBehindRemovalSettled is the same with the removal
// written behind: the peer lists the directory before the DELETE reaches
// it, the answer arrives after the DELETE was carried out and a later
// change to the peer settled it (its name no longer hidden): the name
// must not come back.
func TestListFromBeforeBehindRemovalSettled(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	if err := os.Mkdir(bob.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		bob.writeFile(t, "d/"+n, []byte(n), 0o644)
	}
	var (
		mu                 sync.Mutex
		holdDel, holdList  bool
		delHeld, listHeld  = make(chan struct{}), make(chan struct{})
		delOnce, listOnce  sync.Once
		releaseDel, relLst = make(chan struct{}), make(chan struct{})
	)
	t.Cleanup(func() {
		for _, c := range []chan struct{}{releaseDel, relLst} {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	})
	hold := func(b []byte, word string, armed *bool, once *sync.Once, held, release chan struct{}) {
		mu.Lock()
		h := *armed && bytes.Contains(b, []byte(word))
		if h {
			*armed = false
		}
		mu.Unlock()
		if h {
			once.Do(func() { close(held) })
			<-release
		}
	}
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		hold(b, "DELETE", &holdDel, &delOnce, delHeld, releaseDel)
		return b, false
	}, func(b []byte) ([]byte, bool) {
		hold(b, "LIST OK", &holdList, &listOnce, listHeld, relLst)
		return b, false
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	if got := s.names(t, "bob", "d"); len(got) != 2 {
		t.Fatalf("d lists %q, want a and b", got)
	}
	mu.Lock()
	holdDel, holdList = true, true
	mu.Unlock()
	if err := s.Remove(ctx, "bob", "d/a"); err != nil {
		t.Fatal(err)
	}
	if !s.ns.pending() {
		t.Fatal("the removal was not written behind")
	}
	<-delHeld // the DELETE waits in the proxy: bob still has d/a
	p, err := s.peer("bob")
	if err != nil {
		t.Fatal(err)
	}
	p.attrs.forget("d/x") // the listing of d expires
	listed := make(chan []string, 1)
	go func() {
		list, err := s.List(ctx, "bob", "d")
		if err != nil {
			t.Errorf("List: %v", err)
		}
		var out []string
		for _, fi := range list {
			out = append(out, fi.Name())
		}
		listed <- out
	}()
	<-listHeld // bob listed d with a in it; the answer waits
	close(releaseDel)
	if err := s.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	if bob.exists(t, "d/a") {
		t.Fatal("d/a still on bob after FlushAll")
	}
	if _, err := s.Mkdir(ctx, "bob", "e", 0o755); err != nil { // settles the removal
		t.Fatal(err)
	}
	close(relLst)
	if got := <-listed; slices.Contains(got, "a") {
		t.Errorf("a listing answered before the DELETE shows d/a: %q", got)
	}
	if got := s.names(t, "bob", "d"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("d lists %q after the removal; want [b]", got)
	}
}
