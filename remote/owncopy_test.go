package remote

import (
	"bytes"
	"crypto/rand"
	"os"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
)

// readAll reads fh from offset 0 in 128 KiB requests, as the kernel does.
func (s *testStore) readAll(t *testing.T, fh uint64, size int) []byte {
	t.Helper()
	out := make([]byte, 0, size)
	buf := make([]byte, 128<<10)
	for off := int64(0); ; {
		n, err := s.ReadAt(testCtx(t), fh, buf, off)
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
		if n == 0 {
			return out
		}
		out = append(out, buf[:n]...)
		off += int64(n)
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
