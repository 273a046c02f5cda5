package remote

import (
	"bytes"
	"os"
	"sync/atomic"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// A chmod through the mount while the file's upload is on its way (its
// PUT DONE not back yet) reaches the peer: the upload, which set out
// with no chmod pending, used to mark the file's mode as stored when it
// ended, and the chmod was lost (a file made private stayed readable by
// all on the peer).
func TestChmodDuringUploadReachesPeer(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	var holding atomic.Bool
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	proxy := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		if holding.Load() && bytes.Contains(b, []byte("PUT DONE")) {
			holding.Store(false)
			held <- struct{}{}
			<-release
		}
		return b, false
	})
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)
	fh := s.open(t, "bob", "f", os.O_CREATE|os.O_WRONLY, 0o644)
	s.write(t, fh, "v1", 0)
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.write(t, fh, "v2", 0)
	holding.Store(true)
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(ctx, fh) }()
	testutil.Recv(t, "the upload's PUT DONE held", held)
	if _, err := s.Chmod(ctx, "bob", "f", 0o600); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := testutil.Recv(t, "the flush", flushed); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	testutil.Eventually(t, "the chmod on bob", func() bool { return bob.mode(t, "f").Perm() == 0o600 })
	if got := bob.mode(t, "f").Perm(); got != 0o600 {
		t.Errorf("bob's f: mode %04o after a chmod 0600 made during its upload", got)
	}
	if got := bob.content(t, "f"); got != "v2" {
		t.Errorf("bob's f = %q", got)
	}
}
