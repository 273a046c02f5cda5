// Package secure turns a TCP connection between two peerfs processes into
// a TLS 1.3 connection whose two ends have proven they belong to the same
// cluster, that is, that they know the same cluster secret.
//
// Every process makes a throw-away self-signed certificate when it starts;
// TLS encrypts the link and both sides present their certificate, but no
// chain is verified. Membership is proven instead, right after the
// handshake, by each side sending an HMAC-SHA256, keyed with the cluster
// secret, of its role and of the session's exported keying material
// (RFC 8446 §7.5). The exporter is unique to this TLS session, so a proof
// can be neither replayed on another connection nor relayed by a
// man in the middle, who necessarily runs two different sessions.
//
// The client proves first; the server checks that proof before it sends
// its own, so a stranger learns nothing derived from the secret. See
// docs/SECURITY.md for the threat model.
//
// The package knows nothing of the peerfs protocol: a server that refuses
// a stranger gets the established connection back with ErrNotMember, to
// send its protocol's refusal line itself.
package secure
