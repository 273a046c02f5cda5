package peerproto

// SUM: a file's SHA-256, computed by the peer, so that a client can tell
// whether a large file there is the content it sent without fetching it.

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// VerbSum asks for a file's size and SHA-256 (FeatureSum).
const VerbSum = "SUM"

// FeatureSum is the FeaturesOK word of SUM.
const FeatureSum = "sum"

// Sum asks for the size and SHA-256 of a regular file: "SUM <name>",
// answered by SumOK. The peer reads the whole file to answer.
type Sum struct {
	Name string
}

// SumOK is the answer to SUM: "SUM OK <size> <sha256 hex>".
type SumOK struct {
	Size int64
	Sum  [sha256.Size]byte
}

// Verb implements Message.
func (Sum) Verb() string { return VerbSum }

// Verb implements Message.
func (SumOK) Verb() string { return VerbSum }

// AppendTo implements Message.
func (m Sum) AppendTo(b []byte) []byte { return appendName(append(b, VerbSum...), m.Name) }

// AppendTo implements Message.
func (m SumOK) AppendTo(b []byte) []byte {
	b = strconv.AppendInt(append(b, VerbSum+" OK "...), m.Size, 10)
	b = append(b, ' ')
	return hex.AppendEncode(b, m.Sum[:])
}

// parseSumOK parses the arguments of "SUM OK <size> <sha256 hex>"; nil
// if they are not that.
func parseSumOK(line []byte, args []string) (Message, error) {
	if len(args) != 2 {
		return nil, nil
	}
	size, err := parseSize(line, "size", args[0])
	if err != nil {
		return nil, err
	}
	var m SumOK
	if len(args[1]) != 2*sha256.Size {
		return nil, protoErr(line, "sum %q is not %d hex digits", args[1], 2*sha256.Size)
	}
	if _, err := hex.Decode(m.Sum[:], []byte(args[1])); err != nil {
		return nil, protoErr(line, "sum %q is not hex", args[1])
	}
	m.Size = size
	return m, nil
}
