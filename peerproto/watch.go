package peerproto

// WATCH: a peer reports the changes of the directories a client caches,
// so that the client can keep its listings until told, rather than ask
// again once its attribute timeout runs out.
//
// The first WATCH makes its connection an event connection: it then
// takes only WATCH, UNWATCH, PING and QUIT, and the peer writes event
// lines (Changed, Gone, Unwatched, Reset, Tick) at any time, between the
// answers to those requests, which come in order. docs/PROTOCOL.md,
// "Watching directories", has the rules.

import (
	"strings"
	"time"
)

// Verbs and event words of watching (FeatureWatch).
const (
	VerbWatch     = "WATCH"
	VerbUnwatch   = "UNWATCH"
	WordChanged   = "CHANGED"
	WordGone      = "GONE"
	WordUnwatched = "UNWATCHED"
	WordReset     = "RESET"
	WordTick      = "TICK"
)

// FeatureWatch is the FeaturesOK word of WATCH.
const FeatureWatch = "watch"

// TickEvery is how long an event connection goes without a line before
// the peer writes TICK: a client that hears nothing for several times
// as long takes the connection for dead.
const TickEvery = 250 * time.Millisecond

// Watch asks the peer to report every change of a directory's entries
// and of the directory itself: "WATCH <dir>", answered by WatchOK or a
// refusal ("." is the export's root).
type Watch struct {
	Dir string
}

// Unwatch ends a Watch: "UNWATCH <dir>", answered by UnwatchOK.
type Unwatch struct {
	Dir string
}

// WatchOK answers Watch: "WATCH OK <dir>". Every change of dir made
// after it is reported.
type WatchOK struct {
	Dir string
}

// UnwatchOK answers Unwatch: "UNWATCH OK <dir>".
type UnwatchOK struct {
	Dir string
}

// Changed reports an entry of a watched directory, or a watched
// directory, as it is after a change: "CHANGED <entry>", a LIST entry
// line whose name is the path from the export's root.
type Changed struct {
	Entry Entry
}

// Gone reports that a path in a watched directory, or a watched
// directory, no longer exists: "GONE <path>".
type Gone struct {
	Path string
}

// Unwatched reports that the peer stopped watching a directory (it was
// removed or moved, or a directory above it was): "UNWATCHED <dir>".
// Nothing more is reported of it.
type Unwatched struct {
	Dir string
}

// Reset reports that changes may have gone unreported (the peer's queue
// of them overflowed): "RESET". The client forgets what it learned of
// the peer; its watches stay.
type Reset struct{}

// Tick says the event connection is alive and every change made until
// shortly before it was reported: "TICK", sent when nothing else was
// for TickEvery.
type Tick struct{}

// Verb implements Message.
func (Watch) Verb() string { return VerbWatch }

// Verb implements Message.
func (Unwatch) Verb() string { return VerbUnwatch }

// Verb implements Message.
func (WatchOK) Verb() string { return VerbWatch }

// Verb implements Message.
func (UnwatchOK) Verb() string { return VerbUnwatch }

// Verb implements Message.
func (Changed) Verb() string { return WordChanged }

// Verb implements Message.
func (Gone) Verb() string { return WordGone }

// Verb implements Message.
func (Unwatched) Verb() string { return WordUnwatched }

// Verb implements Message.
func (Reset) Verb() string { return WordReset }

// Verb implements Message.
func (Tick) Verb() string { return WordTick }

// AppendTo implements Message.
func (m Watch) AppendTo(b []byte) []byte { return appendName(append(b, VerbWatch...), m.Dir) }

// AppendTo implements Message.
func (m Unwatch) AppendTo(b []byte) []byte { return appendName(append(b, VerbUnwatch...), m.Dir) }

// AppendTo implements Message.
func (m WatchOK) AppendTo(b []byte) []byte {
	return appendName(append(b, VerbWatch+" OK"...), m.Dir)
}

// AppendTo implements Message.
func (m UnwatchOK) AppendTo(b []byte) []byte {
	return appendName(append(b, VerbUnwatch+" OK"...), m.Dir)
}

// AppendTo implements Message.
func (m Changed) AppendTo(b []byte) []byte {
	return AppendEntry(append(b, WordChanged+" "...), m.Entry)
}

// AppendTo implements Message.
func (m Gone) AppendTo(b []byte) []byte { return appendName(append(b, WordGone...), m.Path) }

// AppendTo implements Message.
func (m Unwatched) AppendTo(b []byte) []byte {
	return appendName(append(b, WordUnwatched...), m.Dir)
}

// AppendTo implements Message.
func (Reset) AppendTo(b []byte) []byte { return append(b, WordReset...) }

// AppendTo implements Message.
func (Tick) AppendTo(b []byte) []byte { return append(b, WordTick...) }

// rootName is "." as a directory of WATCH and its answers: the root.
func rootName(name string) string {
	if name == "." {
		return ""
	}
	return name
}

// ParseEvent parses a line the peer writes on an event connection: an
// answer to WATCH (WatchOK, or a refusal as a *FailError), UNWATCH
// (UnwatchOK) or PING (Pong), or an event (Changed, Gone, Unwatched,
// Reset, Tick).
func ParseEvent(line []byte) (Message, error) {
	f := fields(line)
	if len(f) == 0 {
		return nil, protoErr(line, "empty line")
	}
	if fe := parseFail(line, f, VerbWatch); fe != nil {
		return nil, fe
	}
	word := strings.ToUpper(f[0])
	named := func(n int) (string, error) {
		if len(f) != n+1 {
			return "", protoErr(line, "want %s <name>", strings.Join(f[:n], " "))
		}
		name, err := parseName(line, f[n])
		return rootName(name), err
	}
	switch {
	case word == VerbPong && len(f) == 1:
		return Pong{}, nil
	case word == WordReset && len(f) == 1:
		return Reset{}, nil
	case word == WordTick && len(f) == 1:
		return Tick{}, nil
	case (word == VerbWatch || word == VerbUnwatch) && len(f) >= 2 && strings.EqualFold(f[1], "OK"):
		dir, err := named(2)
		if err != nil {
			return nil, err
		}
		if word == VerbWatch {
			return WatchOK{Dir: dir}, nil
		}
		return UnwatchOK{Dir: dir}, nil
	case word == WordGone:
		p, err := named(1)
		if err != nil {
			return nil, err
		}
		return Gone{Path: p}, nil
	case word == WordUnwatched:
		d, err := named(1)
		if err != nil {
			return nil, err
		}
		return Unwatched{Dir: d}, nil
	case word == WordChanged:
		e, err := parseEntry([]byte(afterWords(line, 1)), true)
		if err != nil {
			return nil, err
		}
		return Changed{Entry: e}, nil
	}
	return nil, protoErr(line, "not a WATCH event or answer")
}
