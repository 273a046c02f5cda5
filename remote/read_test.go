package remote

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// A read whose GET the peer cuts short (its file shrank while it was
// sent) asks again and returns the file, for each way a file is read: a
// small file fetched whole, a large one streamed sequentially, and a
// random read of a large one. The peer is not taken for down meanwhile.
func TestReadCutShortAsksAgain(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	small := make([]byte, 300<<10)
	big := make([]byte, 6*chunkSize+7)
	rnd := mrand.NewChaCha8([32]byte{4}) // deterministic content
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

// A file too large to be fetched whole is still read from the copy the
// cache holds when this mount wrote it: no GET. Once the owner changes
// the file, the copy no longer matches and reads go to the peer again.
func TestLargeFileReadFromOwnCopy(t *testing.T) {
	s, bob, vc := countedStore(t)
	s.opts.WholeFile = 64 << 10 // before the first read: no race
	ctx := testCtx(t)
	data := make([]byte, 1<<20+12345)
	rand.Read(data)

	fh := s.open(t, "bob", "big", os.O_CREATE|os.O_WRONLY, 0o644)
	if n, err := s.WriteAt(ctx, fh, data, 0); err != nil || n != len(data) {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if !bytes.Equal([]byte(bob.content(t, "big")), data) {
		t.Fatal("bob does not have the file written")
	}

	vc.take()
	fh = s.open(t, "bob", "big", os.O_RDONLY, 0)
	if got := s.readAll(t, fh, len(data)); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes back, not what was written", len(got))
	}
	s.release(t, fh)
	if got := vc.take(); got["GET"] != 0 {
		t.Errorf("reading back a file this mount wrote cost %v; want no GET", got)
	}

	changed := bytes.Repeat([]byte("z"), len(data))
	bob.writeFile(t, "big", changed, 0o644)
	testutil.Eventually(t, "the owner's new content to be read", func() bool {
		fh := s.open(t, "bob", "big", os.O_RDONLY, 0)
		defer s.release(t, fh)
		return bytes.Equal(s.readAll(t, fh, len(changed)), changed)
	})
	if got := vc.take(); got["GET"] == 0 {
		t.Errorf("the owner's new content was read with %v; want GETs", got)
	}
}

// Regression tests of bugs found after the lazy, streamed fetch landed:
// stale cached sizes and renames held by another peer's round.

// A file that grew on its peer after its attributes were cached (here by
// a listing, less than AttrTTL before the open) is read correctly: the
// reader gets the old or the new content, whole, and no error.
func TestReadOfFileThatGrewSinceListed(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	oldData, newData := []byte("x\n"), []byte("a much longer content now\n")
	c.bob.writeFile(t, "f", oldData, 0o644)
	s.names(t, "bob", "") // caches f's attributes
	c.bob.writeFile(t, "f", newData, 0o644)

	fh := s.open(t, "bob", "f", os.O_RDONLY, 0)
	defer s.release(t, fh)
	for i := range 2 {
		buf := make([]byte, 100)
		n, err := s.ReadAt(ctx, fh, buf, 0)
		if err != nil {
			t.Errorf("read %d: %v", i, err)
			continue
		}
		if got := buf[:n]; !bytes.Equal(got, oldData) && !bytes.Equal(got, newData) {
			t.Errorf("read %d = %q: neither the old nor the new content", i, got)
		}
	}
}

// A large file is read by ranged GETs with read-ahead: a sequential
// reader gets the right bytes, the peer sends each byte about once, and a
// read at or across the end of file is a short count without error.
func TestReadAheadLargeFile(t *testing.T) {
	c := newCluster(t)
	s, ctx := c.store, testCtx(t)
	const size = 20 << 20
	data := make([]byte, size)
	rand.Read(data)
	c.bob.writeFile(t, "big", data, 0o644)

	before := c.bob.sent.Load()
	fh := s.open(t, "bob", "big", os.O_RDONLY, 0)
	buf := make([]byte, 128<<10)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n, err := s.ReadAt(ctx, fh, buf, off)
		if err != nil || n != len(buf) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
		if !bytes.Equal(buf, data[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d): wrong bytes", off)
		}
	}
	// The peer counts a write once it returns, which may be after this
	// side has read its bytes.
	testutil.Eventually(t, "the peer's count to catch up", func() bool { return c.bob.sent.Load()-before >= size })
	sent := c.bob.sent.Load() - before
	if sent < size || sent > size+size/10 {
		t.Errorf("reading %d bytes sequentially made the peer send %d", size, sent)
	}

	n, err := s.ReadAt(ctx, fh, buf, size)
	if n != 0 || err != nil {
		t.Errorf("ReadAt(EOF) = %d, %v; want 0, nil", n, err)
	}
	n, err = s.ReadAt(ctx, fh, buf, size-1000)
	if n != 1000 || err != nil || !bytes.Equal(buf[:n], data[size-1000:]) {
		t.Errorf("ReadAt across EOF = %d, %v; want 1000, nil", n, err)
	}
	// A random read far back is served correctly too.
	n, err = s.ReadAt(ctx, fh, buf[:4096], 12345)
	if n != 4096 || err != nil || !bytes.Equal(buf[:n], data[12345:12345+4096]) {
		t.Errorf("random ReadAt = %d, %v", n, err)
	}
	s.release(t, fh)
	s.noLeftovers(t)
}
