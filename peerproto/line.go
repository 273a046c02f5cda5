package peerproto

import (
	"bufio"
	"errors"
	"io"
)

// ReadLine reads one line from r and returns it without its "\n" or "\r\n"
// terminator. The returned slice may point into r's buffer and is valid only
// until the next read from r.
//
// A line longer than MaxLine yields a *ProtocolError wrapping ErrLineTooLong;
// the bytes read so far are consumed and the caller should drop the
// connection, which is no longer in step. Memory grows only with bytes that
// actually arrived, never with anything a line announces. A final line
// without terminator yields io.ErrUnexpectedEOF; a clean end io.EOF.
func ReadLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == nil {
		// A reader with a buffer larger than MaxLine returns long lines whole.
		if len(line) > MaxLine {
			return nil, &ProtocolError{Msg: "line longer than " + itoa(MaxLine) + " bytes", Err: ErrLineTooLong}
		}
		return trimEOL(line), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	// Longer than r's buffer: accumulate, bounded by MaxLine.
	buf := append([]byte(nil), line...)
	for {
		if len(buf) > MaxLine {
			return nil, &ProtocolError{Msg: "line longer than " + itoa(MaxLine) + " bytes", Err: ErrLineTooLong}
		}
		line, err = r.ReadSlice('\n')
		buf = append(buf, line...)
		switch {
		case err == nil:
			if len(buf) > MaxLine {
				return nil, &ProtocolError{Msg: "line longer than " + itoa(MaxLine) + " bytes", Err: ErrLineTooLong}
			}
			return trimEOL(buf), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

func trimEOL(line []byte) []byte {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	return line[:n]
}

// WriteMessage formats m as one line and writes it to w in a single Write.
func WriteMessage(w io.Writer, m Message) error {
	buf := m.AppendTo(make([]byte, 0, 64))
	buf = append(buf, '\n')
	_, err := w.Write(buf)
	return err
}

// Format returns m as a line, terminator included.
func Format(m Message) string {
	return string(append(m.AppendTo(nil), '\n'))
}

// ReadReply reads one line from r and parses it as a reply to verb (see
// ParseReply).
func ReadReply(r *bufio.Reader, verb string) (Message, error) {
	line, err := ReadLine(r)
	if err != nil {
		return nil, err
	}
	return ParseReply(line, verb)
}
