package secure

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
)

// FuzzReadProof: the proof line is the only thing a stranger's bytes reach
// before membership is proven. Whatever arrives, readProof never panics,
// never reads past the first newline, never accepts anything but a
// well-formed proof, and never buffers more than maxProofLine bytes.
func FuzzReadProof(f *testing.F) {
	f.Add([]byte(proofPrefix + strings.Repeat("ab", sha256.Size) + "\nREGISTER\n"))
	f.Add([]byte(proofPrefix + "zz\n"))
	f.Add([]byte("CONNECT FAIL denied not a member of this cluster\n"))
	f.Add([]byte(strings.Repeat("A", maxProofLine+10)))
	f.Add([]byte("\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		mac, err := readProof(r)
		if err == nil {
			if len(mac) != sha256.Size {
				t.Fatalf("accepted a proof of %d bytes", len(mac))
			}
			if !bytes.HasPrefix(in, []byte(proofPrefix)) {
				t.Fatalf("accepted %q", in)
			}
		}
		if nl := bytes.IndexByte(in, '\n'); nl >= 0 && nl < maxProofLine {
			if consumed := len(in) - r.Len(); consumed > nl+1 {
				t.Fatalf("read %d bytes past the proof line's end %d", consumed, nl+1)
			}
		}
		if consumed := len(in) - r.Len(); consumed > maxProofLine+1 {
			t.Fatalf("read %d bytes of an over-long line", consumed)
		}
	})
}
