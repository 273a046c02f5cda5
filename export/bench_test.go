package export

// The serving side's per-request cost, over real loopback TCP with TLS
// (as a mount talks to a peer) and without. Client and server share the
// process, so ns/op is the whole round trip; to count the server's
// syscalls per request, run the test binary under `strace -c -f` with two
// -test.benchtime=Nx values and divide the difference (bench/README).

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/secure"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// benchServe starts a server exporting dir and returns a connection to
// it, TLS if tls is set; everything is stopped when b ends.
func benchServe(b *testing.B, dir string, tls bool) *peer.Conn {
	b.Helper()
	var sc *secure.Config
	if tls {
		var err error
		if sc, err = secure.New([]byte("peer-benchmark-cluster-secret-0123")); err != nil {
			b.Fatal(err)
		}
	}
	return benchServeOpts(b, Options{Export: dir, Secure: sc})
}

// benchServeOpts is benchServe with the server's options given.
func benchServeOpts(b *testing.B, opts Options) *peer.Conn {
	b.Helper()
	sc := opts.Secure
	opts.Logger = zerolog.Nop()
	s, err := NewServer(opts)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := peer.Dial(ctx, ln.Addr().String(), peer.ClientOptions{Secure: sc, Attrs: true})
	if err != nil {
		s.Close()
		<-errc
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		if err := s.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
		if err := <-errc; err != nil {
			b.Errorf("Serve: %v", err)
		}
	})
	return c
}

// benchModes runs fn over TLS and over plain TCP.
func benchModes(b *testing.B, fn func(b *testing.B, tls bool)) {
	b.Run("tls", func(b *testing.B) { fn(b, true) })
	b.Run("plain", func(b *testing.B) { fn(b, false) })
}

func benchRandom(b *testing.B, n int) []byte {
	b.Helper()
	p := make([]byte, n)
	if _, err := crand.Read(p); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkServeGetRandom4KiB: 4 KiB GETs at random aligned offsets of a
// 16 MiB file in a subdirectory, as fio's QD1 random reads through a mount.
func BenchmarkServeGetRandom4KiB(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) {
		const size, block = 16 << 20, 4 << 10
		dir := b.TempDir()
		benchWrite(b, dir, "d/data.bin", benchRandom(b, size))
		c := benchServe(b, dir, tls)
		ctx := context.Background()
		buf := make([]byte, block)
		rnd := rand.New(rand.NewPCG(1, 2))
		b.SetBytes(block)
		b.ReportAllocs()
		for b.Loop() {
			off := rnd.Int64N(size/block) * block
			if n, err := c.ReadAt(ctx, "d/data.bin", buf, off); err != nil || n != block {
				b.Fatalf("ReadAt: %d, %v", n, err)
			}
		}
	})
}

// BenchmarkServeGet64MiB: whole-file GETs of 64 MiB.
func BenchmarkServeGet64MiB(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) {
		const size = 64 << 20
		dir := b.TempDir()
		benchWrite(b, dir, "big.bin", benchRandom(b, size))
		c := benchServe(b, dir, tls)
		ctx := context.Background()
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if n, err := c.Get(ctx, "big.bin", 0, -1, io.Discard, nil); err != nil || n != size {
				b.Fatalf("Get: %d, %v", n, err)
			}
		}
	})
}

// BenchmarkServePut64MiB: async PUTs of 64 MiB over one file.
func BenchmarkServePut64MiB(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) {
		const size = 64 << 20
		data := benchRandom(b, size)
		c := benchServe(b, b.TempDir(), tls)
		ctx := context.Background()
		src := bytes.NewReader(data)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			src.Reset(data)
			if _, err := c.PutWith(ctx, peerproto.Put{Name: "big.bin", Size: size, Async: true}, src, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkServePutStream64MiB is BenchmarkServePut64MiB as a streamed
// PUT in 1 MiB DATA chunks, as a mount streams a file while it is
// written: the framing's cost against the whole PUT's.
func BenchmarkServePutStream64MiB(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) {
		const size = 64 << 20
		data := benchRandom(b, size)
		c := benchServe(b, b.TempDir(), tls)
		ctx := context.Background()
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			ps, err := c.StartPut(ctx, peerproto.Put{Name: "big.bin", Async: true})
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < size; off += 1 << 20 {
				if err := ps.Write(ctx, data[off:off+1<<20]); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := ps.End(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkServeCreate4KiB: what a mount sends for each small file a
// program creates: an async PUT of a new name in a directory, then a
// SETATTR of its mtime.
func BenchmarkServeCreate4KiB(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) { benchCreate(b, tls, false) })
}

// BenchmarkServeCreate4KiBInline is BenchmarkServeCreate4KiB with the
// PUT inline: one round trip fewer.
func BenchmarkServeCreate4KiBInline(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) { benchCreate(b, tls, true) })
}

func benchCreate(b *testing.B, tls, inline bool) {
	data := benchRandom(b, 4<<10)
	dir := b.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		b.Fatal(err)
	}
	c := benchServe(b, dir, tls)
	ctx := context.Background()
	src := bytes.NewReader(data)
	mtime := time.Now().UnixNano()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		name := "d/f" + strconv.Itoa(i)
		src.Reset(data)
		m := peerproto.Put{Name: name, Size: int64(len(data)), Async: true, Inline: inline, Base: peerproto.BaseNone}
		if _, err := c.PutWith(ctx, m, src, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Setattr(ctx, peerproto.Setattr{Name: name, HasMtime: true, Mtime: mtime}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeDelete: DELETE of small files in a directory, as rm -rf
// through a mount.
func BenchmarkServeDelete(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) {
		dir := b.TempDir()
		sub := filepath.Join(dir, "d")
		if err := os.Mkdir(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		c := benchServe(b, dir, tls)
		ctx := context.Background()
		// Files are made in batches outside the timer, so any b.N works.
		const batch = 1000
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%batch == 0 {
				b.StopTimer()
				for k := i; k < i+batch; k++ {
					if err := os.WriteFile(filepath.Join(sub, "f"+strconv.Itoa(k)), nil, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			if err := c.Delete(ctx, "d/f"+strconv.Itoa(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// benchWrite writes a file under dir, making its directories.
func benchWrite(b *testing.B, dir, name string, data []byte) {
	b.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkServeDeltaAppend: appending 4 KiB to a large file by a delta
// PUT, as a mount does when a program appends to a log, on this
// filesystem (no reflinks on ext4): applied to the file in place behind
// an undo record (put_undo.go), against copying the old version first
// ("copy": in place turned off). Page cache warm; plain TCP.
func BenchmarkServeDeltaAppend(b *testing.B) {
	for _, size := range []int{8 << 20, 64 << 20} {
		for _, inPlace := range []bool{true, false} {
			name := fmt.Sprintf("%dMiB/copy", size>>20)
			least := int64(-1)
			if inPlace {
				name, least = fmt.Sprintf("%dMiB/in-place", size>>20), 1
			}
			b.Run(name, func(b *testing.B) {
				dir := b.TempDir()
				benchWrite(b, dir, "log", benchRandom(b, size))
				c := benchServeOpts(b, Options{Export: dir, noReflink: true, undoMinSize: least})
				ctx := context.Background()
				add := benchRandom(b, 4096)
				b.ReportAllocs()
				for b.Loop() {
					e, err := c.Stat(ctx, "log")
					if err != nil {
						b.Fatal(err)
					}
					m := peerproto.Put{Name: "log", Async: true, Ver: e.Ver, Delta: true, NewSize: e.Size + 4096,
						Ranges: []peerproto.Range{{Off: e.Size, Len: 4096}}}
					if _, err := c.PutDelta(ctx, m, offsetReader{add, e.Size}, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// offsetReader shows b at offset off of a file (for PutDelta, which reads
// a range's bytes at the range's offset).
type offsetReader struct {
	b   []byte
	off int64
}

func (r offsetReader) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, r.b[off-r.off:]), nil
}

// BenchmarkServeEditorSave: an editor's save through a mount, as the
// peer serves it: the temporary file's PUT with its FSYNC behind it (one
// round trip), then the RENAME over the document, while another client
// keeps changing the same filesystem (it creates and removes files in a
// directory of its own). Run it with TMPDIR on the filesystem to measure
// (a journalled ext4 for the journal's commits, counted in
// /proc/fs/jbd2/*/info; the default temporary directory may have none).
func BenchmarkServeEditorSave(b *testing.B) {
	benchModes(b, func(b *testing.B, tls bool) {
		data := benchRandom(b, 4<<10)
		dir := b.TempDir()
		for _, d := range []string{"notes", "other"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		c := benchServe(b, dir, tls)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := filepath.Join(dir, "other", "f"+strconv.Itoa(i%64))
				os.Remove(p)
				if f, err := os.Create(p); err == nil {
					f.Close()
				}
				time.Sleep(50 * time.Microsecond)
			}
		}()
		b.Cleanup(func() { close(stop); <-done })
		src := bytes.NewReader(data)
		const tmp, doc = "notes/.todo.txt.swp", "notes/todo.txt"
		b.ReportAllocs()
		save := func() error {
			ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
			defer cancel()
			src.Reset(data)
			m := peerproto.Put{Name: tmp, Size: int64(len(data)), Async: true, Inline: true, Base: peerproto.BaseNone}
			_, synced, err := c.PutFsync(ctx, m, src, []string{tmp})
			if err != nil {
				return err
			}
			if !synced {
				return fmt.Errorf("PUT of %s: its FSYNC did not run", tmp)
			}
			return c.Rename(ctx, tmp, doc)
		}
		for b.Loop() {
			if err := save(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWatcherDirEvents: what a directory made in a watched one
// (tar x, git checkout, mkdir -p on the peer) costs the watcher, which
// drops whatever it watched at that path, while it watches many others.
func BenchmarkWatcherDirEvents(b *testing.B) {
	for _, n := range []int{1000, 50000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			w := &watcher{
				dirs: map[string]*watchDir{}, wds: map[int32]*watchDir{}, below: map[string]int{},
				pending: map[string]struct{}{}, gone: map[*eventConn][]string{},
				closed: true, // no inotify descriptor: nothing to remove
			}
			for i := range n {
				d := &watchDir{wd: int32(i + 1), path: fmt.Sprintf("d%d/e%d", i%100, i), by: map[*eventConn]struct{}{}}
				w.watchLocked(d)
				w.wds[d.wd] = d
			}
			top := &watchDir{wd: int32(n + 1), path: "new", by: map[*eventConn]struct{}{}}
			w.watchLocked(top)
			w.wds[top.wd] = top
			i := 0
			for b.Loop() {
				i++
				w.noteLocked(top.wd, unix.IN_CREATE|unix.IN_ISDIR, "d"+strconv.Itoa(i))
				if len(w.pending) > 1024 {
					clear(w.pending)
				}
			}
		})
	}
}
