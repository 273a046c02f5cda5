package peerproto_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/peerfs/peerfs/peerproto"
)

// readAll reads lines until an error and returns them with that error.
func readAll(r *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		line, err := peerproto.ReadLine(r)
		if err != nil {
			return lines, err
		}
		lines = append(lines, string(line))
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr error
	}{
		{"", nil, io.EOF},
		{"PUT x 5\n", []string{"PUT x 5"}, io.EOF},
		{"PUT x 5\r\n", []string{"PUT x 5"}, io.EOF},
		{"a\nb\r\n\nc\n", []string{"a", "b", "", "c"}, io.EOF},
		{"\r\n", []string{""}, io.EOF},
		{"a\r\r\n", []string{"a\r"}, io.EOF}, // only one terminator is removed
		{"a\rb\n", []string{"a\rb"}, io.EOF},
		{"\r", nil, io.ErrUnexpectedEOF},
		{"PUT x", nil, io.ErrUnexpectedEOF},
		{"PING\nPUT x", []string{"PING"}, io.ErrUnexpectedEOF},
		{"PING\nPUT x 5\r", []string{"PING"}, io.ErrUnexpectedEOF},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) *bufio.Reader
	}{
		{"default", func(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }},
		{"16-byte buffer", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 16) }},
		{"one byte at a time", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(iotest.OneByteReader(r), 16) }},
		{"data with EOF", func(r io.Reader) *bufio.Reader { return bufio.NewReader(iotest.DataErrReader(r)) }},
	}
	for _, rd := range readers {
		for _, tt := range tests {
			got, err := readAll(rd.wrap(strings.NewReader(tt.in)))
			if err != tt.wantErr {
				t.Errorf("%s: ReadLine(%q) error = %v, want %v", rd.name, tt.in, err, tt.wantErr)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("%s: ReadLine(%q) = %q, want %q", rd.name, tt.in, got, tt.want)
			}
		}
	}
}

// TestReadLineLimit drives lines exactly at and just over MaxLine (the
// terminator counts) through both paths of ReadLine: the small buffer forces
// the accumulating path, the large one returns the whole line at once.
func TestReadLineLimit(t *testing.T) {
	body := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name string
		line string
		ok   bool
	}{
		{"at limit, LF", body(peerproto.MaxLine-1) + "\n", true},
		{"at limit, CRLF", body(peerproto.MaxLine-2) + "\r\n", true},
		{"over by one, LF", body(peerproto.MaxLine) + "\n", false},
		{"over by one, CRLF", body(peerproto.MaxLine-1) + "\r\n", false},
		{"far over", body(3*peerproto.MaxLine) + "\n", false},
	}
	for _, size := range []int{16, 4096, 2 * peerproto.MaxLine, 4 * peerproto.MaxLine} {
		for _, tt := range tests {
			r := bufio.NewReaderSize(strings.NewReader(tt.line+"PING\n"), size)
			got, err := peerproto.ReadLine(r)
			if tt.ok {
				want := strings.TrimRight(tt.line, "\r\n")
				if err != nil || string(got) != want {
					t.Errorf("buffer %d, %s: got %d bytes, %v; want %d bytes", size, tt.name, len(got), err, len(want))
				}
				// The stream is still in step.
				if next, err := peerproto.ReadLine(r); err != nil || string(next) != "PING" {
					t.Errorf("buffer %d, %s: next line %q, %v", size, tt.name, next, err)
				}
				continue
			}
			var pe *peerproto.ProtocolError
			if !errors.Is(err, peerproto.ErrLineTooLong) || !errors.As(err, &pe) {
				t.Errorf("buffer %d, %s: got %d bytes, %v; want a *ProtocolError wrapping ErrLineTooLong", size, tt.name, len(got), err)
			}
			if got != nil {
				t.Errorf("buffer %d, %s: returned %d bytes with the error", size, tt.name, len(got))
			}
		}
	}
}

// countingReader counts the bytes handed out.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// endless yields 'x' forever: a line that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestReadLineEndless checks that a line without end is cut off after about
// MaxLine bytes rather than read (and held) forever.
func TestReadLineEndless(t *testing.T) {
	for _, size := range []int{16, 4096} {
		cr := &countingReader{r: endless{}}
		_, err := peerproto.ReadLine(bufio.NewReaderSize(cr, size))
		if !errors.Is(err, peerproto.ErrLineTooLong) {
			t.Fatalf("buffer %d: err = %v, want ErrLineTooLong", size, err)
		}
		if limit := int64(peerproto.MaxLine + 2*size); cr.n > limit {
			t.Errorf("buffer %d: read %d bytes before refusing, want at most %d", size, cr.n, limit)
		}
	}
}

func TestReadLineReaderError(t *testing.T) {
	boom := errors.New("boom")
	for _, in := range []io.Reader{
		iotest.ErrReader(boom),
		io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(boom)),
		io.MultiReader(strings.NewReader(strings.Repeat("x", 100)), iotest.ErrReader(boom)),
	} {
		_, err := peerproto.ReadLine(bufio.NewReaderSize(in, 16))
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want the reader's error", err)
		}
	}
}

// oneWrite counts the Write calls a message takes.
type oneWrite struct {
	writes int
	buf    bytes.Buffer
}

func (w *oneWrite) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

func TestWriteMessage(t *testing.T) {
	for _, tt := range canonical {
		w := &oneWrite{}
		if err := peerproto.WriteMessage(w, tt.msg); err != nil {
			t.Fatal(err)
		}
		if w.writes != 1 || w.buf.String() != tt.wire+"\n" {
			t.Errorf("WriteMessage(%#v): %d writes of %q, want one of %q", tt.msg, w.writes, w.buf.String(), tt.wire+"\n")
		}
	}
	boom := errors.New("boom")
	if err := peerproto.WriteMessage(errWriter{boom}, peerproto.Ping{}); !errors.Is(err, boom) {
		t.Errorf("WriteMessage to a failing writer: %v, want %v", err, boom)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

// TestExchange reads a peer's replies to a PUT and a LIST the way a client
// does: header line, payload or entry lines, final line, from one reader.
func TestExchange(t *testing.T) {
	var wire bytes.Buffer
	for _, m := range []peerproto.Message{
		peerproto.ConnectOK{},
		peerproto.PutOK{},
		peerproto.PutDone{Size: 5, Mtime: mtime},
		peerproto.ListOK{Count: 2},
	} {
		if err := peerproto.WriteMessage(&wire, m); err != nil {
			t.Fatal(err)
		}
	}
	wire.Write(peerproto.AppendEntry(nil, peerproto.Entry{Name: "a b", Type: 'f', Mode: 0o644, Size: 5, Mtime: 1}))
	wire.WriteString("\r\n")
	wire.Write(peerproto.AppendEntry(nil, peerproto.Entry{Name: "sub", Type: 'd', Mode: 0o755, Mtime: 2}))
	wire.WriteString("\nGET OK 3\nabcGET FAIL notfound gone\n")

	r := bufio.NewReaderSize(&wire, 16)
	expect := func(verb string, want peerproto.Message) {
		t.Helper()
		got, err := peerproto.ReadReply(r, verb)
		if err != nil || got != want {
			t.Fatalf("ReadReply(%s) = %#v, %v; want %#v", verb, got, err, want)
		}
	}
	expect(peerproto.VerbConnect, peerproto.ConnectOK{})
	expect(peerproto.VerbPut, peerproto.PutOK{})
	expect(peerproto.VerbPut, peerproto.PutDone{Size: 5, Mtime: mtime})
	expect(peerproto.VerbList, peerproto.ListOK{Count: 2})
	for _, want := range []string{"a b", "sub"} {
		line, err := peerproto.ReadLine(r)
		if err != nil {
			t.Fatal(err)
		}
		e, err := peerproto.ParseEntry(line)
		if err != nil || e.Name != want {
			t.Fatalf("ParseEntry(%q) = %#v, %v", line, e, err)
		}
	}
	expect(peerproto.VerbGet, peerproto.GetOK{Size: 3})
	var payload bytes.Buffer
	if _, err := io.CopyN(&payload, r, 3); err != nil || payload.String() != "abc" {
		t.Fatalf("payload %q, %v", payload.String(), err)
	}
	_, err := peerproto.ReadReply(r, peerproto.VerbGet)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("GET FAIL notfound: %v, want fs.ErrNotExist", err)
	}
	if _, err := peerproto.ReadReply(r, peerproto.VerbGet); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

// TestParseAllocationIsBounded checks that a size, offset or count is only
// a number to the parser: announcing 1 PiB or a million entries costs the
// same as announcing one byte.
func TestParseAllocationIsBounded(t *testing.T) {
	tests := []struct {
		name       string
		small, big string
		parse      func([]byte) (peerproto.Message, error)
	}{
		{"PUT", "PUT x 300", "PUT x 1125899906842624", peerproto.ParsePeerRequest},
		{"GET range", "GET x 300 300", "GET x 1125899906842624 1125899906842624", peerproto.ParsePeerRequest},
		{"SETATTR size", "SETATTR x size=300", "SETATTR x size=1125899906842624", peerproto.ParsePeerRequest},
		{"LIST OK", "LIST OK 300", "LIST OK 1048576", func(l []byte) (peerproto.Message, error) { return peerproto.ParseReply(l, peerproto.VerbList) }},
		{"GET OK", "GET OK 300", "GET OK 1125899906842624", func(l []byte) (peerproto.Message, error) { return peerproto.ParseReply(l, peerproto.VerbGet) }},
		{"PUT DONE", "PUT DONE 300 300", "PUT DONE 1125899906842624 300", func(l []byte) (peerproto.Message, error) { return peerproto.ParseReply(l, peerproto.VerbPut) }},
	}
	// The small numbers are above 255: Go boxes smaller one-word values into
	// an interface without allocating, which would make "small" cheaper.
	for _, tt := range tests {
		allocs := func(line string) float64 {
			b := []byte(line)
			return testing.AllocsPerRun(100, func() {
				if _, err := tt.parse(b); err != nil {
					t.Fatalf("%s(%q): %v", tt.name, line, err)
				}
			})
		}
		small, big := allocs(tt.small), allocs(tt.big)
		if big > small {
			t.Errorf("%s: %v allocations for %q, %v for %q", tt.name, big, tt.big, small, tt.small)
		}
		// And few bytes: the line, its words and the message, nothing sized by the number.
		if n := bytesPerRun(func() { _, _ = tt.parse([]byte(tt.big)) }); n > 512 {
			t.Errorf("%s: %q allocates %d bytes per parse", tt.name, tt.big, n)
		}
	}
}

// bytesPerRun is AllocsPerRun for bytes.
func bytesPerRun(f func()) uint64 {
	const runs = 1000
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}
