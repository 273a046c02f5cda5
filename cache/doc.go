// Package cache is the on-disk content cache of a peerfs mount.
//
// It owns the local copies of remote files, keyed by (peer name, path
// relative to that peer's export), in a directory of its own. A copy is
// either
//
//   - dirty: written through the mount and not yet uploaded. Dirty copies are
//     never evicted, survive a crash or restart of the mount process (Open
//     reloads them and Dirty lists them) and, once Persist made them
//     durable, a power loss too; they become clean only through MarkClean
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
// file is written atomically (temp file, rename) whenever the entry turns
// dirty, turns clean, is renamed, is filled or changes mode, and the dirty
// flag is written before the first byte of a write reaches the data file.
//
// # Durability
//
// fsync costs milliseconds; the cache pays it only where it buys
// something. Ordinary records are written without fsync and stamped with
// the kernel's boot ID: after a crash of the process the page cache still
// holds data and record together, so Open trusts them; after a reboot it
// cannot, and Open discards every stamped entry. Persist (which the mount
// calls when an upload fails, that is, exactly when a closed file exists
// nowhere else) fsyncs the data and writes an unstamped record with fsync
// and a directory fsync: such an entry survives a power loss. Leaving the
// durable state again (a later write) rewrites the record with fsync first,
// so a reboot can never pair new bytes with the old durable record.
// Recency (LRU order) lives in memory only; after a restart, older
// metadata files count as less recently used.
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
