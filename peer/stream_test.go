package peer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// temps lists the temporary files left in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), jail.TempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// waitNoTemps waits until the peer has removed its temporary files in dir
// (after a connection is cut, the server notices on its own time).
func waitNoTemps(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(temps(t, dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("temporary files left: %v", temps(t, dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConnPutStream: a streamed PUT's chunks (one of them over a DATA
// line's limit, split here) land in a temporary file, invisible under
// the name until End stores them, with a version token, as any PUT.
func TestConnPutStream(t *testing.T) {
	ctx := context.Background()
	dir, addr := serve(t, export.Options{})
	c := dial(t, addr, peer.ClientOptions{Attrs: true})
	want := make([]byte, peerproto.MaxChunk+3<<20)
	rand.Read(want)
	ps, err := c.StartPut(ctx, peerproto.Put{Name: "big", Async: true, Base: peerproto.BaseNone})
	if err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{want[:1000], want[1000 : 1<<20], want[1<<20:]}
	for i, p := range parts {
		if err := ps.Write(ctx, p); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "big")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("after chunk %d the name exists (%v): a stream must be invisible until END", i, err)
		}
	}
	if len(temps(t, dir)) != 1 {
		t.Fatalf("temporary files during the stream: %v, want one", temps(t, dir))
	}
	pd, err := ps.End(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pd.Size != int64(len(want)) || pd.Ver == "" || ps.Sent() != int64(len(want)) {
		t.Fatalf("PUT DONE %+v, sent %d; want %d bytes and a version", pd, ps.Sent(), len(want))
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "big")); !bytes.Equal(got, want) {
		t.Fatalf("stored %d bytes, not the %d streamed", len(got), len(want))
	}
	if tmp := temps(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files after END: %v", tmp)
	}
	e, err := c.Stat(ctx, "big")
	if err != nil || e.Ver != pd.Ver {
		t.Fatalf("STAT after the stream: %+v, %v; want version %s", e, err, pd.Ver)
	}

	// An empty stream stores an empty file; conditional on the version.
	ps, err = c.StartPut(ctx, peerproto.Put{Name: "big", Async: true, Ver: pd.Ver})
	if err != nil {
		t.Fatal(err)
	}
	if pd2, err := ps.End(ctx); err != nil || pd2.Size != 0 {
		t.Fatalf("empty stream: %+v, %v", pd2, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "big")); err != nil || st.Size() != 0 {
		t.Fatalf("after an empty stream: %v, %v", st, err)
	}
}

// TestConnPutStreamAbortAndConflict: ABORT stores nothing and leaves the
// connection in step; a stream whose condition no longer holds at END
// (the file was created meanwhile) is refused as a conflict, the file
// another writer made untouched; one whose condition fails at the start
// is refused before any chunk; and a connection cut mid-stream leaves
// the old file whole and no temporary file.
func TestConnPutStreamAbortAndConflict(t *testing.T) {
	ctx := context.Background()
	dir, addr := serve(t, export.Options{})
	c := dial(t, addr, peer.ClientOptions{Attrs: true})

	ps, err := c.StartPut(ctx, peerproto.Put{Name: "f", Async: true, Base: peerproto.BaseNone})
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Write(ctx, []byte("dropped")); err != nil {
		t.Fatal(err)
	}
	if err := ps.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("after ABORT: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an aborted stream stored something: %v", err)
	}
	waitNoTemps(t, dir)

	ps, err = c.StartPut(ctx, peerproto.Put{Name: "f", Async: true, Base: peerproto.BaseNone})
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Write(ctx, []byte("mine")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ps.End(ctx)
	var fe *peerproto.FailError
	if !errors.As(err, &fe) || fe.Code != peerproto.CodeConflict {
		t.Fatalf("END over a file created meanwhile: %v, want a conflict", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "theirs" {
		t.Fatalf("the other writer's file holds %q", got)
	}
	waitNoTemps(t, dir)

	if _, err := c.StartPut(ctx, peerproto.Put{Name: "f", Async: true, Base: peerproto.BaseNone}); !errors.As(err, &fe) || fe.Code != peerproto.CodeConflict {
		t.Fatalf("a stream over an existing file with base=none: %v, want a conflict", err)
	}
	if _, err := c.StartPut(ctx, peerproto.Put{Name: "nodir/f", Async: true}); !errors.As(err, &fe) || fe.Code != peerproto.CodeNotFound {
		t.Fatalf("a stream into a missing directory: %v, want notfound", err)
	}

	// Cut: the peer drops what it got.
	c2 := dial(t, addr, peer.ClientOptions{Attrs: true})
	ps, err = c2.StartPut(ctx, peerproto.Put{Name: "f", Async: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Write(ctx, []byte("half")); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	waitNoTemps(t, dir)
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "theirs" {
		t.Fatalf("a cut stream changed the file: %q", got)
	}
}

// TestConnSum: SUM answers a file's size and SHA-256, computed by the
// peer; a missing file is refused as notfound, the connection in step.
func TestConnSum(t *testing.T) {
	ctx := context.Background()
	dir, addr := serve(t, export.Options{})
	c := dial(t, addr, peer.ClientOptions{Attrs: true})
	if f, err := c.Features(ctx); err != nil || !f.Has(peerproto.FeatureSum) {
		t.Fatalf("FEATURES: %v, %v; want sum", f, err)
	}
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := c.Sum(ctx, "f", int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != int64(len(data)) || got.Sum != sha256.Sum256(data) {
		t.Fatalf("SUM OK %d %x, want %d %x", got.Size, got.Sum, len(data), sha256.Sum256(data))
	}
	var fe *peerproto.FailError
	if _, err := c.Sum(ctx, "missing", 0); !errors.As(err, &fe) || fe.Code != peerproto.CodeNotFound {
		t.Fatalf("SUM of a missing file: %v, want notfound", err)
	}
	if _, err := c.Sum(ctx, "../x", 0); !errors.As(err, &fe) {
		t.Fatalf("SUM of a path out of the export: %v, want a refusal", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
}
