package export

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rateTestOptions make a server whose minimum rate, not its IOTimeout,
// cuts slow transfers, within a second.
func rateTestOptions(export string, perSec int64) Options {
	return Options{Export: export, IOTimeout: time.Minute, MinTransferRate: perSec,
		TransferWindow: 300 * time.Millisecond, MaxTransfers: 1}
}

// TestMinTransferRatePut: a client trickling a PUT's payload, a byte well
// within every IOTimeout, is cut once it falls a TransferWindow behind the
// minimum rate: nothing is stored and its transfer slot is free again.
// Plaintext and TLS.
func TestMinTransferRatePut(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[tls], func(t *testing.T) {
			export := t.TempDir()
			writeFile(t, export, "f.txt", "old content")
			opts := rateTestOptions(export, 1000)
			if tls {
				opts.Secure = hostileSecure(t, hostileSecret)
			}
			_, addr := testServe(t, opts)
			dial := testConnect
			if tls {
				dial = rateDialSecure
			}
			c := dial(t, addr)
			c.send("PUT f.txt 1000\n")
			c.expect("PUT OK")
			start := time.Now()
			cut := false
			for time.Since(start) < 10*time.Second {
				if err := c.write([]byte("x")); err != nil {
					cut = true
					break
				}
				time.Sleep(50 * time.Millisecond) // 20 bytes/s
				if rateClosed(c) {
					cut = true
					break
				}
			}
			if !cut {
				t.Fatalf("a PUT trickling 20 bytes/s against a minimum of 1000 was kept for %v", time.Since(start))
			}
			checkAfterFailedPut(t, export, "f.txt", "old content")
			// The slot is free: another client's PUT goes through.
			if r := dial(t, addr).put("g.txt", []byte("hello")); !strings.HasPrefix(r, "PUT DONE 5 ") {
				t.Fatalf("PUT after the cut: %q", r)
			}
		})
	}
}

// TestMinTransferRateKeepsSteady: a client above the minimum rate, which
// pauses for less than TransferWindow, is not cut, however long it takes.
func TestMinTransferRateKeepsSteady(t *testing.T) {
	export := t.TempDir()
	_, addr := testServe(t, rateTestOptions(export, 1000))
	c := testConnect(t, addr)
	const size = 40 << 10
	c.send("PUT f.bin " + strconv.Itoa(size) + "\n")
	c.expect("PUT OK")
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for off := 0; off < size; off += 2 << 10 {
		if err := c.write(data[off : off+2<<10]); err != nil {
			t.Fatalf("cut after %d bytes: %v", off, err)
		}
		time.Sleep(100 * time.Millisecond) // 20 KiB/s, in bursts
	}
	c.expectPrefix("PUT DONE 40960 ")
	if b, _ := os.ReadFile(filepath.Join(export, "f.bin")); !bytes.Equal(b, data) {
		t.Fatalf("stored %d bytes", len(b))
	}
}

// TestMinTransferRateGet: a client that reads a GET's data far below the
// minimum rate is cut, and its transfer slot freed; one that reads at full
// speed gets all of it. (The slow client itself sees the end late: the
// data already in the server's socket buffer still reaches it.)
func TestMinTransferRateGet(t *testing.T) {
	export := t.TempDir()
	const size = 32 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	if err := os.WriteFile(filepath.Join(export, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, export, "small.txt", "small")
	_, addr := testServe(t, rateTestOptions(export, 1<<20))

	slow := rateDialSmallBuffer(t, addr)
	slow.expect("CONNECT OK")
	slow.send("GET big.bin\n")
	slow.expect("GET OK " + strconv.Itoa(size))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4<<10)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond): // about 200 KB/s
			}
			slow.nc.SetReadDeadline(time.Now().Add(testTimeout))
			if _, err := slow.r.Read(buf); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()

	other := testConnect(t, addr)
	start := time.Now()
	for {
		got := other.roundTrip("GET small.txt")
		if got == "GET OK 5" {
			b := make([]byte, 5)
			if _, err := io.ReadFull(other.r, b); err != nil || string(b) != "small" {
				t.Fatalf("GET small.txt: %q, %v", b, err)
			}
			break
		}
		if got != "GET FAIL busy too many transfers (1)" {
			t.Fatalf("GET small.txt: %q", got)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("a GET read at 200 KB/s against a minimum of 1 MiB/s still holds its slot after %v", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// On the same connection: the server ends one request (and frees its
	// slot) before it reads the next, where a new connection's GET could
	// arrive before the slot of small.txt's GET, already read, is freed.
	if b := other.get("big.bin"); !bytes.Equal(b, data) {
		t.Fatalf("fast reader got %d bytes", len(b))
	}
}

// rateClosed reports whether the server has closed c (without waiting).
func rateClosed(c *testClient) bool {
	c.nc.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// rateDialSecure connects as a member of hostileSecret's cluster and
// expects "CONNECT OK".
func rateDialSecure(t *testing.T, addr string) *testClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := hostileSecure(t, hostileSecret).Client(nc, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	c := &testClient{t: t, nc: sc, r: bufio.NewReader(sc)}
	c.expect("CONNECT OK")
	return c
}

// rateDialSmallBuffer connects with a small receive buffer, so that a
// client that reads slowly holds the server back soon.
func rateDialSmallBuffer(t *testing.T, addr string) *testClient {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
		})
		return errors.Join(err, serr)
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &testClient{t: t, nc: nc, r: bufio.NewReaderSize(nc, 4<<10)}
}

// TestMinRate: the deadline arithmetic of the minimum rate.
func TestMinRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	limit := t0.Add(time.Hour)
	r := minRate{perSec: 1000, window: 10 * time.Second}
	if d := r.deadline(limit, 0); !d.Equal(limit) {
		t.Fatalf("before start: %v", d)
	}
	r.start(t0)
	for _, step := range []struct {
		at      time.Duration // since t0
		moved   int64
		k       int64         // bytes the next operation moves
		wantDue time.Duration // deadline of the next operation, since t0
	}{
		{0, 0, 0, 10 * time.Second},                        // one window to start with
		{0, 0, 500, 10*time.Second + 500*time.Millisecond}, // a write of 500 bytes buys their time
		{time.Second, 2000, 0, 11 * time.Second},           // bought 2 s, but at most a window ahead of now
		{5 * time.Second, 1, 0, 11*time.Second + time.Millisecond},
		{9 * time.Second, 1000, 0, 12*time.Second + time.Millisecond},
	} {
		r.moved(step.moved, t0.Add(step.at))
		if d := r.deadline(limit, step.k); !d.Equal(t0.Add(step.wantDue)) {
			t.Errorf("at %v after %d bytes: deadline %v, want %v", step.at, step.moved, d.Sub(t0), step.wantDue)
		}
	}
	if d := r.deadline(t0.Add(time.Second), 0); !d.Equal(t0.Add(time.Second)) {
		t.Errorf("an earlier limit does not win: %v", d.Sub(t0))
	}
	r.stop()
	if d := r.deadline(limit, 0); !d.Equal(limit) {
		t.Errorf("after stop: %v", d.Sub(t0))
	}
	off := minRate{perSec: -1, window: time.Second}
	off.start(t0)
	if d := off.deadline(limit, 1<<20); !d.Equal(limit) {
		t.Errorf("a negative rate is no minimum: %v", d.Sub(t0))
	}
}
