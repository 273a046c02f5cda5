// Package peerproto is the peerfs wire format: the line protocol spoken
// between peers and the tracker, and between peers, as typed messages with
// pure parse and format functions.
//
// The package owns nothing but bytes: it reads from a *bufio.Reader and
// writes to an io.Writer, and never opens a socket, sets a deadline or logs.
// docs/PROTOCOL.md is the specification this package implements.
//
// Every line is a verb followed by space-separated arguments and ends in
// "\n" ("\r\n" is accepted, so a person typing with nc is understood).
// File names travel percent-encoded (see EncodeName), so a name with spaces,
// "%", newlines or non-ASCII bytes is always a single token.
//
// Errors come in two kinds, following net/textproto: a *ProtocolError for
// input that does not follow the grammar, and a *FailError for a well-formed
// refusal ("PUT FAIL nospace ...") from the other side.
package peerproto
