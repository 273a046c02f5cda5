package cache

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Regression tests from the review of the namespace journal (issue 16
// item 1): each failed on the code as reviewed and passes since its fix.

// TestJournalAppendAfterTornLine: a run that starts on a journal whose
// last line was cut short by a crash, and appends to it, must not lose
// what it appends at the next start. The torn line has no newline: the
// next Append is written right after it, on the same line, and the whole
// line is skipped as torn when the journal is read again, so an
// acknowledged removal is lost after a second crash.
func TestJournalAppendAfterTornLine(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, 0)
	first, err := c.Journal().Append(NamespaceOp{Op: OpDelete, Peer: "bob", Path: "a"})
	if err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, dir)
	f, err := os.OpenFile(filepath.Join(crashed, journalName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":2,"op":"delete","peer":"bob","pa`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// The second run: "a" is pending (its peer is down), and it
	// acknowledges one more removal before it crashes too.
	j2 := openCache(t, crashed, 0).Journal()
	second, err := j2.Append(NamespaceOp{Op: OpDelete, Peer: "bob", Path: "b"})
	if err != nil {
		t.Fatal(err)
	}
	pend := openCache(t, copyDir(t, crashed), 0).Journal().Pending()
	want := []string{first.Path, second.Path}
	var got []string
	for _, op := range pend {
		got = append(got, op.Path)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pending after a torn line, an Append and a crash: %q, want %q (the Append went onto the torn line)", got, want)
	}
}

// TestJournalCompactionAmortised: with more than compactAt of operations
// pending (a big rm -r whose peer is slow or down), every Done must not
// rewrite (and fsync) the whole journal: compaction only pays when it
// drops at least as much as it keeps. As reviewed, the size stays above
// compactAt after a compaction, so each Done of one batch rewrites
// everything pending: quadratic work in the number of removals.
func TestJournalCompactionAmortised(t *testing.T) {
	dir := t.TempDir()
	j := openCache(t, dir, 0).Journal()
	name := strings.Repeat("x", 1000)
	var ops []NamespaceOp
	for int64(len(ops))*1000 < compactAt+(1<<20) {
		op, err := j.Append(NamespaceOp{Op: OpDelete, Peer: "bob", Path: name})
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	ino := func() uint64 {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, journalName))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	rewrites := 0
	last := ino()
	const batches = 8
	for i := range batches {
		if err := j.Done(ops[i].Seq); err != nil {
			t.Fatal(err)
		}
		if now := ino(); now != last {
			rewrites++
			last = now
		}
	}
	if rewrites > 1 {
		t.Errorf("the journal was rewritten %d times for %d Done calls of one operation each, with %d operations (%d MiB) pending: each rewrite copies and fsyncs them all", rewrites, batches, len(ops), len(ops)*1000>>20)
	}
}
