package peerproto

import (
	"errors"
	"strings"
)

const hexDigits = "0123456789ABCDEF"

// needsEscape reports whether byte c must travel as %XX in a name token:
// '%' itself, space and control characters (which would split or end the
// line) and every byte outside printable ASCII, so the wire stays ASCII.
func needsEscape(c byte) bool {
	return c == '%' || c <= ' ' || c >= 0x7f
}

// EncodeName returns name as a single protocol token. The empty name (the
// export's root) encodes as ".".
func EncodeName(name string) string {
	if name == "" {
		return "."
	}
	n := 0
	for i := 0; i < len(name); i++ {
		if needsEscape(name[i]) {
			n++
		}
	}
	if n == 0 {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + 2*n)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

var errBadEscape = errors.New("bad %-escape in name")

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DecodeName reverses EncodeName. Raw bytes >= 0x80 are accepted as they are,
// so UTF-8 typed by a person arrives intact. The token "." decodes to ".".
func DecodeName(tok string) (string, error) {
	if strings.IndexByte(tok, '%') < 0 {
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", errBadEscape
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return "", errBadEscape
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

// Path errors returned by CleanPath.
var (
	ErrPathEmpty    = errors.New("empty path")
	ErrPathAbsolute = errors.New("absolute path")
	ErrPathEscapes  = errors.New("path escapes the export")
	ErrPathNUL      = errors.New("NUL byte in path")
	ErrPathTooLong  = errors.New("path too long")
)

// CleanPath validates a decoded name as a path relative to an export root
// and returns it in canonical form: elements joined by "/", no "." elements,
// no trailing slash, and "" for the root itself (given as "." or "/"-less "").
// It refuses absolute paths, ".." elements and NUL bytes rather than
// silently rewriting them: a request that tries to escape is an error.
func CleanPath(name string) (string, error) {
	if len(name) > MaxName {
		return "", ErrPathTooLong
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", ErrPathNUL
	}
	if strings.HasPrefix(name, "/") {
		return "", ErrPathAbsolute
	}
	if name == "" || name == "." {
		return "", nil
	}
	parts := strings.Split(name, "/")
	out := parts[:0]
	for _, p := range parts {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", ErrPathEscapes
		}
		if len(p) > MaxComponent {
			return "", ErrPathTooLong
		}
		out = append(out, p)
	}
	return strings.Join(out, "/"), nil
}

// ValidPeerName reports whether s may name a peer: 1 to MaxPeerName bytes of
// letters, digits, '.', '_' and '-', not "." or "..". Peer names become
// folder names in a mount, so they are kept plain.
func ValidPeerName(s string) bool {
	if s == "" || len(s) > MaxPeerName || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
