package remote

import (
	"bytes"
	crand "crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// littleWire is how many bytes an edit of 4 KiB may move each way: the
// 4 KiB, request lines and replies.
const littleWire = 64 << 10

// bigOnBob puts size random bytes as name into bob's export, as its owner
// would, and returns them.
func bigOnBob(t *testing.T, bob *testPeer, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	crand.Read(data)
	bob.writeFile(t, name, data, 0o644)
	return data
}

// wire counts what a peer sends and receives from a point on.
type wire struct {
	p          *testPeer
	sent, recv int64
}

func wireOf(p *testPeer) *wire { return &wire{p: p, sent: p.sent.Load(), recv: p.recv.Load()} }

// take returns what the peer sent and received since the last take.
func (w *wire) take() (sent, recv int64) {
	s, r := w.p.sent.Load(), w.p.recv.Load()
	sent, recv = s-w.sent, r-w.recv
	w.sent, w.recv = s, r
	return sent, recv
}

// edit opens bob:name with flags, writes b at off, closes it, and fails
// the test on an error.
func (s *testStore) edit(t *testing.T, name string, flags int, b []byte, off int64) {
	t.Helper()
	fh := s.open(t, "bob", name, flags, 0)
	s.write(t, fh, string(b), off)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatalf("close(): %v", err)
	}
	s.release(t, fh)
}

// TestAppendToLargeFileMovesLittle: appending 4 KiB to a large file that
// this mount never read moves about 4 KiB each way (the file is neither
// fetched at open nor uploaded whole at close), however it is opened for
// writing, and the peer ends up with the old content and the new bytes.
func TestAppendToLargeFileMovesLittle(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags int
	}{
		{"append", os.O_WRONLY | os.O_APPEND},
		{"write-only at the end", os.O_WRONLY},
		{"read-write, not read", os.O_RDWR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, bob, vc := countedStore(t)
			const size = 16 << 20
			data := bigOnBob(t, bob, "big", size)
			add := make([]byte, 4096)
			crand.Read(add)
			w := wireOf(bob)
			s.edit(t, "big", tc.flags, add, size)
			sent, recv := w.take()
			if sent > littleWire || recv > littleWire {
				t.Errorf("appending 4 KiB to %d bytes moved %d bytes from the peer and %d to it", size, sent, recv)
			}
			if got := vc.take(); got["GET"] != 0 || got["PUT"] != 1 {
				t.Errorf("requests %v: want one PUT and no GET", got)
			}
			if got := bob.content(t, "big"); got != string(data)+string(add) {
				t.Errorf("peer holds %d bytes, not the old %d and the 4096 appended", len(got), size)
			}
			s.noLeftovers(t)
		})
	}
}

// TestOverwriteMiddleMovesLittle: overwriting 4 KiB in the middle of a
// large file, and growing it with a hole, send just those ranges.
func TestOverwriteMiddleMovesLittle(t *testing.T) {
	s, bob, _ := countedStore(t)
	const size = 16 << 20
	want := bigOnBob(t, bob, "big", size)
	mid := bytes.Repeat([]byte("M"), 4096)
	w := wireOf(bob)
	s.edit(t, "big", os.O_WRONLY, mid, size/2)
	copy(want[size/2:], mid)
	if sent, recv := w.take(); sent > littleWire || recv > littleWire {
		t.Errorf("overwriting 4 KiB in the middle moved %d bytes from the peer and %d to it", sent, recv)
	}
	if got := bob.content(t, "big"); got != string(want) {
		t.Fatalf("peer holds %d bytes, not the file with its middle overwritten", len(got))
	}
	// Grown past its end with a hole: the hole is zeros, and not sent.
	s.edit(t, "big", os.O_WRONLY, []byte("end"), size+8<<20)
	want = append(append(want, make([]byte, 8<<20)...), "end"...)
	if sent, recv := w.take(); sent > littleWire || recv > littleWire {
		t.Errorf("writing past the end moved %d bytes from the peer and %d to it", sent, recv)
	}
	if got := bob.content(t, "big"); got != string(want) {
		t.Errorf("peer holds %d bytes, want %d: the old content, a hole, and the new end", len(got), len(want))
	}
	// Truncated, then written: only the write and the new size go.
	fh := s.open(t, "bob", "big", os.O_WRONLY, 0)
	if _, err := s.Truncate(testCtx(t), "bob", "big", 1<<20); err != nil {
		t.Fatal(err)
	}
	s.write(t, fh, "cut", 1<<20-3)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	want = append(want[:1<<20-3:1<<20-3], "cut"...)
	if sent, recv := w.take(); sent > littleWire || recv > littleWire {
		t.Errorf("truncating and writing moved %d bytes from the peer and %d to it", sent, recv)
	}
	if got := bob.content(t, "big"); got != string(want) {
		t.Errorf("peer holds %d bytes, want the first MiB with its last 3 bytes rewritten", len(got))
	}
	s.noLeftovers(t)
}

// TestWriteOnlyOpenDoesNotDownload: a file opened for writing is not
// fetched to be written; a read through a read-write handle fetches what
// it reads (and a little around it), and sees this writer's bytes where
// it wrote.
func TestWriteOnlyOpenDoesNotDownload(t *testing.T) {
	s, bob, vc := countedStore(t)
	ctx := testCtx(t)
	const size = 32 << 20
	data := bigOnBob(t, bob, "db", size)
	w := wireOf(bob)
	vc.take()
	fh := s.open(t, "bob", "db", os.O_RDWR, 0)
	s.write(t, fh, "page", 8192)
	if got := vc.take(); got["GET"] != 0 {
		t.Errorf("opening and writing cost %v: want no GET", got)
	}
	buf := make([]byte, 4)
	if n, err := s.ReadAt(ctx, fh, buf, 8192); err != nil || string(buf[:n]) != "page" {
		t.Errorf("read back what was written: %q, %v", buf[:n], err)
	}
	far := make([]byte, 4096)
	if n, err := s.ReadAt(ctx, fh, far, 20<<20+100); err != nil || !bytes.Equal(far[:n], data[20<<20+100:20<<20+100+4096]) {
		t.Errorf("read of what the peer has: %d bytes, %v; want the peer's bytes", n, err)
	}
	if sent, _ := w.take(); sent > 2<<20 {
		t.Errorf("reading 4 KiB of a %d-byte file fetched %d bytes", size, sent)
	}
	if err := s.Flush(ctx, fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if _, recv := w.take(); recv > littleWire {
		t.Errorf("the upload of a 4-byte change sent %d bytes", recv)
	}
	copy(data[8192:], "page")
	if got := bob.content(t, "db"); got != string(data) {
		t.Error("peer does not hold the file with the page written")
	}
	s.noLeftovers(t)
}

// TestDeltaConflictKeepsBoth: a delta is conditional on the version the
// copy started from: a file replaced by another writer since is not
// changed, and this writer's bytes are kept beside it, over the other's
// content (the only one the peer still has), and the writer hears of it.
func TestDeltaConflictKeepsBoth(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	bigOnBob(t, bob, "f", 6<<20)
	fh := s.open(t, "bob", "f", os.O_WRONLY, 0)
	s.write(t, fh, "mine", 1<<20) // the copy's base is the file as it is now
	theirs := bigOnBob(t, bob, "f", 6<<20)
	future(t, bob.path("f"), 1)
	err := s.Flush(ctx, fh)
	s.release(t, fh)
	if errnoOf(err) != syscall.ESTALE {
		t.Fatalf("close() after another writer replaced the file: %v, want ESTALE", err)
	}
	if got := bob.content(t, "f"); got != string(theirs) {
		t.Error("the other writer's file was changed")
	}
	var kept []string
	for _, n := range s.names(t, "bob", "") {
		if strings.HasPrefix(n, "f.conflict-me-") {
			kept = append(kept, n)
		}
	}
	copy(theirs[1<<20:], "mine")
	if len(kept) != 1 || bob.content(t, kept[0]) != string(theirs) {
		t.Errorf("conflict copies %v: want one, this writer's bytes over the other's file", kept)
	}
	s.noLeftovers(t)
}

// TestDeltaToPeerWithoutDelta: a peer that does not serve delta PUTs
// gets the whole file, whose unchanged part is fetched first.
func TestDeltaToPeerWithoutDelta(t *testing.T) {
	s, bob, _ := countedStore(t)
	older := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		return bytes.Replace(b, []byte(" "+peerproto.FeatureDelta), nil, 1), false
	})
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: older}})
	const size = 8 << 20
	data := bigOnBob(t, bob, "big", size)
	w := wireOf(bob)
	s.edit(t, "big", os.O_WRONLY|os.O_APPEND, []byte("tail"), 0)
	if got := bob.content(t, "big"); got != string(data)+"tail" {
		t.Errorf("peer holds %d bytes, want the old %d and a tail", len(got), size)
	}
	if sent, recv := w.take(); sent < size || recv < size {
		t.Errorf("whole upload: the peer sent %d and received %d bytes; want the file each way", sent, recv)
	}
	s.noLeftovers(t)
}

// TestRestartUploadsPartialCopy: a partial copy whose upload did not
// happen (the peer could not be reached, or the mount was killed) is
// uploaded after a restart as a delta over the version it started from:
// its changed ranges and what it holds survive in its cache record. If
// the file was replaced meanwhile, that is a conflict, as before.
func TestRestartUploadsPartialCopy(t *testing.T) {
	for _, tc := range []struct {
		name         string
		crash, other bool
	}{
		{name: "upload failed"},
		{name: "killed", crash: true},
		{name: "upload failed, replaced meanwhile", other: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bob := startPeer(t, t.TempDir())
			const size = 16 << 20
			data := bigOnBob(t, bob, "big", size)
			dir := t.TempDir()
			ctx := testCtx(t)
			s1 := newStore(t, dir)
			s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
			fh := s1.open(t, "bob", "big", os.O_WRONLY, 0)
			s1.write(t, fh, "middle", size/2)
			s1.write(t, fh, "appended", size)
			s1.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: testutil.ClosedAddr(t)}})
			next := dir
			if tc.crash {
				next = crashImage(t, dir) // as kill -9 leaves it: never uploaded, never persisted
			} else if err := s1.Flush(ctx, fh); err == nil {
				t.Fatal("upload to an unreachable peer succeeded")
			}
			s1.release(t, fh)
			s1.close()
			want := append(bytes.Clone(data), "appended"...)
			copy(want[size/2:], "middle")
			if tc.other {
				want = bigOnBob(t, bob, "big", size)
				future(t, bob.path("big"), 1)
			}

			s2 := newStore(t, next)
			s2.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
			w := wireOf(bob)
			err := s2.FlushAll(ctx)
			if tc.other {
				if errnoOf(err) != syscall.ESTALE {
					t.Errorf("upload over a replaced file after the restart: %v, want ESTALE", err)
				}
				if got := bob.content(t, "big"); got != string(want) {
					t.Error("the other writer's file was changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("upload after the restart: %v", err)
			}
			if sent, recv := w.take(); sent > littleWire || recv > littleWire {
				t.Errorf("the upload after the restart moved %d bytes from the peer and %d to it", sent, recv)
			}
			if got := bob.content(t, "big"); got != string(want) {
				t.Errorf("peer holds %d bytes, not the file with this writer's two changes", len(got))
			}
			s2.noLeftovers(t)
		})
	}
}

// crashImage copies the cache directory dir as it is now, sparse files
// kept sparse: what a mount killed at this moment leaves.
func crashImage(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "cache")
	if out, err := exec.Command("cp", "-a", "--sparse=always", dir, img).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", dir, err, out)
	}
	return img
}
