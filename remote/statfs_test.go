package remote

import (
	"testing"
	"time"
)

// TestStatfsCached: statfs(2) of a peer folder asks the peer once per
// AttrTTL (rm -r and find call it for every directory), and again after.
func TestStatfsCached(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, _, vc := countedStoreWith(t, func(o *Options) { o.Now = clock })
	ctx := testCtx(t)
	for range 3 {
		if total, _, _, err := s.Statfs(ctx, "bob"); err != nil || total == 0 {
			t.Fatalf("Statfs: %d, %v", total, err)
		}
	}
	if n := vc.take()["STATFS"]; n != 1 {
		t.Errorf("%d STATFS requests for three statfs within AttrTTL, want 1", n)
	}
	now = now.Add(2 * time.Second) // past the default AttrTTL of 1s
	if _, _, _, err := s.Statfs(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if n := vc.take()["STATFS"]; n != 1 {
		t.Errorf("%d STATFS requests after AttrTTL, want 1", n)
	}
}
