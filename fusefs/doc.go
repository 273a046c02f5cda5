// Package fusefs is the bazil.org/fuse adapter of a peerfs mount.
//
// The mount's root lists every connected peer as a folder; inside a peer
// folder is that peer's exported tree. All real work is done by a Store:
// fusefs owns only the translation between FUSE requests and Store calls —
// node identity and inode numbers, short-lived attribute caching, errno
// mapping, and invalidating the kernel's caches when the Store reports a
// change. It imports neither net nor any other peerfs package.
//
// The mount and the FUSE device's protocol are package fusedev's (our
// own codec: it negotiates what bazil's Mount cannot, READDIRPLUS and
// 1 MiB requests), and requests are answered by the request server of
// package fuseserve, rather than bazil's fs.Serve: the nodes implement
// bazil's fs interfaces (imported as bfs) all the same, but a request
// that is normally answered from memory is answered on the goroutine
// that read it, which saves a goroutine hand-off per request. The server
// owns the kernel's NodeIDs; this package knows nodes by name only (peer
// and path).
//
// Mount mounts and serves a Store; Unmount cleans up a stale mount.
package fusefs
