// Package cache is the on-disk content cache of a peerfs mount.
//
// It owns the local copies of remote files, keyed by (peer name, path
// relative to that peer's export), in a directory of its own. A copy is
// either
//
//   - dirty: written through the mount and not yet uploaded. Dirty copies are
//     never evicted, survive a crash or restart of the mount (Open reloads
//     them and Dirty lists them), and become clean only through MarkClean
//     after a successful upload; or
//   - clean: a whole remote file, valid for as long as the peer still reports
//     the size and modification time recorded with it.
//
// The cache is bounded by Options.MaxBytes: when it is over the bound it
// evicts clean entries that no Handle pins, least recently used first. Dirty
// data is never dropped to meet the bound; Stats reports when dirty and
// pinned data alone keep the cache over it.
//
// # On-disk layout
//
// Under Options.Dir:
//
//	lock             flock(2)ed while a Cache has the directory open
//	entries/ID.data  an entry's content; ID is random, never derived from the key
//	entries/ID.meta  its metadata as JSON (peer, path, size, mtime, dirty, mode)
//	tmp/             temporary files, emptied by Open
//
// Because data files are named by a random ID rather than by the key, a
// rename rewrites a single metadata file and never moves data. A metadata
// file is written atomically (temp file, fsync, rename, fsync of the
// directory) whenever the entry turns dirty, turns clean, is renamed, is
// filled or changes mode. The dirty flag is made durable before the first
// byte of a write reaches the data file, so a crash can never leave an
// entry marked clean whose data was not uploaded. Clean content is fsynced
// before it is recorded as clean, so a power loss cannot leave a clean entry
// with the right size and the wrong bytes. Recency (LRU order) lives in
// memory only; after a restart, older metadata files count as less recently
// used.
//
// # Concurrency
//
// A Cache and its Handles are safe for concurrent use. Several Handles may
// pin one entry; reads and writes through them go to one shared file.
// Replacing a clean entry (Fill, or Acquire with create, when the cached
// copy is stale) or removing an entry detaches it: Handles that still pin
// it keep working on the old, unlinked file, as with an unlinked file in a
// local file system, but nothing written through them is persisted any more.
package cache
