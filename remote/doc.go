// Package remote is the mount's view of the other peers: it implements
// fusefs.Store on top of peer connections (peer.Pool), the local content
// cache (package cache) and this peer's part in the tracker's SYNC rounds.
//
// It owns the rules that make a network of exports look like one
// filesystem: attributes and listings cached for a short time, reads by
// ranged GET with read-ahead (or a whole-file fetch into the cache for small
// files), writes into a local cache copy uploaded by PUT on close, uploads
// held back while another peer holds the write token, and dirty copies
// retried until they are stored.
package remote
