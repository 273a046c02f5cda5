package cache

import (
	"errors"
	"testing"
)

// A parked entry moves out of its key's way, keeps its data and note
// durably (a reboot included), and goes back with Unpark.
func TestParkUnpark(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	key, aside := Key{"bob", "dir/f"}, Key{"\x00unsent", "bob/dir/f"}
	write(t, c, key, "precious")
	h, _, err := c.Acquire(key, -1, "", false)
	if err != nil || h == nil {
		t.Fatal(h, err)
	}
	defer release(t, h)
	if err := h.Park(aside, "refused: no such directory"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Meta(key); ok {
		t.Error("the parked entry still has its key")
	}
	write(t, c, key, "new") // the name is free for a new file
	if err := h.Park(key, "again"); !errors.Is(err, ErrKeyInUse) {
		t.Errorf("Park onto a used key: %v", err)
	}
	c2 := openCacheBoot(t, copyDir(t, dir), rebooted(t)) // only a durable record survives
	m, ok := c2.Meta(aside)
	if !ok || !m.Dirty || m.Parked != "refused: no such directory" || m.Origin != key {
		t.Fatalf("after a reboot: %+v %v", m, ok)
	}
	if got, ok := lookup(t, c2, aside); !ok || got != "precious" {
		t.Errorf("parked content %q %v", got, ok)
	}
	if err := h.Unpark(Key{"bob", "dir/g"}); err != nil {
		t.Fatal(err)
	}
	if m := h.Meta(); m.Parked != "" || m.Origin != (Key{}) || !m.Dirty {
		t.Errorf("after Unpark: %+v", m)
	}
	if got, ok := lookup(t, c, Key{"bob", "dir/g"}); !ok || got != "precious" {
		t.Errorf("unparked content %q %v", got, ok)
	}
	if err := h.Unpark(key); !errors.Is(err, ErrKeyInUse) {
		t.Errorf("Unpark onto a used key: %v", err)
	}
}
