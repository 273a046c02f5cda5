package remote

import (
	"os"
	"testing"
)

// After "write a; mv a b; write a", the next FSYNC must reach b's data:
// with names it must name b (or sync everything).
func TestFsyncNamesFollowRename(t *testing.T) {
	s, _, _ := countedStore(t)
	ctx := testCtx(t)
	put := func(name, data string) {
		fh := s.open(t, "bob", name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		s.write(t, fh, data, 0)
		if err := s.Flush(ctx, fh); err != nil {
			t.Fatal(err)
		}
		s.release(t, fh)
	}
	put("a", "first")
	if err := s.Rename(ctx, "bob", "a", "b"); err != nil {
		t.Fatal(err)
	}
	put("a", "second")
	p, _ := s.peer("bob")
	p.mu.Lock()
	unsynced, names := p.unsynced, p.unsyncedNames
	p.mu.Unlock()
	t.Logf("unsynced=%v names=%v", unsynced, names)
	if unsynced && names != nil && !names["b"] {
		t.Fatalf("the next FSYNC names %v: b's bytes (uploaded as a) are never fsynced", names)
	}
}
