package peerproto

import "testing"

// TestWatchLines: WATCH's requests, answers and events go out and come
// back as they were, "." naming the root; malformed ones are refused.
func TestWatchLines(t *testing.T) {
	for _, m := range []Message{Watch{Dir: "a b/c"}, Watch{Dir: ""}, Unwatch{Dir: "x"}} {
		line := m.AppendTo(nil)
		got, err := ParsePeerRequest(line)
		if err != nil || got != m {
			t.Errorf("%q: parsed %#v, %v; want %#v", line, got, err, m)
		}
	}
	e := Entry{Type: TypeFile, Mode: 0o644, Size: 12, Mtime: 1700000000123456789, Name: "dir/f 1", Ver: "0123456789abcdef", Has: AttrIno, Ino: 7}
	for _, m := range []Message{WatchOK{Dir: "a"}, WatchOK{Dir: ""}, UnwatchOK{Dir: "a"}, Changed{Entry: e},
		Changed{Entry: Entry{Type: TypeDir, Mode: 0o755, Mtime: 1, Name: ""}}, Gone{Path: "a/b"}, Unwatched{Dir: "a"}, Reset{}, Tick{}, Pong{}} {
		line := m.AppendTo(nil)
		got, err := ParseEvent(line)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if c, ok := m.(Changed); ok {
			if g, ok := got.(Changed); !ok || g.Entry.Name != c.Entry.Name || g.Entry.Size != c.Entry.Size || g.Entry.Ver != c.Entry.Ver || g.Entry.Type != c.Entry.Type {
				t.Errorf("%q: parsed %#v, want %#v", line, got, m)
			}
			continue
		}
		if got != m {
			t.Errorf("%q: parsed %#v, want %#v", line, got, m)
		}
	}
	if _, err := ParseEvent([]byte("WATCH FAIL limit too many directories watched")); err == nil {
		t.Error("a refusal parsed as an answer")
	} else if fe, ok := err.(*FailError); !ok || fe.Code != "limit" {
		t.Errorf("refusal: %v", err)
	}
	for _, bad := range []string{"", "CHANGED", "CHANGED f 0644 1 1 ../x", "CHANGED f 0644 1 1 /abs", "CHANGED f 0644 1 1 a//b", "GONE", "GONE a b", "TICK now", "WATCH OK", "HELLO"} {
		if m, err := ParseEvent([]byte(bad)); err == nil {
			t.Errorf("%q parsed as %#v", bad, m)
		}
	}
}
