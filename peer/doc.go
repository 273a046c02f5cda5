// Package peer is the client to other peers: Conn is one connection to a
// peer's export server (package export), speaking the line protocol of
// package peerproto; Pool keeps connections to one peer for parallel
// requests. The shell and the FUSE mount's storage core use it.
package peer
