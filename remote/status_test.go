package remote

import (
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu    sync.Mutex
	verbs []string
	in    int64
	out   int64
}

func (r *recorder) PeerRequest(peer, verb string, d time.Duration, err error) {
	r.mu.Lock()
	r.verbs = append(r.verbs, peer+":"+verb)
	r.mu.Unlock()
}

func (r *recorder) PeerBytes(peer string, in, out int64) {
	r.mu.Lock()
	r.in += in
	r.out += out
	r.mu.Unlock()
}

func TestStatusReportAndFileState(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	bob.writeFile(t, "old.txt", []byte("old"), 0o644)
	s := newStore(t, t.TempDir())
	rec := &recorder{}
	s.opts.Observer = rec
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}, {Name: ReservedName, Addr: "127.0.0.1:1"}})
	if got := s.Peers(); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("peers = %v: %s must be left out", got, ReservedName)
	}
	s.SetReportInfo(ReportInfo{Version: "v9", Mountpoint: "/mnt", Tracker: "t:1", PID: 42})
	if r := s.Report(); len(r.Peers) != 1 || r.Peers[0].State != "unknown" {
		t.Fatalf("before any request: %+v", r.Peers)
	}
	s.StartHealth(20 * time.Millisecond)
	testutil.Eventually(t, "bob up with a round-trip time", func() bool {
		r := s.Report()
		return r.Peers[0].State == "up" && r.Peers[0].RTT > 0 && !r.Peers[0].LastSeen.IsZero()
	})

	// A file written here: pending until uploaded, then stored, then
	// covered by the next round that ends.
	fh := s.open(t, "bob", "new.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	s.write(t, fh, "hello", 0)
	if st, _ := s.FileState("bob", "new.txt"); st != "pending" {
		t.Errorf("state after a write = %q", st)
	}
	if r := s.Report(); r.Pending.Files != 1 || r.Pending.Bytes != 5 || r.Pending.Oldest.IsZero() {
		t.Errorf("pending = %+v", r.Pending)
	}
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if st, _ := s.FileState("bob", "new.txt"); st != "stored" {
		t.Errorf("state after close = %q", st)
	}
	s.MarkRound(7)
	s.MarkRound(8)
	if st, _ := s.FileState("bob", "new.txt"); st != "stored round=7" {
		t.Errorf("state after rounds 7 and 8 = %q", st)
	}
	if st, _ := s.FileState("bob", "old.txt"); st != "stored" {
		t.Errorf("state of a file never written here = %q", st)
	}
	if bob.content(t, "new.txt") != "hello" {
		t.Fatal("not uploaded")
	}

	r := s.Report()
	if r.Name != "me" || r.Version != "v9" || r.PID != 42 || r.Tracker.Addr != "t:1" || r.Peers[0].BytesOut != 5 || r.Cache.MaxBytes == 0 {
		t.Errorf("report = %+v", r)
	}
	text := r.Text()
	for _, want := range []string{"peerfs me (version v9) mounted on /mnt, pid 42", "tracker:  t:1, not registered", "nothing pending", "bob", bob.addr, "up"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	rec.mu.Lock()
	verbs, out := strings.Join(rec.verbs, " "), rec.out
	rec.mu.Unlock()
	if !strings.Contains(verbs, "bob:PING") || !strings.Contains(verbs, "bob:PUT") || out != 5 {
		t.Errorf("observed %q, %d bytes out", verbs, out)
	}

	// Bob goes away: down, with the reason.
	bob.stop()
	testutil.Eventually(t, "bob down", func() bool {
		r := s.Report()
		return r.Peers[0].State == "down" && r.Peers[0].Error != ""
	})
	if up, known := s.PeersUp(); up != 0 || known != 1 {
		t.Errorf("PeersUp = %d, %d", up, known)
	}
}
