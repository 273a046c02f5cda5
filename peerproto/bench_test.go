package peerproto_test

import (
	"testing"

	"github.com/peerfs/peerfs/peerproto"
)

var (
	benchPut   = peerproto.Put{Name: "photos/2024/IMG 0001.jpg", Size: 4 << 20}
	benchGet   = peerproto.Get{Name: "photos/2024/IMG 0001.jpg", Offset: 1 << 20, Length: 128 << 10}
	benchEntry = peerproto.Entry{Name: "IMG 0001.jpg", Type: peerproto.TypeFile, Mode: 0o644, Size: 4 << 20, Mtime: mtime}
)

func benchFormat(b *testing.B, m peerproto.Message) {
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendTo(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func benchParse(b *testing.B, m peerproto.Message, parse func([]byte) (peerproto.Message, error)) {
	line := m.AppendTo(nil)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse(line); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFormatPut(b *testing.B) { benchFormat(b, benchPut) }
func BenchmarkFormatGet(b *testing.B) { benchFormat(b, benchGet) }

func BenchmarkFormatEntry(b *testing.B) { benchFormat(b, entry(benchEntry)) }

func BenchmarkParsePut(b *testing.B) { benchParse(b, benchPut, peerproto.ParsePeerRequest) }
func BenchmarkParseGet(b *testing.B) { benchParse(b, benchGet, peerproto.ParsePeerRequest) }

func BenchmarkParseEntry(b *testing.B) { benchParse(b, entry(benchEntry), entryParser.parse) }

func BenchmarkParseGetOK(b *testing.B) {
	benchParse(b, peerproto.GetOK{Size: 4 << 20}, replyTo(peerproto.VerbGet).parse)
}
