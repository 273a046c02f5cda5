package remote

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
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

// A file truncated while its upload is being sent makes that PUT's
// source end early: the upload is sent again as the file is now, and
// close succeeds. The soak test met this: a write's O_TRUNC racing a SYNC
// turn's upload failed the close and, since the peer was taken for down,
// every request to it for a second, with EIO.
func TestUploadOfCopyTruncatedMeanwhile(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	seen, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var put bool
	var sent int
	// Holds the upload after 1 MiB of its payload, so that the client
	// stalls in the middle of sending the rest (more than the sockets
	// buffer) until released.
	proxy := tapProxy(t, bob.addr, func(b []byte) ([]byte, bool) {
		switch {
		case !put:
			put = bytes.Contains(b, []byte("PUT f "))
		case sent < 1<<20:
			sent += len(b)
		default:
			once.Do(func() { close(seen) })
			<-release
		}
		return b, false
	}, nil)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	ctx := testCtx(t)

	fh := s.open(t, "bob", "f", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	block := bytes.Repeat([]byte("x"), 1<<20)
	for off := int64(0); off < 32<<20; off += int64(len(block)) {
		if _, err := s.WriteAt(ctx, fh, block, off); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(ctx, fh) }()
	testutil.Recv(t, "1 MiB of the upload's payload", seen)
	if _, err := s.Truncate(ctx, "bob", "f", 5); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := testutil.Recv(t, "the flush", flushed); err != nil {
		t.Fatalf("close after the copy was truncated during its upload: %v", err)
	}
	s.release(t, fh)
	if got := bob.content(t, "f"); got != "xxxxx" {
		t.Errorf("the peer holds %d bytes, want the truncated copy's 5", len(got))
	}
}

// A file that cannot be stored in a full cache fails to read with
// ENOSPC, not EIO, and the peer, which sent it fine, is not taken for
// down: the next request to it goes out at once.
func TestFetchIntoFullCacheBlamesNoPeer(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	small := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", small).Run() })
	s := newStore(t, small)
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	bob.writeFile(t, "big", bytes.Repeat([]byte("y"), 2<<20), 0o644) // fetched whole (<= WholeFile)
	ctx := testCtx(t)

	fh := s.open(t, "bob", "big", os.O_RDONLY, 0)
	_, err := s.ReadAt(ctx, fh, make([]byte, 4096), 0)
	s.release(t, fh)
	if errnoOf(err) != syscall.ENOSPC {
		t.Fatalf("reading a file too big for the cache: %v, want ENOSPC", err)
	}
	if _, err := s.Stat(ctx, "bob", "other"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat right after: %v, want the peer's answer (not found), not a fail-fast", err)
	}
	if up, known := s.PeersUp(); up != known {
		t.Errorf("%d of %d peers up after a local failure", up, known)
	}
}
