// Package tracker is the peerfs registration server and SYNC write-token
// arbiter (the seed design's "server"), and its client (as net/rpc keeps
// client and server together).
//
// The tracker owns two things: the list of registered peers, which it sends
// to every registered connection as an UPDATE whenever an advertised peer
// joins or leaves, and the SYNC rounds, in which it hands a single write
// token to one participant at a time ("SYNC OK") while the others read
// ("SYNC READ"), until every participant has had its turn ("SYNC END <r>").
// A lease bounds how long a holder may keep the token, so a round always
// completes, whatever the peers do.
//
// The wire format is package peerproto; docs/PROTOCOL.md is the
// specification. The client speaks first; the tracker never sends anything
// a connection did not ask for before it has registered.
//
// Concurrency: all state sits under one mutex in Tracker. Each connection
// has a reader goroutine, which parses a line and then updates the state
// under the lock, and a writer goroutine, which drains a bounded outbound
// queue with a write deadline. Nothing writes to the network while holding
// the lock, so a peer that stops reading stalls nobody: its queue fills and
// it is dropped. Close stops every goroutine the tracker started.
//
// The client, Client (client*.go), keeps one peer registered and takes
// its part in SYNC rounds, telling a Handler what the tracker says: the
// peer list, a round on, its turn (SyncTurn, whose return sends SYNC FIN),
// the round's end. It does not write to the network under its lock
// either: a registered connection's sender queues messages and writes
// them from its own goroutine.
package tracker
