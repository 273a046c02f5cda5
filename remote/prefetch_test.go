package remote

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// A sequential reader is served from chunks fetched ahead of it, also
// when its reads arrive out of order and concurrently (the kernel's async
// reads do) and cross chunk boundaries; the peer sends each byte about
// once; a random read in between is right; closing the file mid-stream
// leaves no fetch running.
func TestStreamRead(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	const size = 9*chunkSize + 12345 // not a whole number of chunks
	data := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(data)
	bob.writeFile(t, "big", data, 0o644)

	fh := s.open(t, "bob", "big", os.O_RDONLY, 0)
	vc.take()
	before := bob.sent.Load()
	// Reads of an odd size, 4 at a time, each group's reads issued in
	// reverse order and concurrently.
	const rsize = 100000
	for base := int64(0); base < size; base += 4 * rsize {
		var wg sync.WaitGroup
		for i := 3; i >= 0; i-- {
			off := base + int64(i)*rsize
			if off >= size {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, rsize)
				n, err := s.ReadAt(ctx, fh, buf, off)
				want := data[off:min(off+rsize, size)]
				if err != nil || !bytes.Equal(buf[:n], want) {
					t.Errorf("ReadAt(%d) = %d, %v; want %d right bytes", off, n, err, len(want))
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	if sent := bob.sent.Load() - before; sent < size || sent > size+size/5 {
		t.Errorf("reading %d bytes sequentially made the peer send %d", size, sent)
	}
	if got := vc.take(); got["GET"] > 2*size/chunkSize+4 {
		t.Errorf("sequential read used %d GETs; want about one per %d bytes", got["GET"], chunkSize)
	}

	// A random read, then a sequential run that stops half-way.
	buf := make([]byte, 4096)
	if n, err := s.ReadAt(ctx, fh, buf, 777); err != nil || !bytes.Equal(buf[:n], data[777:777+4096]) {
		t.Fatalf("random ReadAt = %d, %v", n, err)
	}
	big := make([]byte, 128<<10)
	for off := int64(0); off < 3*chunkSize; off += int64(len(big)) {
		if n, err := s.ReadAt(ctx, fh, big, off); err != nil || !bytes.Equal(big[:n], data[off:off+int64(n)]) || n != len(big) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
	}
	s.release(t, fh)
	testutil.Eventually(t, "the prefetches to end after close", func() bool {
		return !goroutineIn("remote.(*Store).startChunk.func1")
	})
	s.noLeftovers(t)
}

// A file that shrinks under a streaming reader gives short reads, then
// end of file, not an error or stale bytes past the new end.
func TestStreamReadShrinks(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	data := make([]byte, 8*chunkSize)
	rand.New(rand.NewSource(2)).Read(data)
	bob.writeFile(t, "f", data, 0o644)
	fh := s.open(t, "bob", "f", os.O_RDONLY, 0)
	defer s.release(t, fh)
	buf := make([]byte, 128<<10)
	for off := int64(0); off < 2*int64(len(buf)); off += int64(len(buf)) {
		if _, err := s.ReadAt(ctx, fh, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	// Shrink it to 1.5 chunks: what was prefetched before may be served,
	// but reads past chunks fetched after the change see the end.
	if err := os.Truncate(bob.path("f"), chunkSize+chunkSize/2); err != nil {
		t.Fatal(err)
	}
	off := int64(7 * chunkSize)
	for ; ; off += int64(len(buf)) {
		n, err := s.ReadAt(ctx, fh, buf, off)
		if err != nil {
			t.Fatalf("ReadAt(%d) after the shrink: %v", off, err)
		}
		if n == 0 {
			break
		}
		if off > 20*chunkSize {
			t.Fatal("no end of file after the shrink")
		}
	}
}

// A reader that reads a file sequentially twice (seeking back to the
// start) gets the right bytes both times.
func TestStreamReadTwice(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	data := make([]byte, 6*chunkSize+1)
	rand.New(rand.NewSource(3)).Read(data)
	bob.writeFile(t, "f", data, 0o644)
	fh := s.open(t, "bob", "f", os.O_RDONLY, 0)
	defer s.release(t, fh)
	buf := make([]byte, 128<<10)
	for pass := range 2 {
		var got []byte
		for off := int64(0); ; off += int64(len(buf)) {
			n, err := s.ReadAt(ctx, fh, buf, off)
			if err != nil {
				t.Fatalf("pass %d: ReadAt(%d): %v", pass, off, err)
			}
			if n == 0 {
				break
			}
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("pass %d: read %d bytes, not the file's %d", pass, len(got), len(data))
		}
	}
}

// Many sequential readers at once share a bounded number of chunks
// fetched ahead (maxAhead): every reader still reads the right bytes, and
// every token is given back once the handles are closed.
func TestStreamAheadBound(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	const files = 12 // x chunksAhead wanted ahead: more than maxAhead
	const size = 6*chunkSize + 77
	data := make([]byte, size)
	rand.New(rand.NewSource(4)).Read(data)
	fhs := make([]uint64, files)
	for i := range fhs {
		bob.writeFile(t, "f"+string(rune('a'+i)), data, 0o644)
	}
	for i := range fhs {
		fhs[i] = s.open(t, "bob", "f"+string(rune('a'+i)), os.O_RDONLY, 0)
	}
	var wg sync.WaitGroup
	for _, fh := range fhs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			var got []byte
			for off := int64(0); ; off += int64(len(buf)) {
				n, err := s.ReadAt(ctx, fh, buf, off)
				if err != nil {
					t.Errorf("ReadAt(%d): %v", off, err)
					return
				}
				if n == 0 {
					break
				}
				got = append(got, buf[:n]...)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("read %d bytes, not the file's %d", len(got), len(data))
			}
		}()
	}
	wg.Wait()
	for _, fh := range fhs {
		s.release(t, fh)
	}
	testutil.Eventually(t, "every ahead token back", func() bool { return len(s.chunks.ahead) == 0 })
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
