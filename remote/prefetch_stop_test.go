package remote

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

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

// Reader A waits for a stream chunk; reader B on the same handle does two
// far reads; A's read must not fail.
func TestStreamStoppedUnderWaitingReader(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	release := make(chan struct{})
	hold := fmt.Sprintf(" %d %d", 5*chunkSize, chunkSize)
	px := gateProxy(t, bob.addr, hold, release)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: px}})
	ctx := testCtx(t)
	const size = 64 * chunkSize
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	bob.writeFile(t, "big", data, 0o644)
	fh := s.open(t, "bob", "big", os.O_RDONLY, 0)
	defer s.release(t, fh)
	buf := make([]byte, 128<<10)
	for _, off := range []int64{0, 128 << 10} {
		if _, err := s.ReadAt(ctx, fh, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var aErr error
	var aN int
	abuf := make([]byte, 128<<10)
	go func() {
		defer wg.Done()
		aN, aErr = s.ReadAt(ctx, fh, abuf, 5*chunkSize)
	}()
	testutil.Eventually(t, "A waiting on its chunk", func() bool { return goroutineIn("remote.(*Store).readStream") })
	b := make([]byte, 4096)
	for _, off := range []int64{40 * chunkSize, 50 * chunkSize} {
		if _, err := s.ReadAt(ctx, fh, b, off); err != nil {
			t.Fatalf("B: %v", err)
		}
	}
	close(release)
	wg.Wait()
	if aErr != nil || !bytes.Equal(abuf[:aN], data[5*chunkSize:5*chunkSize+len(abuf)]) {
		t.Fatalf("A's ReadAt(5 MiB) = %d, %v", aN, aErr)
	}
}
