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
//     the size and version recorded with it (the version is opaque here:
//     the mount's peerproto.Version).
//
// A dirty copy tracks what changed since its base (Meta.Changed: the byte
// ranges written or truncated away, at most MaxChanged of them), so that
// the mount can upload only those. A copy may also be partial
// (Meta.Partial): made to write into without fetching its content first
// (Partial), it holds only what was written and what was filled in from
// its base (Handle.FillAt); it is never valid content for a reader, and
// once clean it is dropped when its last Handle goes.
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
//	entries/ID.data  an entry's content; ID is random, never derived from the key.
//	                 Its extended attribute user.peerfs.record is the entry's
//	                 record: its metadata as JSON (boot stamp, peer, path,
//	                 size, version, dirty, mode, and for a dirty entry its
//	                 base: the peer version its writes started from, the
//	                 ranges changed since, and the mount's note of a failed
//	                 upload; for a partial copy the ranges it holds)
//	entries/ID.meta  the record in a file of its own instead, possibly padded
//	                 with white space: where the file system keeps no user
//	                 extended attributes, for an entry whose record outgrew
//	                 an attribute or was made durable (Persist), and in
//	                 caches written before December 2026 (xattr.go). Where
//	                 it exists it is the record.
//	tmp/             temporary files, emptied by Open
//
// An entry whose record is empty is a spare: the emptied files of a
// dropped clean entry, kept (up to a bound) for the next new entry,
// because creating a file costs far more than truncating one (reuse.go).
// Open takes such files back as spares; Close deletes them. For the same
// reason a record is an attribute where it can be: a new entry is then
// one new file, not two.
//
// Because data files are named by a random ID rather than by the key, a
// rename rewrites a single record and never moves data. A record is
// written whenever the entry turns dirty, turns clean, is renamed,
// is filled, changes mode, or gets a new base or note (SetBase, SetSent),
// when a write or truncation adds to its changed ranges, and when a
// partial copy comes to hold more, and only then: setting the same mode,
// or writing again where an entry already dirty was written, writes
// nothing. The dirty flag and a write's changed range are written before
// the first byte of the write reaches the data file; that a partial copy
// holds the bytes, after them (a crash in between leaves them unknown, so
// filled from the base again: the write, never acknowledged, is undone).
// Create writes a new or truncated file's record once, already dirty and
// with its mode, where Acquire, Truncate and SetMode would write it up to
// three times.
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
// durable state again (a later write, or MarkClean) replaces the record
// with fsync first, so a reboot can never pair new bytes with the old
// durable record. Where the boot ID cannot be read, the stamp is one of
// the process instead, which no later Open trusts: then only what Persist
// made durable survives a restart.
//
// How a record is written follows from what a crash could pair with it.
// In an attribute: setting it replaces the value whole, also when the
// process is killed during it; a durable record goes to a metadata file
// instead (which versions before attributes read too), and leaving a
// durable record kept in an attribute fsyncs the data file after it,
// which makes the inode's attributes durable with it (xattr.go). In a
// metadata file:
//
//   - A stamped record replacing a stamped one is overwritten in place,
//     with one pwrite(2) at offset 0 of at most one page, padded with
//     spaces to the old length so that no byte of the old record lingers:
//     no temporary file, no rename, no fsync. A process crash cannot tear
//     it, because the kernel copies a write of one page into the page
//     cache whole or not at all (it checks for a fatal signal only
//     between pages). A reboot discards the file whatever it holds, even
//     a mixture of two versions torn by the power loss, because every
//     version carries the stamp, first in the file. Longer records (very
//     long paths) are replaced with a rename instead.
//   - A durable record is never overwritten in place. Persist writes it to
//     a temporary file, fsyncs it, renames it over the old record and
//     fsyncs the directory; leaving the durable state replaces it the same
//     way (stamped, fsyncs included) before the data changes. After a
//     power loss the disk holds either the durable record with the data it
//     describes, or a stamped record, which Open discards.
//   - A new entry's record is created in place (or written over a
//     spare's empty one). Until it is complete the entry has no record,
//     so nothing in its data file was promised to survive; Open discards
//     a data file whose record is missing or torn, and empties one whose
//     record is empty into a spare.
//
// Recency (LRU order) lives in memory only; after a restart, entries
// whose record (or, for an attribute, data file) changed longer ago count
// as less recently used.
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
