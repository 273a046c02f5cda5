package cache

// Byte ranges of an entry: what was changed since its base (so that an
// upload can send only that), and, for a partial copy, what it holds.

import (
	"math"
	"slices"
)

// Range is the bytes [Off, End) of a file. End is math.MaxInt64 for
// "from Off on".
type Range struct {
	Off, End int64
}

// Len returns the number of bytes in r.
func (r Range) Len() int64 { return r.End - r.Off }

// toEnd is the range from off to the end of any file.
func toEnd(off int64) Range { return Range{Off: off, End: math.MaxInt64} }

// MaxChanged bounds the ranges kept in Meta.Changed: past it, the two
// closest are merged (the bytes between them are sent too), and where a
// partial copy does not hold the bytes between any two, the changes are
// no longer tracked (Meta.Tracked).
const MaxChanged = 64

// addRange returns rs, sorted and apart (no two overlapping or touching),
// with r added, merging what r overlaps or touches. rs is not modified.
func addRange(rs []Range, r Range) []Range {
	if r.Len() <= 0 {
		return rs
	}
	out := make([]Range, 0, len(rs)+1)
	i := 0
	for ; i < len(rs) && rs[i].End < r.Off; i++ {
		out = append(out, rs[i])
	}
	for ; i < len(rs) && rs[i].Off <= r.End; i++ {
		r.Off, r.End = min(r.Off, rs[i].Off), max(r.End, rs[i].End)
	}
	out = append(out, r)
	return append(out, rs[i:]...)
}

// covers reports whether rs holds every byte of r.
func covers(rs []Range, r Range) bool {
	if r.Len() <= 0 {
		return true
	}
	for _, x := range rs {
		if x.Off <= r.Off && r.End <= x.End {
			return true
		}
	}
	return false
}

// gapsIn returns the parts of r that rs does not hold, in order.
func gapsIn(rs []Range, r Range) []Range {
	var out []Range
	at := r.Off
	for _, x := range rs {
		if x.End <= at {
			continue
		}
		if x.Off >= r.End {
			break
		}
		if x.Off > at {
			out = append(out, Range{at, x.Off})
		}
		at = x.End
		if at >= r.End {
			return out
		}
	}
	if at < r.End {
		out = append(out, Range{at, r.End})
	}
	return out
}

// clipRanges returns the parts of rs below size.
func clipRanges(rs []Range, size int64) []Range {
	var out []Range
	for _, r := range rs {
		if r.Off >= size {
			break
		}
		out = append(out, Range{r.Off, min(r.End, size)})
	}
	return out
}

// coalesce returns changed with at most MaxChanged ranges, merging the
// two closest while there are more, but only across bytes that known
// holds (nil known: all of them); ok is false if that cannot bring them
// down to MaxChanged.
func coalesce(changed, known []Range, partial bool) (out []Range, ok bool) {
	out = changed
	for len(out) > MaxChanged {
		best := -1
		for i := 0; i+1 < len(out); i++ {
			gap := Range{out[i].End, out[i+1].Off}
			if partial && !covers(known, gap) {
				continue
			}
			if best < 0 || gap.Len() < out[best+1].Off-out[best].End {
				best = i
			}
		}
		if best < 0 {
			return nil, false
		}
		merged := Range{out[best].Off, out[best+1].End}
		out = slices.Concat(out[:best:best], []Range{merged}, out[best+2:])
	}
	return out, true
}

// encodeRanges is rs as a record keeps them.
func encodeRanges(rs []Range) [][2]int64 {
	if len(rs) == 0 {
		return nil
	}
	out := make([][2]int64, len(rs))
	for i, r := range rs {
		out[i] = [2]int64{r.Off, r.End}
	}
	return out
}

// decodeRanges reverses encodeRanges, dropping what is not a valid set
// of ranges (sorted, apart, non-empty, non-negative); ok is false then.
func decodeRanges(rec [][2]int64) (rs []Range, ok bool) {
	var end int64 = -1
	for _, p := range rec {
		r := Range{p[0], p[1]}
		if r.Off < 0 || r.Len() <= 0 || r.Off <= end {
			return nil, false
		}
		rs = append(rs, r)
		end = r.End
	}
	return rs, true
}
