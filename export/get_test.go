package export

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestServerGetFileShrinks(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	p := bigFile(t, dir, "big.bin", size)
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	if got, want := c.roundTrip("GET big.bin"), fmt.Sprintf("GET OK %d", size); got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	c.nc.SetReadDeadline(time.Now().Add(testTimeout))
	first := make([]byte, 1)
	if _, err := io.ReadFull(c.r, first); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	// The server cannot send what it announced: it must close rather
	// than leave the client waiting, or send other bytes.
	n, err := io.Copy(io.Discard, c.r)
	if isTimeout(err) {
		t.Errorf("connection still open after the file shrank: %v", err)
	}
	if n+1 >= size {
		t.Errorf("received all %d bytes of a file truncated to 0", size)
	}
}

func TestServerGetRanges(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(1000, 7)
	if err := os.WriteFile(filepath.Join(dir, "r.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnect(t, addr)
	for _, tc := range []struct {
		req      string
		from, to int
	}{
		{"GET r.bin", 0, 1000},
		{"GET r.bin 10", 0, 10},     // seed form: length from offset 0
		{"GET r.bin 5000", 0, 1000}, // seed form, longer than the file
		{"GET r.bin 100 50", 100, 150},
		{"GET r.bin 990 50", 990, 1000},
		{"GET r.bin 1000 5", 1000, 1000}, // at EOF
		{"GET r.bin 4000 5", 1000, 1000}, // past EOF
		{"GET r.bin 10 0", 10, 10},
	} {
		if got := c.getRange(tc.req); !bytes.Equal(got, data[tc.from:tc.to]) {
			t.Errorf("%s: got %d bytes, want data[%d:%d]", tc.req, len(got), tc.from, tc.to)
		}
	}
	for req, want := range map[string]string{
		"GET .":          `GET FAIL isdir "." is a directory`,
		"GET r.bin x 1":  `GET FAIL invalid offset "x" is not a non-negative integer`,
		"GET r.bin 1 -1": `GET FAIL invalid length "-1" is not a non-negative integer`,
	} {
		if got := c.roundTrip(req); got != want {
			t.Errorf("%s: %q, want %q", req, got, want)
		}
	}
}
