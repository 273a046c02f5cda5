package cache

import (
	"fmt"
	"strconv"
	"testing"
)

// BenchmarkCreateSmall runs the mount's sequence for a new 4 KiB file
// (remote.Store.Open with O_CREAT, one write, upload, close): the cost per
// created file that small_create pays in the cache. "Acquire" is the
// sequence of separate calls, "Create" the same through Cache.Create.
func BenchmarkCreateSmall(b *testing.B) {
	data := make([]byte, 4096)
	open := map[string]func(c *Cache, key Key) (*Handle, error){
		"Acquire": func(c *Cache, key Key) (*Handle, error) {
			h, _, err := c.Acquire(key, -1, "", true)
			if err != nil {
				return nil, err
			}
			if err := h.Truncate(0); err != nil {
				return nil, err
			}
			return h, h.SetMode(0o644)
		},
		"Create": func(c *Cache, key Key) (*Handle, error) {
			return c.Create(key, 0o644, "")
		},
	}
	for _, name := range []string{"Acquire", "Create"} {
		b.Run(name, func(b *testing.B) {
			c := newCache(b, 0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				key := Key{"bob", fmt.Sprintf("dir/file-%d", i)}
				i++
				h, err := open[name](c, key)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := h.WriteAt(data, 0); err != nil {
					b.Fatal(err)
				}
				if ok, err := h.MarkClean(h.Generation(), 4096, strconv.Itoa(i)); !ok || err != nil {
					b.Fatal(ok, err)
				}
				if err := h.Release(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
