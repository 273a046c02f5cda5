package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/peer"
)

// The GET and PUT benchmarks come in pairs under one name, so that
// `benchstat -col /via` puts them side by side with the ratio:
//
//	BenchmarkGet/via=peer/size=1MiB   GET through export.Server and peer.Conn
//	BenchmarkGet/via=tcp/size=1MiB    the same bytes over a plain TCP connection
//
// via=tcp is the loopback floor: one small request, the payload from memory,
// no protocol, no file. PUT has a third variant, via=tcp+fsync, that also
// does the durable write a PUT does on the serving side (temp file, write,
// fsync, rename), so a PUT's cost splits into network, disk and peerfs.
// GET's payload is read by the server from a file (page cache); the client
// side of both writes to io.Discard or reads from memory.

var sizes = []struct {
	name string
	n    int64
}{
	{"4KiB", 4 << 10},
	{"1MiB", 1 << 20},
	{"64MiB", 64 << 20},
}

// payload returns n random (incompressible) bytes.
func payload(tb testing.TB, n int64) []byte {
	tb.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		tb.Fatal(err)
	}
	return p
}

// servePeer starts a peer server exporting dir on 127.0.0.1:0 and returns
// a client connection to it; both are closed when tb ends.
func servePeer(tb testing.TB, dir string) *peer.Conn {
	tb.Helper()
	srv, err := export.NewServer(export.Options{Export: dir, Logger: zerolog.Nop()})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := peer.Dial(ctx, ln.Addr().String(), peer.ClientOptions{})
	if err != nil {
		srv.Close()
		<-errc
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.Close()
		if err := srv.Close(); err != nil {
			tb.Errorf("server Close: %v", err)
		}
		if err := <-errc; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return c
}

// tcpMode selects what the raw TCP server does with a request.
type tcpMode int

const (
	tcpGet      tcpMode = iota // reply with the payload
	tcpPut                     // read the payload into io.Discard, reply one byte
	tcpPutFsync                // write the payload to a temp file, fsync, rename; reply one byte
)

// serveTCP starts a plain TCP server on 127.0.0.1:0 for one connection and
// returns the client side. A request is an 8-byte big-endian length (for
// PUT followed by that many bytes). Everything is stopped when tb ends.
func serveTCP(tb testing.TB, mode tcpMode, data []byte, dir string) net.Conn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		ln.Close()
		if err != nil {
			done <- err
			return
		}
		defer nc.Close()
		done <- tcpServe(nc, mode, data, dir)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		<-done
		tb.Fatal(err)
	}
	_ = nc.(*net.TCPConn).SetNoDelay(true)
	tb.Cleanup(func() {
		nc.Close()
		if err := <-done; err != nil && err != io.EOF {
			tb.Errorf("tcp server: %v", err)
		}
	})
	return nc
}

func tcpServe(nc net.Conn, mode tcpMode, data []byte, dir string) error {
	var hdr [8]byte
	ack := []byte{'k'}
	for {
		if _, err := io.ReadFull(nc, hdr[:]); err != nil {
			return err
		}
		n := int64(binary.BigEndian.Uint64(hdr[:]))
		switch mode {
		case tcpGet:
			if _, err := nc.Write(data[:n]); err != nil {
				return err
			}
			continue
		case tcpPut:
			if _, err := io.CopyN(io.Discard, nc, n); err != nil {
				return err
			}
		case tcpPutFsync:
			if err := tcpStore(nc, n, dir); err != nil {
				return err
			}
		}
		if _, err := nc.Write(ack); err != nil {
			return err
		}
	}
}

// tcpStore does the serving side of a durable PUT without peerfs.
func tcpStore(r io.Reader, n int64, dir string) error {
	f, err := os.CreateTemp(dir, ".put-*")
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, n); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, "tcp.bin"))
}

// tcpGetOnce asks for n bytes and reads them into io.Discard.
func tcpGetOnce(nc net.Conn, n int64) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := nc.Write(hdr[:]); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, nc, n)
	return err
}

// tcpPutOnce sends data and waits for the one-byte ack.
func tcpPutOnce(nc net.Conn, data []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(data)))
	if _, err := nc.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := nc.Write(data); err != nil {
		return err
	}
	_, err := io.ReadFull(nc, hdr[:1])
	return err
}

func BenchmarkGet(b *testing.B) {
	for _, sz := range sizes {
		data := payload(b, sz.n)
		b.Run("via=peer/size="+sz.name, func(b *testing.B) {
			dir := b.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "bench.bin"), data, 0o644); err != nil {
				b.Fatal(err)
			}
			c := servePeer(b, dir)
			ctx := context.Background()
			b.SetBytes(sz.n)
			b.ReportAllocs()
			for b.Loop() {
				n, err := c.Get(ctx, "bench.bin", 0, sz.n, io.Discard, nil)
				if err != nil || n != sz.n {
					b.Fatalf("Get: %d bytes, %v", n, err)
				}
			}
		})
		b.Run("via=tcp/size="+sz.name, func(b *testing.B) {
			nc := serveTCP(b, tcpGet, data, "")
			b.SetBytes(sz.n)
			b.ReportAllocs()
			for b.Loop() {
				if err := tcpGetOnce(nc, sz.n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPut(b *testing.B) {
	for _, sz := range sizes {
		data := payload(b, sz.n)
		b.Run("via=peer/size="+sz.name, func(b *testing.B) {
			c := servePeer(b, b.TempDir())
			ctx := context.Background()
			src := bytes.NewReader(data)
			b.SetBytes(sz.n)
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(data)
				if _, err := c.Put(ctx, "bench.bin", src, sz.n, nil); err != nil {
					b.Fatalf("Put: %v", err)
				}
			}
		})
		b.Run("via=tcp/size="+sz.name, func(b *testing.B) {
			nc := serveTCP(b, tcpPut, nil, "")
			b.SetBytes(sz.n)
			b.ReportAllocs()
			for b.Loop() {
				if err := tcpPutOnce(nc, data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("via=tcp+fsync/size="+sz.name, func(b *testing.B) {
			nc := serveTCP(b, tcpPutFsync, nil, b.TempDir())
			b.SetBytes(sz.n)
			b.ReportAllocs()
			for b.Loop() {
				if err := tcpPutOnce(nc, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLoopback checks that what the benchmarks time moves the right bytes:
// a PUT then a GET through the peer server, and both raw TCP variants.
func TestLoopback(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, sz := range sizes[:2] {
		t.Run(fmt.Sprintf("size=%s", sz.name), func(t *testing.T) {
			data := payload(t, sz.n)
			dir := t.TempDir()
			c := servePeer(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.Put(ctx, "bench.bin", bytes.NewReader(data), sz.n, nil); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "bench.bin")); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after Put the export holds %d bytes (%v), want the %d sent", len(got), err, len(data))
			}
			var buf bytes.Buffer
			if n, err := c.Get(ctx, "bench.bin", 0, sz.n, &buf, nil); err != nil || n != sz.n || !bytes.Equal(buf.Bytes(), data) {
				t.Fatalf("Get: %d bytes, %v; equal %v", n, err, bytes.Equal(buf.Bytes(), data))
			}

			nc := serveTCP(t, tcpGet, data, "")
			if err := tcpGetOnce(nc, sz.n); err != nil {
				t.Fatalf("tcp get: %v", err)
			}
			tdir := t.TempDir()
			nc = serveTCP(t, tcpPutFsync, nil, tdir)
			if err := tcpPutOnce(nc, data); err != nil {
				t.Fatalf("tcp put: %v", err)
			}
			if got, err := os.ReadFile(filepath.Join(tdir, "tcp.bin")); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("tcp put stored %d bytes (%v), want %d", len(got), err, len(data))
			}
		})
	}
}
