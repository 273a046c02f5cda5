// Package remote is the mount's view of the other peers: it implements
// fusefs.Store on top of peer connections (peer.Pool), the local content
// cache (package cache) and this peer's part in the tracker's SYNC rounds.
//
// It owns the rules that make a network of exports look like one
// filesystem: attributes and listings cached for a short time, reads by
// ranged GET with read-ahead (or a whole-file fetch into the cache for small
// files), writes into a local cache copy (fetched only where it is read)
// uploaded by PUT on close (only what changed, where the peer takes it), uploads
// held back while another peer holds the write token, and dirty copies
// retried until they are stored, or set aside when they never can be.
//
// # Parts
//
// Store (store.go) is a thin facade over parts that own their state:
//
//   - peerConn, one per peer shown as a folder, made of a link (link.go:
//     the pool, fail-fast, identity and health, and do(), the only way a
//     request reaches a peer), an attrCache (attrs.go: attributes and
//     listings, with the Store's clock) and unsynced (sync.go: what the
//     peer must still make durable);
//   - fileState (files.go), a local copy being written or waiting for
//     upload, and the handles open on files (handles.go);
//   - the read path (read.go, prefetch.go), copies written without their
//     content and filled in where needed (fill.go), the upload (upload.go,
//     deltas in upload_delta.go, conflicts in conflict.go), and copies set
//     aside (unsent.go);
//   - the namespace operations (namespace.go), the peer set (presence.go),
//     identities (identity.go), SYNC rounds and retries (sync.go), the
//     Store as the tracker client's Handler (round.go), and the status
//     report (report.go, status.go).
//
// A read goes Store.ReadAt (read.go) -> fetchWhole or readRange ->
// Store.poolDo (status.go) -> link.do (link.go) -> peer.Conn's GET.
//
// # Errors
//
// The Store speaks fusefs's error vocabulary (errors.go); the FUSE edge
// picks errnos.
//
// # Locks
//
// In order: fileState.up (serialises what sends one file's name to its
// peer), fileState.fetch, handle.mu, Store.mu, then leaves taken alone:
// fileState.mu and each part's own mutex. Only up, fetch and handle.mu
// are held across network I/O.
package remote
