package peerproto

// A streamed PUT's payload (Put.Stream): an upload that starts before its
// size is known, so that a file goes to the peer while it is written.

import (
	"strconv"
	"strings"
)

// FeatureStream is the FeaturesOK word of PUT's stream form (Put.Stream).
const FeatureStream = "stream"

// The lines of a streamed PUT's payload, valid only between its PUT OK
// and its END or ABORT (ParseStreamLine).
const (
	VerbData  = "DATA"
	VerbEnd   = "END"
	VerbAbort = "ABORT"
)

// MaxChunk bounds the bytes of one DATA line of a streamed PUT.
const MaxChunk = 16 << 20

// PutData announces Len bytes of a streamed PUT's content, which follow
// the line at once: "DATA <len>". They go after the bytes of the DATA
// lines before it.
type PutData struct {
	Len int64
}

// PutEnd ends a streamed PUT: "END <size>", the content's size, which is
// the sum of its DATA lengths. The peer stores the file as any PUT and
// answers PUT DONE or PUT FAIL.
type PutEnd struct {
	Size int64
}

// PutAbort drops a streamed PUT: "ABORT". The peer stores nothing and
// answers nothing: the connection is back between requests.
type PutAbort struct{}

// Verb implements Message.
func (PutData) Verb() string { return VerbData }

// Verb implements Message.
func (PutEnd) Verb() string { return VerbEnd }

// Verb implements Message.
func (PutAbort) Verb() string { return VerbAbort }

// AppendTo implements Message.
func (m PutData) AppendTo(b []byte) []byte {
	return strconv.AppendInt(append(b, VerbData+" "...), m.Len, 10)
}

// AppendTo implements Message.
func (m PutEnd) AppendTo(b []byte) []byte {
	return strconv.AppendInt(append(b, VerbEnd+" "...), m.Size, 10)
}

// AppendTo implements Message.
func (PutAbort) AppendTo(b []byte) []byte { return append(b, VerbAbort...) }

// ParseStreamLine parses a line of a streamed PUT's payload: DATA, END or
// ABORT (case-insensitive). Anything else is an error, and leaves the
// connection out of step: the peer cannot tell where the payload ends.
func ParseStreamLine(line []byte) (Message, error) {
	f := fields(line)
	if len(f) == 0 {
		return nil, protoErr(line, "empty line in a streamed PUT")
	}
	switch verb := strings.ToUpper(f[0]); verb {
	case VerbData, VerbEnd:
		if err := wantArgs(line, f, 1, 1, verb+" <size>"); err != nil {
			return nil, err
		}
		n, err := parseSize(line, "size", f[1])
		if err != nil {
			return nil, err
		}
		if verb == VerbEnd {
			if n > MaxSize {
				return nil, protoErr(line, "size %d is over the limit of %d", n, int64(MaxSize))
			}
			return PutEnd{Size: n}, nil
		}
		if n == 0 || n > MaxChunk {
			return nil, protoErr(line, "a DATA chunk holds 1 to %d bytes, not %d", MaxChunk, n)
		}
		return PutData{Len: n}, nil
	case VerbAbort:
		if err := wantArgs(line, f, 0, 0, VerbAbort); err != nil {
			return nil, err
		}
		return PutAbort{}, nil
	}
	return nil, protoErr(line, "want DATA, END or ABORT in a streamed PUT, got %q", f[0])
}
