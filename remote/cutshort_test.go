package remote

import (
	"bytes"
	"math/rand"
	"os"
	"sync/atomic"
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

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

// A read whose GET the peer cuts short (its file shrank while it was
// sent) asks again and returns the file, for each way a file is read: a
// small file fetched whole, a large one streamed sequentially, and a
// random read of a large one. The peer is not taken for down meanwhile.
func TestReadCutShortAsksAgain(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	small := make([]byte, 300<<10)
	big := make([]byte, 6*chunkSize+7)
	rnd := rand.New(rand.NewSource(4))
	rnd.Read(small)
	rnd.Read(big)
	bob.writeFile(t, "small", small, 0o644)
	bob.writeFile(t, "big", big, 0o644)
	ctx := testCtx(t)

	read := func(t *testing.T, s *testStore, name string, off int64, n int, want []byte) {
		t.Helper()
		fh := s.open(t, "bob", name, os.O_RDONLY, 0)
		defer s.release(t, fh)
		var got []byte
		buf := make([]byte, 128<<10)
		for pos := off; len(got) < n; {
			k, err := s.ReadAt(ctx, fh, buf[:min(len(buf), n-len(got))], pos)
			if err != nil {
				t.Fatalf("ReadAt(%s, %d): %v", name, pos, err)
			}
			if k == 0 {
				break
			}
			got = append(got, buf[:k]...)
			pos += int64(k)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s at %d: read %d bytes, not the file's %d", name, off, len(got), len(want))
		}
	}
	for _, tc := range []struct {
		name, file string
		pass       int32 // GETs answered in full before the cut one
		off        int64
		n          int
		want       []byte
	}{
		{"whole", "small", 0, 0, len(small), small},
		{"sequential", "big", 0, 0, len(big), big},
		{"stream", "big", 4, 0, len(big), big}, // past the first reads: a prefetched chunk
		{"random", "big", 0, 3*chunkSize + 5, 4096, big[3*chunkSize+5 : 3*chunkSize+5+4096]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, t.TempDir())
			proxy, left := cutGetProxy(t, bob.addr, tc.pass)
			s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
			read(t, s, tc.file, tc.off, tc.n, tc.want)
			if left.Load() >= 0 {
				t.Fatal("the proxy cut no GET: the test tested nothing")
			}
		})
	}
}
