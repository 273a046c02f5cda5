package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"bazil.org/fuse"
	bfs "bazil.org/fuse/fs"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger logs through t at info level, or debug with PEERFS_FUSE_DEBUG=1.
func testLogger(t *testing.T) zerolog.Logger {
	level := zerolog.InfoLevel
	if os.Getenv("PEERFS_FUSE_DEBUG") != "" {
		level = zerolog.DebugLevel
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(level)
}

// newTestFS returns a filesys over a localStore with peers alice and bob,
// for driving nodes directly, restic style (no kernel involved).
func newTestFS(t *testing.T) (*filesys, *localStore) {
	t.Helper()
	store := newLocalStore(t.TempDir(), "alice", "bob")
	f := newFilesys(store, Options{}, testLogger(t))
	return f, store
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lookup(t *testing.T, parent bfs.NodeRequestLookuper, name string) (bfs.Node, error) {
	t.Helper()
	resp := &fuse.LookupResponse{}
	n, err := parent.Lookup(context.Background(), &fuse.LookupRequest{Name: name}, resp)
	if err == nil && resp.EntryValid != time.Second {
		t.Errorf("lookup %q: EntryValid = %v, want 1s", name, resp.EntryValid)
	}
	return n, err
}

func mustLookup(t *testing.T, parent bfs.NodeRequestLookuper, name string) bfs.Node {
	t.Helper()
	n, err := lookup(t, parent, name)
	if err != nil {
		t.Fatalf("lookup %q: %v", name, err)
	}
	return n
}

func attr(t *testing.T, n bfs.Node) fuse.Attr {
	t.Helper()
	var a fuse.Attr
	if err := n.Attr(context.Background(), &a); err != nil {
		t.Fatalf("attr: %v", err)
	}
	return a
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if err != fuse.Errno(want) {
		t.Errorf("%s: error %#v, want bare fuse.Errno(%v)", what, err, want)
	}
}
