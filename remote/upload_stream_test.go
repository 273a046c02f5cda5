package remote

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
)

// streamTemp returns the size of the largest temporary upload file in
// bob's export (a stream's content so far), -1 if there is none.
func streamTemp(t *testing.T, bob *testPeer, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(bob.path(dir))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(-1)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), jail.TempPrefix) {
			if fi, err := e.Info(); err == nil && fi.Size() > size {
				size = fi.Size()
			}
		}
	}
	return size
}

// writeSeq writes data to fh from off in 128 KiB writes, as cp does.
func writeSeq(t *testing.T, s *testStore, fh uint64, data []byte, off int64) {
	t.Helper()
	for i := 0; i < len(data); i += 128 << 10 {
		s.write(t, fh, string(data[i:min(len(data), i+128<<10)]), off+int64(i))
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// A large new file goes to its peer while it is written: before the
// close, bob holds most of it in a temporary file (not under its name);
// the close sends the rest and stores it, once (bob read about the
// file's size, not twice that).
func TestStreamedUploadWhileWriting(t *testing.T) {
	s, bob, vc := countedStore(t)
	data := randomBytes(4 << 20)
	fh := s.open(t, "bob", "big", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	before := bob.recv.Load()
	writeSeq(t, s, fh, data, 0)
	testutil.Eventually(t, "most of the file on bob before the close", func() bool {
		return streamTemp(t, bob, "") >= 4<<20-streamBatch
	})
	if bob.exists(t, "big") {
		t.Fatal("the streamed file is visible under its name before the close")
	}
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if got := bob.content(t, "big"); got != string(data) {
		t.Fatalf("bob holds %d bytes, not the %d written", len(got), len(data))
	}
	if moved := bob.recv.Load() - before; moved > 5<<20 {
		t.Errorf("bob read %d bytes for a 4 MiB file: sent more than once?", moved)
	}
	if n := vc.take(); n["STREAM"] != 1 {
		t.Errorf("requests %v, want one STREAM", n)
	}
	if sz := streamTemp(t, bob, ""); sz != -1 {
		t.Errorf("a temporary file is left on bob (%d bytes)", sz)
	}
	// A second version, over the first (O_TRUNC): streamed too, on
	// the version it replaces.
	data2 := randomBytes(1 << 20)
	fh = s.open(t, "bob", "big", os.O_WRONLY|os.O_TRUNC, 0)
	writeSeq(t, s, fh, data2, 0)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if got := bob.content(t, "big"); got != string(data2) {
		t.Fatalf("bob holds %d bytes, not the second version's %d", len(got), len(data2))
	}
	if n := vc.take(); n["STREAM"] != 1 {
		t.Errorf("requests %v, want one STREAM for the rewrite", n)
	}
}

// What breaks a stream leaves the upload to the close, which sends the
// file whole and right: a write before what was sent, a truncation, a
// rename of the open file, a writer that pauses; none leaves a
// temporary file on bob.
func TestStreamedUploadDropped(t *testing.T) {
	saved := streamIdle
	streamIdle = 200 * time.Millisecond
	t.Cleanup(func() { streamIdle = saved })
	for _, tc := range []struct {
		name  string
		after func(t *testing.T, s *testStore, bob *testPeer, fh uint64, data []byte) (path string, want []byte)
	}{
		{"rewrite below what was sent", func(t *testing.T, s *testStore, bob *testPeer, fh uint64, data []byte) (string, []byte) {
			s.write(t, fh, "XYZ", 100)
			want := bytes.Clone(data)
			copy(want[100:], "XYZ")
			return "f", want
		}},
		{"truncated", func(t *testing.T, s *testStore, bob *testPeer, fh uint64, data []byte) (string, []byte) {
			if _, err := s.TruncateHandle(testCtx(t), fh, 1000); err != nil {
				t.Fatal(err)
			}
			return "f", data[:1000]
		}},
		{"renamed while open", func(t *testing.T, s *testStore, bob *testPeer, fh uint64, data []byte) (string, []byte) {
			if err := s.Rename(testCtx(t), "bob", "f", "g"); err != nil {
				t.Fatal(err)
			}
			more := randomBytes(300 << 10)
			writeSeq(t, s, fh, more, int64(len(data)))
			return "g", append(bytes.Clone(data), more...)
		}},
		{"a hole after it started", func(t *testing.T, s *testStore, bob *testPeer, fh uint64, data []byte) (string, []byte) {
			s.write(t, fh, "tail", int64(len(data))+4096)
			want := append(bytes.Clone(data), make([]byte, 4096)...)
			return "f", append(want, "tail"...)
		}},
		{"writer paused", func(t *testing.T, s *testStore, bob *testPeer, fh uint64, data []byte) (string, []byte) {
			// Dropped after streamIdle: bob removes what it got.
			testutil.Eventually(t, "the idle stream dropped", func() bool { return streamTemp(t, bob, "") == -1 })
			more := randomBytes(300 << 10)
			writeSeq(t, s, fh, more, int64(len(data)))
			return "f", append(bytes.Clone(data), more...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, bob, _ := countedStore(t)
			data := randomBytes(1 << 20)
			fh := s.open(t, "bob", "f", os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
			writeSeq(t, s, fh, data, 0)
			testutil.Eventually(t, "part of the file on bob", func() bool { return streamTemp(t, bob, "") >= 512<<10 })
			path, want := tc.after(t, s, bob, fh, data)
			if err := s.Flush(testCtx(t), fh); err != nil {
				t.Fatal(err)
			}
			s.release(t, fh)
			if got := bob.content(t, path); got != string(want) {
				t.Fatalf("bob's %s holds %d bytes, want %d (first difference at %d)", path, len(got), len(want), firstDiff([]byte(got), want))
			}
			if path != "f" && bob.exists(t, "f") {
				t.Fatal("the stream stored the file under its old name")
			}
			testutil.Eventually(t, "no temporary file on bob", func() bool { return streamTemp(t, bob, "") == -1 })
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A file removed while it streams is never stored; a Store closed with a
// stream under way stops it (Close does not wait for the writer).
func TestStreamedUploadRemovedOrClosed(t *testing.T) {
	s, bob, _ := countedStore(t)
	fh := s.open(t, "bob", "gone", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	writeSeq(t, s, fh, randomBytes(1<<20), 0)
	testutil.Eventually(t, "part of the file on bob", func() bool { return streamTemp(t, bob, "") >= 512<<10 })
	if err := s.Remove(testCtx(t), "bob", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	testutil.Eventually(t, "no temporary file on bob", func() bool { return streamTemp(t, bob, "") == -1 })
	if bob.exists(t, "gone") {
		t.Fatal("a removed file was stored")
	}

	fh = s.open(t, "bob", "open", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	writeSeq(t, s, fh, randomBytes(1<<20), 0)
	testutil.Eventually(t, "part of the file on bob", func() bool { return streamTemp(t, bob, "") >= 512<<10 })
	closed := make(chan struct{})
	go func() { s.close(); close(closed) }()
	testutil.Recv(t, "Store.Close with a stream under way", closed)
	testutil.Eventually(t, "no temporary file on bob", func() bool { return streamTemp(t, bob, "") == -1 })
	if bob.exists(t, "open") {
		t.Fatal("a stream was stored without its close")
	}
}

// A peer that does not take streamed PUTs (an older version: its
// FEATURES do not name stream) gets large files whole at close, and the
// refusal does not count against it: the close succeeds at once, and no
// stream is tried again.
func TestStreamedUploadToOlderPeer(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	proxy := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		return bytes.ReplaceAll(b, []byte(" stream"), nil), false
	})
	vc := &verbCounter{n: map[string]int{}}
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.Observer = vc })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	for _, name := range []string{"one", "two"} {
		uploadMiB(t, s, bob, name)
	}
	if n := vc.take(); n["STREAM"] > 1 {
		t.Errorf("requests %v: a stream tried again after the peer said it takes none", n)
	}
}

// uploadMiB writes a new 1 MiB file name to bob through s, from its
// start onwards as cp does, closes it and checks bob has it.
func uploadMiB(t *testing.T, s *testStore, bob *testPeer, name string) {
	t.Helper()
	data := randomBytes(1 << 20)
	fh := s.open(t, "bob", name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	writeSeq(t, s, fh, data, 0)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatalf("close of %s: %v", name, err)
	}
	s.release(t, fh)
	if got := bob.content(t, name); got != string(data) {
		t.Fatalf("bob's %s holds %d bytes, want %d", name, len(got), len(data))
	}
}

// A file with a hole before its data (preallocated, or written out of
// order) is not streamed: the stream would carry zeros about to be
// replaced. One preallocated and then filled from its start streams
// what was written, and only that.
func TestStreamedUploadHoles(t *testing.T) {
	s, bob, vc := countedStore(t)
	data := randomBytes(1 << 20)
	fh := s.open(t, "bob", "holes", os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	writeSeq(t, s, fh, data[512<<10:], 512<<10)
	writeSeq(t, s, fh, data[:512<<10], 0)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if got := bob.content(t, "holes"); got != string(data) {
		t.Fatalf("bob holds %d bytes, want %d", len(got), len(data))
	}
	if n := vc.take(); n["STREAM"] != 0 {
		t.Errorf("requests %v: a file written out of order was streamed", n)
	}

	fh = s.open(t, "bob", "prealloc", os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if _, err := s.TruncateHandle(testCtx(t), fh, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	writeSeq(t, s, fh, data[:768<<10], 0)
	testutil.Eventually(t, "what was written on bob", func() bool { return streamTemp(t, bob, "") >= 512<<10 })
	if sz := streamTemp(t, bob, ""); sz > 768<<10 {
		t.Fatalf("the stream sent %d bytes of a file written up to %d", sz, 768<<10)
	}
	writeSeq(t, s, fh, data[768<<10:], 768<<10)
	if err := s.Flush(testCtx(t), fh); err != nil {
		t.Fatal(err)
	}
	s.release(t, fh)
	if got := bob.content(t, "prealloc"); got != string(data) {
		t.Fatalf("bob's preallocated file holds %d bytes, want %d", len(got), len(data))
	}
	if n := vc.take(); n["STREAM"] != 1 {
		t.Errorf("requests %v, want one STREAM for the preallocated file", n)
	}
}

// A streamed PUT whose END reached the peer but whose answer was lost
// (the connection cut right then): the close fails, as for a whole PUT
// whose answer is lost, and the retry finds the peer holds this very
// content: one file, no conflict copy; also for a file larger than
// sumMax, which the peer hashes for the retry (SUM) rather than send it.
func TestStreamedUploadAnswerLost(t *testing.T) {
	for _, size := range []int{2 << 20, sumMax + 1<<20} {
		t.Run(fmt.Sprint(size>>20, "MiB"), func(t *testing.T) { testStreamedUploadAnswerLost(t, size) })
	}
}

func testStreamedUploadAnswerLost(t *testing.T, size int) {
	bob := startPeer(t, t.TempDir())
	var cut atomic.Bool
	proxy := tapProxy(t, bob.addr, nil, func(b []byte) ([]byte, bool) {
		if i := bytes.Index(b, []byte("PUT DONE")); i >= 0 && cut.CompareAndSwap(false, true) {
			return b[:i], true
		}
		return b, false
	})
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy}})
	data := randomBytes(size)
	fh := s.open(t, "bob", "f", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	writeSeq(t, s, fh, data, 0)
	testutil.Eventually(t, "part of the file on bob", func() bool { return streamTemp(t, bob, "") >= 512<<10 })
	err := s.Flush(testCtx(t), fh)
	if err == nil {
		t.Fatal("close succeeded though the answer to its upload was lost")
	}
	if errors.Is(err, fusefs.ErrConflict) {
		t.Fatalf("close: %v: the file was sent again and kept as a conflict copy of itself", err)
	}
	if !cut.Load() {
		t.Fatal("the stream's PUT DONE was never seen")
	}
	s.release(t, fh)
	testutil.Eventually(t, "the retry settling the upload", func() bool {
		n, _ := s.PendingInfo()
		return n == 0
	})
	if got := bob.content(t, "f"); got != string(data) {
		t.Fatalf("bob holds %d bytes, want %d", len(got), len(data))
	}
	if names := s.names(t, "bob", ""); len(names) != 1 {
		t.Fatalf("bob's export holds %v: want the file alone, no conflict copy", names)
	}
}

// A peer that took no streams, restarted with them (upgraded), gets
// them once a connection to it says so: the mount does not keep the old
// answer until it restarts. (The first file after the restart may still
// go whole: nothing was asked of the peer since.)
func TestStreamedUploadToUpgradedPeer(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	old := func(b []byte) ([]byte, bool) { return bytes.ReplaceAll(b, []byte(" stream"), nil), false }
	proxy := newRestartProxy(t, bob.addr, old)
	vc := &verbCounter{n: map[string]int{}}
	s := newStoreWith(t, t.TempDir(), func(o *Options) { o.Observer = vc })
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: proxy.addr}})
	upload := func(name string) { uploadMiB(t, s, bob, name) }
	upload("before")
	if n := vc.take(); n["STREAM"] > 1 {
		t.Fatalf("requests %v: streams to a peer that takes none", n)
	}
	upload("before-again")
	if n := vc.take(); n["STREAM"] != 0 {
		t.Fatalf("requests %v: a stream tried again after the peer said it takes none", n)
	}
	proxy.restart(nil)
	for _, name := range []string{"after-1", "after-2", "after-3"} {
		upload(name)
	}
	if n := vc.take(); n["STREAM"] < 2 {
		t.Errorf("requests %v: the upgraded peer got %d streams of 3 files, want 2 or more", n, n["STREAM"])
	}
}

// A large file written while the mount's streams are all taken
// (maxStreams) starts its own once one ends and it has grown further,
// rather than going whole at its close.
func TestStreamedUploadAfterStreamsFreed(t *testing.T) {
	s, bob, vc := countedStore(t)
	const n = maxStreams + 1
	data := make([][]byte, n)
	fhs := make([]uint64, n)
	for i := range n {
		data[i] = randomBytes(1 << 20)
		fhs[i] = s.open(t, "bob", fmt.Sprintf("f%d", i), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		writeSeq(t, s, fhs[i], data[i][:384<<10], 0)
	}
	// The first ends: its stream is free for the last, which grows by
	// more than streamMin from here.
	writeSeq(t, s, fhs[0], data[0][384<<10:], 384<<10)
	if err := s.Flush(testCtx(t), fhs[0]); err != nil {
		t.Fatal(err)
	}
	s.release(t, fhs[0])
	for i := 1; i < n; i++ {
		writeSeq(t, s, fhs[i], data[i][384<<10:], 384<<10)
		if err := s.Flush(testCtx(t), fhs[i]); err != nil {
			t.Fatal(err)
		}
		s.release(t, fhs[i])
	}
	for i := range n {
		if got := bob.content(t, fmt.Sprintf("f%d", i)); got != string(data[i]) {
			t.Fatalf("bob's f%d holds %d bytes, want %d", i, len(got), len(data[i]))
		}
	}
	if got := vc.take(); got["STREAM"] != n {
		t.Errorf("requests %v: %d of %d files streamed, want all", got, got["STREAM"], n)
	}
}
