package remote

import (
	"fmt"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// ownCache returns an attribute cache on a clock the test moves, with
// the root watched (an event connection up) if watched.
func ownCache(watched bool) (*attrCache, *time.Time) {
	now := time.Unix(1000, 0)
	a := newAttrCache(time.Minute, func() time.Time { return now })
	if watched {
		a.watchTTL = time.Hour
		a.watchStarted()
		a.mu.Lock()
		a.watched[""] = true
		a.mu.Unlock()
	}
	return a, &now
}

// ownFile is a 3-byte file name with permission bits mode.
func ownFile(name string, mode uint32) peerproto.Entry {
	return peerproto.Entry{Name: name, Type: peerproto.TypeFile, Mode: mode, Size: 3}
}

// report applies the peer's report that path is e, or gone.
func report(a *attrCache, path string, e peerproto.Entry, gone bool) {
	a.mu.Lock()
	a.eventedLocked(path, e, gone)
	a.mu.Unlock()
}

// listRoot gives a the listing of the root: entries.
func listRoot(a *attrCache, entries ...peerproto.Entry) {
	call, _ := a.beginList("")
	a.endList("", call, entries, nil)
}

// listedMode returns the mode the root's listing gives name, and whether
// the listing answers at all.
func listedMode(t *testing.T, a *attrCache, name string) (uint32, bool) {
	t.Helper()
	l, ok := a.listed("")
	if !ok {
		return 0, false
	}
	for _, e := range l {
		if e.Name == name {
			return e.Mode, true
		}
	}
	t.Fatalf("%s not listed: %v", name, l)
	return 0, false
}

// The peer's report of this mount's own change may have been stat'ed
// before a later change of the same file and come after that change's
// answer (a PUT's report, then a chmod's answer): it must not put the
// older attributes back into a listing, watched (trusted past ttl) or
// not (one a report came in while it was listed), which READDIRPLUS
// would hand the kernel. A report after ownQuiet, or another writer's, is
// applied.
func TestOwnAnswerOutlivesItsOlderReport(t *testing.T) {
	for _, watched := range []bool{false, true} {
		a, now := ownCache(watched)
		listRoot(a, ownFile("f", 0o644))
		a.mu.Lock()
		if got := a.dirs[""].epoch != 0; got != watched {
			t.Fatalf("watched %v: the listing's epoch is %d", watched, a.dirs[""].epoch)
		}
		a.mu.Unlock()
		mode := func() uint32 {
			t.Helper()
			m, ok := listedMode(t, a, "f")
			if !ok {
				t.Fatalf("watched %v: the listing does not answer", watched)
			}
			return m
		}

		*now = now.Add(time.Millisecond)
		a.ownAttrs("f") // chmod 600 sent
		a.remember("f", ownFile("f", 0o600), true)
		report(a, "f", ownFile("f", 0o644), false) // the PUT's report, stat'ed before the chmod
		if m := mode(); m != 0o600 {
			t.Errorf("watched %v: after the chmod's answer and an older report, the listing says %o, want 600", watched, m)
		}
		report(a, "f", ownFile("f", 0o600), false) // the chmod's own report: agrees
		report(a, "f", ownFile("f", 0o644), false) // ... and nothing older comes after it
		if m := mode(); m != 0o644 {
			t.Errorf("watched %v: a report after the agreeing one was not applied: %o", watched, m)
		}

		a.ownAttrs("f")
		a.remember("f", ownFile("f", 0o640), true)
		*now = now.Add(ownQuiet)
		report(a, "f", ownFile("f", 0o604), false) // not this mount's change: another writer's
		if m := mode(); m != 0o604 {
			t.Errorf("watched %v: another writer's report, ownQuiet after this mount's change, says %o in the listing, want 604", watched, m)
		}
	}
}

// A listing taken after this mount's change was answered (ls -l right
// after chmod, the old listing gone) holds the new mode; the PUT's
// report, stat'ed before the chmod, comes after it: not applied. The same
// for a removal: an older report does not bring the removed name back.
func TestOlderReportAfterAFreshListing(t *testing.T) {
	for _, watched := range []bool{false, true} {
		a, now := ownCache(watched)
		a.ownChange("f") // the PUT
		a.remember("f", ownFile("f", 0o644), true)
		a.ownAttrs("f") // chmod 600
		a.remember("f", ownFile("f", 0o600), true)
		*now = now.Add(time.Millisecond)
		listRoot(a, ownFile("f", 0o600))           // ls -l
		report(a, "f", ownFile("f", 0o644), false) // the PUT's report
		if m, ok := listedMode(t, a, "f"); ok && m != 0o600 {
			t.Errorf("watched %v: listing taken after the chmod's answer, then the PUT's older report: listed %o, want 600", watched, m)
		}
		if e, _, ok := a.cached("f"); ok && e.Mode != 0o600 {
			t.Errorf("watched %v: cached says %o", watched, e.Mode)
		}

		a, now = ownCache(watched)
		listRoot(a, ownFile("g", 0o644))
		*now = now.Add(time.Millisecond)
		a.ownChange("g") // unlink
		a.gone("g")
		*now = now.Add(time.Millisecond)
		listRoot(a)
		report(a, "g", ownFile("g", 0o644), false) // stat'ed before the unlink
		if l, ok := a.listed(""); ok && len(l) != 0 {
			t.Errorf("watched %v: removed here, listed again, then an older report: listed %v", watched, l)
		}
	}
}

// A LIST on its way while this mount's SETATTR is answered may have been
// read before the chmod: it is not kept over the chmod's answer.
func TestListInFlightOverOwnSetattr(t *testing.T) {
	for _, watched := range []bool{false, true} {
		a, _ := ownCache(watched)
		call, leader := a.beginList("") // ls -l: the peer reads f: 644
		if !leader {
			t.Fatal("not the LIST's leader")
		}
		a.ownAttrs("f") // chmod 600 (synchronous SETATTR)
		a.remember("f", ownFile("f", 0o600), true)
		report(a, "f", ownFile("f", 0o600), false) // the chmod's report
		kept := a.endList("", call, []peerproto.Entry{ownFile("f", 0o644)}, nil)
		if m, ok := listedMode(t, a, "f"); ok && m != 0o600 {
			t.Errorf("watched %v: LIST read before the chmod, answered after it (kept %v): listed %o, want 600", watched, kept, m)
		}
	}
}

// A plain STAT that finds a name missing is no change of this mount's:
// the LIST of its directory on its way is kept as the peer answered it
// (either may have been read later).
func TestMissingNameNotLaidOverAList(t *testing.T) {
	a, _ := ownCache(false)
	call, _ := a.beginList("")
	a.missing("f")
	if !a.endList("", call, []peerproto.Entry{ownFile("f", 0o644)}, nil) {
		t.Error("a LIST was not kept after a STAT found a name missing in its directory")
	}
	if m, ok := listedMode(t, a, "f"); !ok || m != 0o644 {
		t.Errorf("the LIST's f: %o, %v", m, ok)
	}
}

// changedIno marks a file's other names stale after a chmod through one
// of them: a report of another name read before the chmod does not make
// it answerable from the listing again; the next answer does.
func TestOlderReportKeepsHardLinkStale(t *testing.T) {
	a, now := ownCache(false)
	link := func(name string, mode uint32, size int64) peerproto.Entry {
		return peerproto.Entry{Name: name, Type: peerproto.TypeFile, Mode: mode, Size: size,
			Has: peerproto.AttrIno | peerproto.AttrNlink, Ino: 7, Nlink: 2}
	}
	listRoot(a, link("a", 0o644, 3), link("b", 0o644, 3))
	*now = now.Add(5 * time.Second) // every ownQuiet long past, the listing within ttl
	a.ownAttrs("a")                 // chmod 600 a
	a.changedIno(7)
	a.remember("a", link("a", 0o600, 3), true)
	if _, _, ok := a.cached("b"); ok {
		t.Fatal("b answered from the cache right after the chmod through a")
	}
	report(a, "b", link("b", 0o644, 4), false) // another writer's write through b, before the chmod
	if e, _, ok := a.cached("b"); ok {
		t.Errorf("after an older report of b, the cache answers %o for it, want a STAT", e.Mode)
	}
	a.remember("b", link("b", 0o600, 4), true) // that STAT's answer
	if e, _, ok := a.cached("b"); !ok || e.Mode != 0o600 {
		t.Errorf("after a STAT of b, the cache answers %o, %v", e.Mode, ok)
	}
}

// A change of this mount's that takes longer than ownQuiet to send (a
// large file's PUT, renamed into place at its end) is its own while on
// its way: its report, which may come before its answer, is not another
// writer's change; nor is it for ownQuiet after the answer, but then it
// is again.
func TestLongPutReportIsOwn(t *testing.T) {
	a, now := ownCache(true)
	listRoot(a, ownFile("f", 0o644))
	big := ownFile("f", 0o644)
	answered := a.ownSending("f")
	*now = now.Add(3 * time.Second) // 3 s to send the content
	big.Size = 1 << 30
	report(a, "f", big, false) // the rename's report, before the answer is read
	if chs := a.takeForeign(); len(chs) != 0 {
		t.Errorf("this mount's own 3 s PUT reported as another writer's: %+v", chs)
	}
	answered()
	*now = now.Add(ownQuiet / 2)
	big.Size++
	report(a, "f", big, false)
	if chs := a.takeForeign(); len(chs) != 0 {
		t.Errorf("a report ownQuiet/2 after this mount's PUT was answered taken for another writer's: %+v", chs)
	}
	*now = now.Add(ownQuiet)
	big.Size++
	report(a, "f", big, false)
	if chs := a.takeForeign(); len(chs) != 1 {
		t.Errorf("another writer's change, ownQuiet after this mount's PUT: told %+v, want it", chs)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sending) != 0 {
		t.Errorf("answered uploads still counted: %v", a.sending)
	}
}

// Where no report comes (a peer without WATCH), a listing in which names
// are made and removed here keeps few marks: those of names gone and
// ownQuiet old are let go of.
func TestUnconfirmedBoundedWithoutReports(t *testing.T) {
	a, now := ownCache(false)
	listRoot(a)
	for i := range 100000 {
		p := fmt.Sprintf("tmp%d", i)
		a.ownChange(p)
		a.remember(p, ownFile(p, 0o644), true) // the upload's answer
		a.gone(p)                              // rm
		*now = now.Add(time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	dc := a.dirs[""]
	// ownQuiet's worth of names (2,000) may be marked, and twice that
	// between two prunings.
	if n := len(dc.unconfirmed); n > 3*int(ownQuiet/time.Millisecond)+minPrune {
		t.Errorf("100,000 names made and removed here: %d unconfirmed marks kept", n)
	}
}

// A chmod written behind (a batch) whose answer (answered) comes while a
// LIST of its directory is on its way: the peer may have read the
// directory before carrying the chmod out. The answer is laid over the
// LIST's result, as remember's are: the listing says 600, and so it does
// after the chmod's own report.
func TestBehindSetattrAnswerOverAnOlderList(t *testing.T) {
	for _, watched := range []bool{false, true} {
		a, now := ownCache(watched)
		queued := true
		a.pending = func(path string, in bool) bool { return queued && path == "f" && !in }
		a.changedHere("f", func(e *peerproto.Entry) { e.Mode = 0o600 }) // chmod 600, written behind
		*now = now.Add(time.Millisecond)
		call, _ := a.beginList("") // ls -l: the peer reads f, 644, before the chmod
		a.ownAttrs("f")            // the batch goes
		*now = now.Add(time.Millisecond)
		queued = false
		a.ownAttrs("f") // the batch answered (own() again)
		a.answered("f", ownFile("f", 0o600), false)
		*now = now.Add(time.Millisecond)
		kept := a.endList("", call, []peerproto.Entry{ownFile("f", 0o644)}, nil)
		*now = now.Add(time.Millisecond)
		report(a, "f", ownFile("f", 0o600), false) // the chmod's report
		if m, ok := listedMode(t, a, "f"); ok && m != 0o600 {
			t.Errorf("watched %v: LIST read before a chmod written behind, answered after its answer (kept %v), then the chmod's report: listed %o, want 600", watched, kept, m)
		}
	}
}

// A listing keeps the epoch it was taken in when the event connection
// ends (watchEnded clears a.epoch only): where no report comes any more
// (the connection stays down, the peer restarted without WATCH), the
// marks of names made and removed here are pruned as in a listing never
// watched.
func TestUnconfirmedBoundedAfterWatchEnded(t *testing.T) {
	a, now := ownCache(true)
	listRoot(a)
	a.mu.Lock()
	epoch := a.epoch
	a.mu.Unlock()
	a.watchEnded(epoch) // the event connection is lost, and stays so
	for i := range 100000 {
		p := fmt.Sprintf("tmp%d", i)
		a.ownChange(p)
		a.remember(p, ownFile(p, 0o644), true)
		a.gone(p)
		*now = now.Add(time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.dirs[""].unconfirmed); n > 3*int(ownQuiet/time.Millisecond)+minPrune {
		t.Errorf("event connection ended, 100,000 names made and removed here: %d unconfirmed marks kept", n)
	}
}

// ls -l (one LIST, 20 ms) in a directory where this mount overwrites a
// file every 10 ms (an upload's answer: remember): every LIST has an
// answer on its way. Were it superseded by them, peerListing would ask
// again maxListAgain times and keep none; the answers are laid over the
// LIST's result instead (unconfirmed): one LIST, kept, holding the last
// answer.
func TestListDuringOverwrites(t *testing.T) {
	a, now := ownCache(false)
	entries := []peerproto.Entry{ownFile("a", 0o644), ownFile("b", 0o644), ownFile("c", 0o644)}
	lists, kept := 0, false
	n := 0
	for again := 0; ; again++ {
		if _, ok := a.listed(""); ok {
			break
		}
		call, _ := a.beginList("")
		lists++
		for range 2 { // 20 ms on its way: two overwrites answered
			*now = now.Add(10 * time.Millisecond)
			n++
			name := entries[n%len(entries)].Name
			a.ownChange(name)
			e := ownFile(name, 0o644)
			e.Size = int64(n)
			a.remember(name, e, true)
		}
		kept = a.endList("", call, entries, nil)
		if kept || again >= maxListAgain {
			break
		}
	}
	if lists != 1 || !kept {
		t.Errorf("ls -l while files are overwritten here every 10 ms: %d LISTs, listing kept %v; want 1, kept", lists, kept)
		return
	}
	// ... and holding the last answer, not what the LIST read before it.
	l, _ := a.listed("")
	for _, e := range l {
		if name := entries[n%len(entries)].Name; e.Name == name && e.Size != int64(n) {
			t.Errorf("%s listed with size %d, the LIST's, not its upload's answer (%d)", name, e.Size, n)
		}
	}
}
