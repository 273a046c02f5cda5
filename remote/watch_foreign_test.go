package remote

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testutil"
)

// foreignLog collects what a Store tells its EntryWatcher.
type foreignLog struct {
	mu  sync.Mutex
	chs []fusefs.EntryChange
}

func (l *foreignLog) add(ch fusefs.EntryChange) {
	l.mu.Lock()
	l.chs = append(l.chs, ch)
	l.mu.Unlock()
}

// take returns and forgets what was told so far.
func (l *foreignLog) take() []fusefs.EntryChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	chs := l.chs
	l.chs = nil
	return chs
}

// foreignStore is watchedStore with its foreign changes logged, d (and
// the root) listed while watched. Its barrier returns what was told of
// the changes made before it: the peer reports what it read in one
// batch in no particular order, and batches in order, so it makes a
// directory in bob's root and waits for its report (the rest of its
// batch is sent with it), then another (in a later batch).
func foreignStore(t *testing.T, bob *testPeer) (*testStore, func() []fusefs.EntryChange) {
	t.Helper()
	s, _, barrier := foreignStoreVia(t, bob, "")
	return s, barrier
}

// foreignStoreVia is foreignStore reaching bob through addr (a proxy;
// "": directly), with watchedStore's request counter. The proxy must let
// the event connection's lines through.
func foreignStoreVia(t *testing.T, bob *testPeer, addr string) (*testStore, *verbCounter, func() []fusefs.EntryChange) {
	t.Helper()
	s, vc := watchedStore(t, bob, addr)
	log := &foreignLog{}
	s.WatchEntries(log.add)
	listWatched(t, s, "")
	listWatched(t, s, "d")
	n := 0
	var got []fusefs.EntryChange
	marker := func() {
		t.Helper()
		n++
		name := fmt.Sprintf("marker%d", n)
		if err := os.Mkdir(bob.path(name), 0o755); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, name+" reported", func() bool {
			got = append(got, log.take()...)
			_, ok := changeOf(got, name)
			return ok
		})
	}
	barrier := func() []fusefs.EntryChange {
		t.Helper()
		marker()
		marker()
		var before []fusefs.EntryChange
		for _, ch := range got {
			if !strings.HasPrefix(ch.Path, "marker") {
				before = append(before, ch)
			}
		}
		got = nil
		return before
	}
	barrier() // what bobFile wrote before the watch
	return s, vc, barrier
}

// changeOf returns the last change told of path.
func changeOf(chs []fusefs.EntryChange, path string) (fusefs.EntryChange, bool) {
	for i := len(chs) - 1; i >= 0; i-- {
		if chs[i].Path == path {
			return chs[i], true
		}
	}
	return fusefs.EntryChange{}, false
}

// Another writer's changes in a watched directory are told to the
// EntryWatcher as they are reported, each as what it is: content, a
// name made or removed, a file replaced by a directory. A STAT's answer
// does not hide the next one (the review of the first version found it
// hid them for 2 s).
func TestWatchForeignChanges(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	for _, name := range []string{"d/a", "d/b", "d/c"} {
		bobFile(t, bob, name, []byte("one"))
	}
	s, barrier := foreignStore(t, bob)

	if err := os.WriteFile(bob.path("d/a"), []byte("one and more"), 0o644); err != nil {
		t.Fatal(err)
	}
	bobFile(t, bob, "d/new", []byte("fresh"))
	if err := os.Remove(bob.path("d/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(bob.path("d/c")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(bob.path("d/c"), 0o755); err != nil {
		t.Fatal(err)
	}
	chs := barrier()
	for _, want := range []struct {
		path           string
		gone, replaced bool
		typ            fs.FileMode
	}{
		{"d/a", false, false, 0},
		{"d/new", false, true, 0},
		{"d/b", true, true, 0},
		{"d/c", false, true, fs.ModeDir},
	} {
		ch, ok := changeOf(chs, want.path)
		if !ok {
			t.Errorf("%s: not told (told %+v)", want.path, chs)
			continue
		}
		if ch.Peer != "bob" || ch.Gone != want.gone || ch.Type != want.typ || (want.replaced && !ch.Replaced) {
			t.Errorf("%s: told %+v, want gone %v, replaced %v, type %v", want.path, ch, want.gone, want.replaced, want.typ)
		}
	}

	// A STAT answered, then a change: told.
	if fi := stat(t, s, "d/a"); fi == nil || fi.Size() != 12 {
		t.Fatalf("d/a: %v", fi)
	}
	if err := os.WriteFile(bob.path("d/a"), []byte("one, and more again"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := changeOf(barrier(), "d/a"); !ok {
		t.Error("a change of d/a right after a STAT of it was not told")
	}
}

// What this mount changes itself is never told as another writer's
// change, whether its report comes before the answer or after: an
// upload, a rename, a chmod, a directory made, a symbolic link, a hard
// link, removals; all written behind or not.
func TestWatchOwnChangesNotForeign(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	s, barrier := foreignStore(t, bob)
	ctx := testCtx(t)
	for round := range 3 {
		name := fmt.Sprintf("d/mine%d", round)
		fh := s.open(t, "bob", name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		s.write(t, fh, "written here", 0)
		if err := s.Flush(ctx, fh); err != nil {
			t.Fatal(err)
		}
		s.release(t, fh)
		steps := []func() error{
			func() error { return s.Rename(ctx, "bob", name, name+".moved") },
			func() error { _, err := s.Chmod(ctx, "bob", name+".moved", 0o600); return err },
			func() error { _, err := s.Mkdir(ctx, "bob", name+".dir", 0o755); return err },
			func() error { _, err := s.Symlink(ctx, "bob", name+".link", "a"); return err },
			func() error { _, err := s.Link(ctx, "bob", name+".moved", name+".hard"); return err },
			func() error { return s.Remove(ctx, "bob", name+".hard") },
			func() error { return s.Remove(ctx, "bob", name+".moved") },
			func() error { return s.Rmdir(ctx, "bob", name+".dir") },
			func() error { return s.Sync(ctx) }, // what went behind goes now
		}
		for i, step := range steps {
			if err := step(); err != nil {
				t.Fatalf("round %d, step %d: %v", round, i, err)
			}
		}
		if chs := barrier(); len(chs) != 0 {
			t.Errorf("round %d: this mount's own changes told as another writer's: %+v", round, chs)
		}
	}
}

// The same with every answer held back 100 ms on its way (the event
// connection's lines are not): each change's report comes before its
// answer, and is still taken for this mount's own (marked before the
// request goes, not when its answer comes).
func TestWatchOwnChangesReportedFirst(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bobFile(t, bob, "d/a", []byte("one"))
	events := [][]byte{[]byte("CHANGED"), []byte("GONE"), []byte("TICK"), []byte("WATCH"), []byte("PONG")}
	slow := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		for _, e := range events {
			if bytes.Contains(b, e) {
				return b, false
			}
		}
		time.Sleep(100 * time.Millisecond)
		return b, false
	})
	if chs := ownWorkTold(t, bob, slow); len(chs) != 0 {
		t.Errorf("this mount's own changes, reported before their answers, told as another writer's: %+v", chs)
	}
}

// ownWorkTold does this mount's ordinary work on bob's watched d,
// through addr (a proxy that may hold requests or answers back): a file
// written, a directory made, the file chmod'ed, moved into it and
// removed, all made durable; and returns what was told as another
// writer's change of it (up to a barrier: foreignStore).
func ownWorkTold(t *testing.T, bob *testPeer, addr string) []fusefs.EntryChange {
	t.Helper()
	s, _, barrier := foreignStoreVia(t, bob, addr)
	ctx := testCtx(t)
	fh := s.open(t, "bob", "d/mine", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	s.write(t, fh, "written here", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	for i, step := range []func() error{
		func() error { _, err := s.Mkdir(ctx, "bob", "d/sub", 0o755); return err },
		func() error { _, err := s.Chmod(ctx, "bob", "d/mine", 0o600); return err },
		func() error { return s.Rename(ctx, "bob", "d/mine", "d/sub/mine") },
		func() error { return s.Remove(ctx, "bob", "d/sub/mine") },
		func() error { return s.Sync(ctx) },
	} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return barrier()
}

// The marks of this mount's own changes stay bounded, the oldest let go
// first, and go once ownQuiet old.
func TestOwnMarksBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAttrCache(time.Second, func() time.Time { return now })
	for i := range maxOwnMarks + 100 {
		a.ownChange(fmt.Sprintf("d%d/f", i%1000), fmt.Sprintf("f%d", i))
	}
	a.mu.Lock()
	if len(a.ownQ) > maxOwnMarks || len(a.ownAt)+len(a.ownIn) > maxOwnMarks {
		t.Errorf("%d marks queued, %d paths marked; bound %d", len(a.ownQ), len(a.ownAt)+len(a.ownIn), maxOwnMarks)
	}
	last := fmt.Sprintf("f%d", maxOwnMarks+99)
	if !a.ownRecentLocked(last, now) || a.ownRecentLocked("f0", now) {
		t.Error("the newest mark was let go, or the oldest kept")
	}
	a.mu.Unlock()
	now = now.Add(ownQuiet)
	a.ownChange("g")
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ownQ) != 2 || len(a.ownAt)+len(a.ownIn) != 2 || a.ownRecentLocked(last, now) {
		t.Errorf("ownQuiet later: %d marks queued, %d paths marked, %s still own", len(a.ownQ), len(a.ownAt)+len(a.ownIn), last)
	}
}
