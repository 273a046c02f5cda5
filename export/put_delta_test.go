package export

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerfs/peerfs/internal/testfs"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// deltaLine is the request line of a delta PUT of rs (taken from data,
// the new content) over version ver.
func deltaLine(name, ver string, data []byte, rs []peerproto.Range, opts ...string) (string, []byte) {
	m := peerproto.Put{Name: name, Ver: ver, Delta: true, NewSize: int64(len(data)), Ranges: rs}
	var payload []byte
	for _, r := range rs {
		payload = append(payload, data[r.Off:r.End()]...)
	}
	m.Size = int64(len(payload))
	line := string(m.AppendTo(nil))
	if len(opts) > 0 {
		// Options go before ver=, where the grammar lists them.
		head, tail, _ := strings.Cut(line, " ver=")
		line = head + " " + strings.Join(opts, " ") + " ver=" + tail
	}
	return line, payload
}

// putDelta sends a delta PUT (async, not inline), as a mount's close
// does, and returns the final reply.
func (c *testClient) putDelta(name, ver string, data []byte, rs []peerproto.Range) string {
	c.t.Helper()
	return c.putDeltaWith(name, ver, data, rs, "async")
}

// putDeltaWith is putDelta with the words opts (none: the seed's durable
// PUT) in the request line.
func (c *testClient) putDeltaWith(name, ver string, data []byte, rs []peerproto.Range, opts ...string) string {
	c.t.Helper()
	line, payload := deltaLine(name, ver, data, rs, opts...)
	c.send(line + "\n")
	if r := c.line(); r != "PUT OK" {
		return r
	}
	if err := c.write(payload); err != nil {
		c.t.Fatal(err)
	}
	return c.line()
}

// doneVer returns the version token of a PUT DONE line.
func doneVer(t *testing.T, reply string) string {
	t.Helper()
	m, err := peerproto.ParseReply([]byte(reply), peerproto.VerbPut)
	if err != nil {
		t.Fatalf("reply %q: %v", reply, err)
	}
	pd, ok := m.(peerproto.PutDone)
	if !ok || pd.Ver == "" {
		t.Fatalf("reply %q: want PUT DONE with ver=", reply)
	}
	return pd.Ver
}

// attrsClient connects and turns on attribute words (version tokens).
func attrsClient(t *testing.T, addr string) *testClient {
	t.Helper()
	c := testConnect(t, addr)
	c.send("FEATURES attrs\n")
	c.expectPrefix("FEATURES OK ")
	return c
}

// TestServerPutDelta: a delta PUT's ranges land in a copy of the version
// it names, resized, and that copy replaces the file; the old content is
// copied by reflink where the filesystem shares blocks (XFS here, when
// mkfs.xfs is installed), and by copy elsewhere or when told to
// (noReflink). Each case starts from the last one's version.
func TestServerPutDelta(t *testing.T) {
	for _, fsys := range []struct {
		name      string
		dir       func(t *testing.T) string
		noReflink bool
		want      string // how the old content is copied
	}{
		{"tmp", func(t *testing.T) string { return t.TempDir() }, false, ""}, // whatever the temp dir's filesystem does
		{"xfs", func(t *testing.T) string { return testfs.Reflink(t) }, false, copiedReflink},
		{"xfs-noreflink", func(t *testing.T) string { return testfs.Reflink(t) }, true, copiedCopy},
	} {
		t.Run(fsys.name, func(t *testing.T) {
			dir := fsys.dir(t)
			var logs logBuffer
			_, addr := testServeLog(t, Options{Export: dir, noReflink: fsys.noReflink}, &logs)
			c := attrsClient(t, addr)
			cur := randomBytes(3<<20+123, 7)
			ver := doneVer(t, c.put("big.bin", cur))
			for _, tc := range []struct {
				name   string
				size   int
				ranges []peerproto.Range
			}{
				{"append 4 KiB", len(cur) + 4096, []peerproto.Range{{Off: int64(len(cur)), Len: 4096}}},
				{"overwrite the middle", 0, []peerproto.Range{{Off: 1 << 20, Len: 4096}}},
				{"several ranges", 0, []peerproto.Range{{Off: 0, Len: 1}, {Off: 5000, Len: 70000}, {Off: 2 << 20, Len: 3}}},
				{"truncate", 1<<20 + 17, nil},
				{"grow with a hole, then data", 4 << 20, []peerproto.Range{{Off: 4<<20 - 100, Len: 100}}},
				{"a range larger than a read buffer", 0, []peerproto.Range{{Off: 10, Len: 3 << 20}}},
				{"to empty", 0 - 1, nil},
			} {
				size := tc.size
				switch size {
				case 0:
					size = len(cur)
				case -1:
					size = 0
				}
				want := make([]byte, size)
				copy(want, cur)
				fresh := randomBytes(size, uint64(len(tc.name)))
				for _, r := range tc.ranges {
					copy(want[r.Off:r.End()], fresh[r.Off:r.End()])
				}
				reply := c.putDelta("big.bin", ver, want, tc.ranges)
				if !strings.HasPrefix(reply, fmt.Sprintf("PUT DONE %d ", size)) {
					t.Fatalf("%s: reply %q", tc.name, reply)
				}
				got, err := os.ReadFile(filepath.Join(dir, "big.bin"))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: the file holds %d bytes (%v), not the %d of the old version with the ranges written in", tc.name, len(got), err, len(want))
				}
				nv := doneVer(t, reply)
				if nv == ver {
					t.Fatalf("%s: the new content kept the version token %s", tc.name, ver)
				}
				if e := c.stat("big.bin"); e.Ver != nv {
					t.Fatalf("%s: STAT says version %s, PUT DONE %s", tc.name, e.Ver, nv)
				}
				cur, ver = want, nv
			}
			if len(tempFiles(t, dir)) != 0 {
				t.Errorf("temporary files left: %v", tempFiles(t, dir))
			}
			if fsys.want != "" {
				logs.mu.Lock()
				log := logs.buf.String()
				logs.mu.Unlock()
				if !strings.Contains(log, `"result":"`+fsys.want+`"`) {
					t.Errorf("no delta PUT's log line says %q: the old content was not copied that way", fsys.want)
				}
				other := copiedCopy
				if fsys.want == copiedCopy {
					other = copiedReflink
				}
				if strings.Contains(log, `"result":"`+other+`"`) {
					t.Errorf("a delta PUT's log line says %q, want only %q", other, fsys.want)
				}
			}
		})
	}
}

// TestServerPutDeltaInline: a delta PUT can be inline, as any PUT: one
// round trip, and a refusal still reads its payload.
func TestServerPutDeltaInline(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	c := attrsClient(t, addr)
	old := randomBytes(100000, 1)
	ver := doneVer(t, c.put("f", old))
	want := append(bytes.Clone(old), "tail"...)
	line, payload := deltaLine("f", ver, want, []peerproto.Range{{Off: 100000, Len: 4}}, "async", "inline")
	c.send(line + "\n" + string(payload))
	nv := doneVer(t, c.expectPrefix("PUT DONE 100004 "))
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes, want the old with a tail", len(got))
	}
	// The old version is gone: refused, the payload (which looks like a
	// request) read and dropped.
	line, _ = deltaLine("f", ver, want, []peerproto.Range{{Off: 0, Len: 5}}, "inline")
	c.send(line + "\nPING\n")
	c.expectPrefix("PUT FAIL conflict ")
	if r := c.roundTrip("PING"); r != "PONG" {
		t.Errorf("after a refused inline delta: %q, want PONG (in step)", r)
	}
	if e := c.stat("f"); e.Ver != nv {
		t.Errorf("after a refused delta the version is %s, want %s", e.Ver, nv)
	}
}

// TestServerPutDeltaConditions: a delta applies to the version it names
// and no other; the refusals come before PUT OK (nothing is sent for
// nothing) or, for a version that changed while the payload came, after
// it; and the old file is left whole.
func TestServerPutDeltaConditions(t *testing.T) {
	dir := t.TempDir()
	_, addr := testServe(t, Options{Export: dir})
	c := attrsClient(t, addr)
	old := randomBytes(50000, 2)
	ver := doneVer(t, c.put("f", old))
	want := append(bytes.Clone(old), "more"...)
	rs := []peerproto.Range{{Off: 50000, Len: 4}}

	// Another version: refused before PUT OK.
	line, _ := deltaLine("f", "00ff00ff00ff00ff", want, rs)
	if r := c.roundTrip(line); !strings.HasPrefix(r, "PUT FAIL conflict ") {
		t.Errorf("delta over another version: %q", r)
	}
	// No file: refused too (a delta has nothing to apply to).
	line, _ = deltaLine("nothere", ver, want, rs)
	if r := c.roundTrip(line); !strings.HasPrefix(r, "PUT FAIL conflict ") {
		t.Errorf("delta to a missing file: %q", r)
	}
	// A directory, or a FIFO: nothing to apply to either.
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	line, _ = deltaLine("d", ver, want, rs)
	if r := c.roundTrip(line); !strings.HasPrefix(r, "PUT FAIL isdir ") {
		t.Errorf("delta to a directory: %q", r)
	}
	// Changed after PUT OK, while the payload came: refused after it,
	// and the other writer's file stays.
	line, payload := deltaLine("f", ver, want, rs)
	c.send(line + "\n")
	c.expect("PUT OK")
	writeFile(t, dir, "f", "someone else's")
	if err := c.write(payload); err != nil {
		t.Fatal(err)
	}
	if r := c.line(); !strings.HasPrefix(r, "PUT FAIL conflict ") {
		t.Errorf("delta whose version changed meanwhile: %q", r)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "someone else's" {
		t.Errorf("after a refused delta the file holds %q", shortLine(got))
	}
	checkAfterFailedPut(t, dir, "f", "someone else's")
}

// TestServerPutDeltaBounds: ranges past the new size, out of order, not
// adding up to the payload, or without ver= are malformed, refused as
// such, and the connection stays in step.
func TestServerPutDeltaBounds(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "0123456789")
	_, addr := testServe(t, Options{Export: dir})
	c := attrsClient(t, addr)
	ver := c.stat("f").Ver
	for _, req := range []string{
		"PUT f 5 ver=" + ver + " delta=4 ranges=0:5",
		"PUT f 2 ver=" + ver + " delta=10 ranges=5:1,0:1",
		"PUT f 3 ver=" + ver + " delta=10 ranges=0:2",
		"PUT f 2 delta=10 ranges=0:2",
		"PUT f 2 ver=" + ver + " ranges=0:2",
		"PUT f 1 ver=" + ver + " delta=1125899906842625 ranges=0:1",
	} {
		if r := c.roundTrip(req); !strings.HasPrefix(r, "PUT FAIL invalid ") {
			t.Errorf("%s: %q, want PUT FAIL invalid", req, r)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "0123456789" {
		t.Errorf("after malformed deltas the file holds %q", got)
	}
	if r := c.roundTrip("PING"); r != "PONG" {
		t.Errorf("after malformed deltas: %q, want PONG (in step)", r)
	}
}

// TestServerPutDeltaCut: a delta whose payload is cut short stores
// nothing: the old file is whole, the temporary copy gone.
func TestServerPutDeltaCut(t *testing.T) {
	for _, fsys := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"tmp", func(t *testing.T) string { return t.TempDir() }},
		{"xfs", func(t *testing.T) string { return testfs.Reflink(t) }},
	} {
		t.Run(fsys.name, func(t *testing.T) {
			dir := fsys.dir(t)
			old := strings.Repeat("old content ", 100000)
			writeFile(t, dir, "f", old)
			_, addr := testServe(t, Options{Export: dir})
			c := attrsClient(t, addr)
			ver := c.stat("f").Ver
			c.send(fmt.Sprintf("PUT f 1000 ver=%s delta=%d ranges=600000:1000\n", ver, len(old)))
			c.expect("PUT OK")
			c.send(strings.Repeat("x", 500))
			eventually(t, "the temporary copy", func() bool { return len(tempFiles(t, dir)) == 1 })
			c.nc.Close()
			checkAfterFailedPut(t, dir, "f", old)
		})
	}
}

// TestServerPutDeltaHardLinks: on a posix connection, a delta to a file
// with other hard links changes that file in place, so every name shows
// the new content and the inode stays, as a local write would.
func TestServerPutDeltaHardLinks(t *testing.T) {
	dir := t.TempDir()
	old := strings.Repeat("a", 200000)
	writeFile(t, dir, "f", old)
	if err := os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	var before unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "f"), &before); err != nil {
		t.Fatal(err)
	}
	_, addr := testServe(t, Options{Export: dir})
	c := testConnectPosix(t, addr)
	ver := c.stat("f").Ver
	want := []byte(old[:150000])
	copy(want[1000:], "BBBB")
	want = append(want[:150000:150000], "tail"...)
	reply := c.putDelta("f", ver, want, []peerproto.Range{{Off: 1000, Len: 4}, {Off: 150000, Len: 4}})
	nv := doneVer(t, reply)
	for _, name := range []string{"f", "g"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s holds %d bytes (%v), want the %d of the patched content", name, len(got), err, len(want))
		}
	}
	var after unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "g"), &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino != before.Ino || after.Nlink != 2 {
		t.Errorf("inode %d with %d links after the delta, want %d with 2", after.Ino, after.Nlink, before.Ino)
	}
	// The old version is gone for good.
	if r := c.putDelta("f", ver, want, []peerproto.Range{{Off: 0, Len: 1}}); !strings.HasPrefix(r, "PUT FAIL conflict ") {
		t.Errorf("second delta from the old version: %q", r)
	}
	if e := c.stat("g"); e.Ver != nv {
		t.Errorf("the other name's version is %s, want %s", e.Ver, nv)
	}
	if len(tempFiles(t, dir)) != 0 {
		t.Errorf("temporary files left: %v", tempFiles(t, dir))
	}
}
