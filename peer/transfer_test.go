package peer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// TestConnPutDelta: PutDelta sends the ranges of the new content, read
// from its source at their offsets, inline or not; the peer's refusal of
// a stale version is a conflict that leaves the connection usable; and a
// malformed delta is refused here, before anything is sent.
func TestConnPutDelta(t *testing.T) {
	ctx := context.Background()
	dir, addr := serve(t, export.Options{})
	old := bytes.Repeat([]byte("0123456789"), 100000)
	if err := os.WriteFile(filepath.Join(dir, "f"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, peer.ClientOptions{Attrs: true})
	f, err := c.Features(ctx)
	if err != nil || !f.Has(peerproto.FeatureDelta) {
		t.Fatalf("FEATURES: %v, %v; want delta", f, err)
	}
	e, err := c.Stat(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	ver := e.Ver
	for _, inline := range []bool{false, true} {
		want := append(bytes.Clone(old), "appended"...)
		copy(want[500000:], "MIDDLE")
		m := peerproto.Put{Name: "f", Async: true, Inline: inline, Ver: ver, Delta: true, NewSize: int64(len(want)),
			Ranges: []peerproto.Range{{Off: 500000, Len: 6}, {Off: int64(len(old)), Len: 8}}}
		pd, err := c.PutDelta(ctx, m, bytes.NewReader(want), nil)
		if err != nil {
			t.Fatalf("inline=%v: %v", inline, err)
		}
		if pd.Size != int64(len(want)) || pd.Ver == "" || pd.Ver == ver {
			t.Fatalf("inline=%v: PUT DONE %+v", inline, pd)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "f")); !bytes.Equal(got, want) {
			t.Fatalf("inline=%v: the file holds %d bytes, not the patched %d", inline, len(got), len(want))
		}
		// The version it applied to is gone.
		_, err = c.PutDelta(ctx, m, bytes.NewReader(want), nil)
		var fe *peerproto.FailError
		if !errors.As(err, &fe) || fe.Code != peerproto.CodeConflict {
			t.Fatalf("inline=%v: delta over the old version again: %v, want a conflict", inline, err)
		}
		old, ver = want, pd.Ver
	}
	// Refused before anything is sent: the ranges do not fit.
	bad := peerproto.Put{Name: "f", Ver: ver, Delta: true, NewSize: 4, Ranges: []peerproto.Range{{Off: 2, Len: 4}}}
	if _, err := c.PutDelta(ctx, bad, bytes.NewReader(make([]byte, 10)), nil); err == nil {
		t.Fatal("a range past the new size was sent")
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("connection after a conflict and a bad delta: %v", err)
	}
}
