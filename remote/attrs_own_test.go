package remote

import (
	"testing"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// The peer's report of this mount's own change may have been stat'ed
// before a later change of the same file and come after that change's
// answer (a PUT's report, then a chmod's answer): it must not put the
// older attributes back into a listing, watched (trusted past ttl) or
// not (one a report came in while it was listed), which READDIRPLUS
// would hand the kernel. A report after ownQuiet, or another writer's, is
// applied.
func TestOwnAnswerOutlivesItsOlderReport(t *testing.T) {
	for _, watched := range []bool{false, true} {
		now := time.Unix(1000, 0)
		a := newAttrCache(time.Minute, func() time.Time { return now })
		if watched {
			a.watchTTL = time.Hour
			a.watchStarted()
			a.mu.Lock()
			a.watched[""] = true
			a.mu.Unlock()
		}
		file := func(mode uint32) peerproto.Entry {
			return peerproto.Entry{Name: "f", Type: peerproto.TypeFile, Mode: mode, Size: 3}
		}
		call, _ := a.beginList("")
		a.endList("", call, []peerproto.Entry{file(0o644)}, nil)
		a.mu.Lock()
		if got := a.dirs[""].epoch != 0; got != watched {
			t.Fatalf("watched %v: the listing's epoch is %d", watched, a.dirs[""].epoch)
		}
		a.mu.Unlock()
		mode := func() uint32 {
			t.Helper()
			list, ok := a.listed("")
			if !ok || len(list) != 1 {
				t.Fatalf("watched %v: listing %v, %v", watched, list, ok)
			}
			return list[0].Mode
		}
		report := func(mode uint32) {
			a.mu.Lock()
			a.eventedLocked("f", file(mode), false)
			a.mu.Unlock()
		}

		a.ownAttrs("f") // chmod 600 sent
		a.remember("f", file(0o600), true)
		report(0o644) // the PUT's report, stat'ed before the chmod
		if m := mode(); m != 0o600 {
			t.Errorf("watched %v: after the chmod's answer and an older report, the listing says %o, want 600", watched, m)
		}
		report(0o600) // the chmod's own report: agrees
		report(0o644) // ... and nothing older comes after it
		if m := mode(); m != 0o644 {
			t.Errorf("watched %v: a report after the agreeing one was not applied: %o", watched, m)
		}

		a.ownAttrs("f")
		a.remember("f", file(0o640), true)
		now = now.Add(ownQuiet)
		report(0o604) // not this mount's change: another writer's
		if m := mode(); m != 0o604 {
			t.Errorf("watched %v: another writer's report, ownQuiet after this mount's change, says %o in the listing, want 604", watched, m)
		}
	}
}
