package export

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerSumByHand: SUM as a person with nc speaks it: the size and
// SHA-256 of a file; refusals for a directory, a missing file and a path
// out of the export, the connection in step after each.
func TestServerSumByHand(t *testing.T) {
	s, addr := testServe(t, Options{})
	writeFile(t, s.opts.Export, "notes.txt", "hello world\n")
	if err := os.Mkdir(filepath.Join(s.opts.Export, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := testConnect(t, addr)
	if r := c.roundTrip("FEATURES"); !strings.Contains(r, " sum") {
		t.Fatalf("FEATURES: %q, want sum", r)
	}
	want := fmt.Sprintf("SUM OK 12 %x", sha256.Sum256([]byte("hello world\n")))
	if r := c.roundTrip("SUM notes.txt"); r != want {
		t.Fatalf("SUM: %q, want %q", r, want)
	}
	for _, req := range []string{"SUM d", "SUM missing", "SUM ../x", "SUM"} {
		if r := c.roundTrip(req); !strings.HasPrefix(r, "SUM FAIL ") {
			t.Errorf("%s: %q, want a refusal", req, r)
		}
	}
	if r := c.roundTrip("PING"); r != "PONG" {
		t.Fatalf("after the refusals: %q", r)
	}
}
