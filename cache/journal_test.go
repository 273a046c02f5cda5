package cache

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func seqs(ops []NamespaceOp) []uint64 {
	var out []uint64
	for _, op := range ops {
		out = append(out, op.Seq)
	}
	return out
}

// TestJournalSurvivesCrash: operations appended and not done are found by
// the next Open of a copy of the directory taken without closing (a
// crash), in order, with what they said; done ones are not; sequence
// numbers go on from where they were.
func TestJournalSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	j := openCache(t, dir, 0).Journal()
	var got []NamespaceOp
	for _, p := range []string{"a", "d/b", "d"} {
		kind := OpDelete
		if p == "d" {
			kind = OpRmdir
		}
		op, err := j.Append(NamespaceOp{Op: kind, Peer: "bob", Path: p, Owner: "id1", Version: "v" + p})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, op)
	}
	if err := j.Done(got[0].Seq); err != nil {
		t.Fatal(err)
	}
	j2 := openCache(t, copyDir(t, dir), 0).Journal()
	pend := j2.Pending()
	if !slices.Equal(pend, got[1:]) {
		t.Fatalf("pending after a crash: %+v, want %+v", pend, got[1:])
	}
	op, err := j2.Append(NamespaceOp{Op: OpDelete, Peer: "bob", Path: "e"})
	if err != nil {
		t.Fatal(err)
	}
	if op.Seq <= got[2].Seq {
		t.Errorf("sequence went back: %d after %d", op.Seq, got[2].Seq)
	}
}

// TestJournalTornLine: a last line cut short by a crash is skipped, and
// the lines before it count.
func TestJournalTornLine(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	if _, err := c.Journal().Append(NamespaceOp{Op: OpDelete, Peer: "bob", Path: "a"}); err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, dir)
	f, err := os.OpenFile(filepath.Join(crashed, journalName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":2,"op":"delete","peer":"bob","pa`)
	f.Close()
	pend := openCache(t, crashed, 0).Journal().Pending()
	if len(pend) != 1 || pend[0].Path != "a" {
		t.Fatalf("pending %+v, want the one whole line", pend)
	}
}

// TestJournalEmptiedAndCompacted: the journal is emptied when nothing is
// pending, and rewritten with only what is pending once it grows past
// compactAt.
func TestJournalEmptiedAndCompacted(t *testing.T) {
	dir := t.TempDir()
	j := openCache(t, dir, 0).Journal()
	op, err := j.Append(NamespaceOp{Op: OpDelete, Peer: "bob", Path: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Done(op.Seq); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, journalName)); err != nil || fi.Size() != 0 {
		t.Fatalf("journal after everything is done: %v, %v; want empty", fi, err)
	}
	keep, err := j.Append(NamespaceOp{Op: OpRmdir, Peer: "bob", Path: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("x", 1000)
	compacted := false
	for i := 0; int64(i) < compactAt/1000+10; i++ {
		op, err := j.Append(NamespaceOp{Op: OpDelete, Peer: "bob", Path: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Done(op.Seq); err != nil {
			t.Fatal(err)
		}
		compacted = compacted || j.size < 2000
	}
	if !compacted {
		t.Error("the journal was never compacted")
	}
	fi, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil || fi.Size() > compactAt {
		t.Fatalf("journal not compacted: %v, %v", fi, err)
	}
	if pend := j.Pending(); !slices.Equal(seqs(pend), []uint64{keep.Seq}) {
		t.Fatalf("pending %v, want %d", seqs(pend), keep.Seq)
	}
	j2 := openCache(t, copyDir(t, dir), 0).Journal()
	if pend := j2.Pending(); len(pend) != 1 || pend[0].Path != "kept" {
		t.Fatalf("after compaction and a crash: %+v", pend)
	}
}

// TestJournalKeepsMkdirSetattr: the journal reads back what a mkdir and a
// setattr need (modes, explicit times, "now") after a crash, and skips
// such lines without them.
func TestJournalKeepsMkdirSetattr(t *testing.T) {
	dir := t.TempDir()
	j := openCache(t, dir, 0).Journal()
	mode, mtime, now := uint32(0o700), int64(1_600_000_000_123_456_789), TimeNow
	var want []NamespaceOp
	for _, op := range []NamespaceOp{
		{Op: OpMkdir, Peer: "bob", Path: "d", Mode: &mode},
		{Op: OpSetattr, Peer: "bob", Path: "d", Mode: &mode, Mtime: &mtime, Atime: &now},
		{Op: OpMkdir, Peer: "bob", Path: "no-mode"},
		{Op: OpSetattr, Peer: "bob", Path: "no-change"},
	} {
		op, err := j.Append(op)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, op)
	}
	got := openCache(t, copyDir(t, dir), 0).Journal().Pending()
	if len(got) != 2 {
		t.Fatalf("read back %d operations, want 2: %+v", len(got), got)
	}
	if op := got[0]; op.Seq != want[0].Seq || op.Op != OpMkdir || op.Path != "d" || op.Mode == nil || *op.Mode != mode {
		t.Errorf("first: %+v", op)
	}
	if op := got[1]; op.Seq != want[1].Seq || op.Op != OpSetattr || op.Mode == nil || *op.Mode != mode ||
		op.Mtime == nil || *op.Mtime != mtime || op.Atime == nil || *op.Atime != TimeNow {
		t.Errorf("second: %+v", op)
	}
}
