package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServerPutStreamByHand: a streamed PUT as a person with nc speaks it:
// PUT OK, DATA chunks, END, PUT DONE; the file replaces the old one only
// at END, keeping its mode. An END whose size is not the DATA lines'
// total is refused and the connection stays in step; a streamed PUT
// with inline or delta= is malformed; so is any line but DATA, END or
// ABORT inside a stream, which closes the connection and stores nothing.
func TestServerPutStreamByHand(t *testing.T) {
	s, addr := testServe(t, Options{})
	dir := s.opts.Export
	path := writeFile(t, dir, "notes.txt", "old")
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	c := testConnect(t, addr)
	if r := c.roundTrip("FEATURES"); !strings.Contains(r, " stream") {
		t.Fatalf("FEATURES: %q, want stream", r)
	}
	c.send("PUT notes.txt 0 stream\n")
	c.expect("PUT OK")
	c.send("DATA 6\nhello ")
	c.send("data 6\nworld\n")
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("before END the file holds %q", got)
	}
	c.send("END 12\n")
	c.expectPrefix("PUT DONE 12 ")
	got, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if string(got) != "hello world\n" || st.Mode().Perm() != 0o600 {
		t.Fatalf("after END: %q, mode %v", got, st.Mode().Perm())
	}

	c.send("PUT notes.txt 0 stream\n")
	c.expect("PUT OK")
	c.send("DATA 3\nabc")
	c.send("END 4\n")
	c.expectPrefix("PUT FAIL invalid ")
	if r := c.roundTrip("PING"); r != "PONG" {
		t.Fatalf("after a refused END: %q", r)
	}
	if got, _ := os.ReadFile(path); string(got) != "hello world\n" {
		t.Fatalf("after a refused END: %q", got)
	}

	if r := c.roundTrip("PUT notes.txt 0 stream delta=5 ver=abc"); !strings.HasPrefix(r, "PUT FAIL invalid") {
		t.Fatalf("delta stream: %q", r)
	}
	// A malformed inline PUT closes the connection: its payload's size
	// is unknown.
	c2 := testConnect(t, addr)
	if r := c2.roundTrip("PUT notes.txt 3 inline stream"); !strings.HasPrefix(r, "PUT FAIL invalid") {
		t.Fatalf("inline stream: %q", r)
	}
	c2.expectEOF()

	c.send("PUT other 0 stream\n")
	c.expect("PUT OK")
	c.send("DATA 2\nab")
	c.send("STAT notes.txt\n")
	c.expectEOF()
	eventually(t, "the temporary file removed", func() bool { return len(tempFiles(t, dir)) == 0 })
	if _, err := os.Stat(filepath.Join(dir, "other")); err == nil {
		t.Fatal("a stream cut by a malformed line stored its file")
	}

	// A chunk too large for a DATA line is malformed too.
	c = testConnect(t, addr)
	c.send("PUT other 0 stream\n")
	c.expect("PUT OK")
	c.send("DATA 999999999999\n")
	c.expectEOF()
}

// TestServerPutStreamTrickle: a stream is one transfer for the minimum
// rate: a client that sends a byte per chunk, each well within the I/O
// timeout, is cut once its window is spent, and its temporary file goes.
func TestServerPutStreamTrickle(t *testing.T) {
	s, addr := testServe(t, Options{MinTransferRate: 1 << 20, TransferWindow: 300 * time.Millisecond})
	c := testConnect(t, addr)
	c.send("PUT slow 0 stream\n")
	c.expect("PUT OK")
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		if err := c.write([]byte("DATA 1\nx")); err != nil {
			break // cut
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.expectEOF()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a trickling stream was cut after %v, want within about the 300ms window", took)
	}
	eventually(t, "the temporary file removed", func() bool { return len(tempFiles(t, s.opts.Export)) == 0 })
}
