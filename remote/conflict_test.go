package remote

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// A conditional upload refused because the peer's file changed, when the
// peer's new version is byte for byte what this writer uploads (its own
// earlier attempt, stored after it gave up on a stalled peer), is no
// conflict: no copy, no error.
func TestConflictWithSameContentIsNone(t *testing.T) {
	s, bob, _ := countedStore(t)
	ctx := testCtx(t)
	bob.writeFile(t, "f", []byte("v1"), 0o644)
	if _, err := s.Stat(ctx, "bob", "f"); err != nil {
		t.Fatal(err)
	}
	fh := s.open(t, "bob", "f", os.O_WRONLY|os.O_TRUNC, 0)
	s.write(t, fh, "version two", 0)
	time.Sleep(10 * time.Millisecond) // a new mtime
	bob.writeFile(t, "f", []byte("version two"), 0o644)
	if err := s.Flush(ctx, fh); err != nil {
		t.Errorf("Flush after the peer got the same bytes: %v, want success", err)
	}
	s.release(t, fh)
	des, err := os.ReadDir(bob.export)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || bob.content(t, "f") != "version two" {
		t.Errorf("export holds %d entries (f = %q); want f alone, with the new text", len(des), bob.content(t, "f"))
	}
}

// An upload that failed may still have been stored by the peer (the
// answer was lost, or a stalled peer ran again). If the writer changed the
// file meanwhile, the next upload finds the peer's file changed, but to
// the content of that failed attempt: its own version, which it replaces
// without a conflict copy. A retry that fails without reaching the peer
// in between does not make it forget that version.
func TestConflictWithOwnFailedAttemptIsNone(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	ctx := testCtx(t)
	fh := loseTwoAttempts(t, s, bob)

	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	if err := s.Flush(ctx, fh); err != nil {
		t.Errorf("Flush after the peer stored the failed attempt: %v, want success", err)
	}
	s.release(t, fh)
	des, err := os.ReadDir(bob.export)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || bob.content(t, "f") != "attempt TWO" {
		t.Errorf("export holds %d entries (f = %q); want f alone, with the last text", len(des), bob.content(t, "f"))
	}
}

// TestConflictFoundByTheRoundReachesTheWriter: a writer's copy that a
// SYNC turn (not its own close) found to conflict goes to a conflict copy;
// the writer still hears of it, at its own fsync and close (ESTALE).
func TestConflictFoundByTheRoundReachesTheWriter(t *testing.T) {
	bob := startPeer(t, t.TempDir())
	s := newStore(t, t.TempDir())
	s.SetPeers([]peerproto.PeerAddr{{Name: "bob", Addr: bob.addr}})
	bob.writeFile(t, "doc.txt", []byte("original"), 0o644)
	fh := s.open(t, "bob", "doc.txt", os.O_WRONLY|os.O_TRUNC, 0)
	// Another writer replaces the file; then a round uploads this copy,
	// still empty, before its writer has written.
	bob.writeFile(t, "doc.txt", []byte("theirs, a longer one"), 0o644)
	if err := s.FlushAll(testCtx(t)); errnoOf(err) != syscall.ESTALE {
		t.Fatalf("the turn's upload: %v, want a conflict", err)
	}
	s.write(t, fh, "mine", 0)
	if err := s.Fsync(testCtx(t), fh); errnoOf(err) != syscall.ESTALE {
		t.Errorf("the writer's fsync: %v, want ESTALE", err)
	}
	if err := s.Flush(testCtx(t), fh); errnoOf(err) != syscall.ESTALE {
		t.Errorf("the writer's close: %v, want ESTALE", err)
	}
	s.release(t, fh)
	if got := bob.content(t, "doc.txt"); got != "theirs, a longer one" {
		t.Errorf("the other writer's file: %q", got)
	}
}

func TestVersionEncoding(t *testing.T) {
	v, ok := digestOf(bytes.NewReader([]byte("hello")), 5)
	if !ok {
		t.Fatal("versionOf failed")
	}
	if got := parseDigest(v.String()); got == nil || *got != v {
		t.Errorf("parseDigest(%q) = %v, want %v", v.String(), got, v)
	}
	for _, bad := range []string{"", "5", "x:00", "5:zz", "5:abcd", "-1:" + strings.Repeat("0", 64)} {
		if got := parseDigest(bad); got != nil {
			t.Errorf("parseDigest(%q) = %v, want nil", bad, got)
		}
	}
}
