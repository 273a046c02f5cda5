package cache

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Records kept in the data file's extended attribute.
//
// A new entry used to cost two new files, its data and its record, and a
// file creation is the dearest thing the cache does on common local file
// systems (reuse.go). Where the cache's file system has user extended
// attributes, an entry's record is the recordXattr attribute of its data
// file instead, so a new entry is one new file. Setting an attribute
// replaces its value whole, also when the process is killed during it,
// so a record kept there needs neither the in-place rewrite nor the
// rename a metadata file needs.
//
// An entry keeps its record in a metadata file of its own (entry.metaFile)
// where the file system has no user attributes (Cache.xattrs false, or
// Options.MetaFiles), where it was loaded so (a cache written by an
// earlier version), once its record outgrew what an attribute holds
// (maxXattrRecord: very long paths, many changed ranges), and once it is
// durable (Persist: a closed file whose upload failed, which exists
// nowhere else): versions of peerfs from before records in attributes
// read metadata files and delete data files without one, so a downgrade
// keeps what the cache promised to keep. From then on for good. Open
// prefers a metadata file to the attribute, which may hold an older
// record; the two go in an order that never lets the attribute speak for
// the entry while a metadata file overrides it:
//
//   - an entry moving to a metadata file writes it whole (a rename) before
//     anything else reads as its record, and then removes the attribute
//     (dropRecordXattr: an older version, which knows no attributes, may
//     delete the file and crash before the data file);
//   - recycle empties the attribute (a spare) before it unlinks the
//     metadata file;
//   - removeFiles unlinks the data file, and with it the attribute, first;
//     if it cannot, it empties both records instead.
//
// The durability rules are writeRecord's. A durable record goes to a
// metadata file (above); leaving a durable record kept in an attribute
// (written by a build from before that rule) fsyncs the data file after
// setting it (the attribute is the inode's, so that fsync makes it
// durable) and the entries directory, before the data changes.

// recordXattr names the attribute holding an entry's record.
const recordXattr = "user.peerfs.record"

// maxXattrRecord bounds a record kept in recordXattr. ext4 keeps an
// inode's attributes in one block (4 KiB on most file systems); a longer
// record goes to a metadata file.
const maxXattrRecord = 3072

// probeXattrs reports whether dir's file system keeps user extended
// attributes on regular files (nil): the cache then keeps records there.
func probeXattrs(dir string) error {
	f, err := os.CreateTemp(dir, "xattr-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	if err := unix.Setxattr(name, recordXattr, []byte{}, 0); err != nil {
		return &os.PathError{Op: "setxattr", Path: name, Err: err}
	}
	return nil
}

// writeRecordXattr writes b, e's encoded record (not a durable one),
// into its data file's attribute, with the fsyncs writeRecord's rules ask
// when sync is set (leaving a durable record). A record the attribute
// cannot hold moves e to a metadata file, for good. Caller holds e.mu.
func (c *Cache) writeRecordXattr(e *entry, b []byte, sync bool) error {
	err := errRecordTooLarge
	if len(b) <= maxXattrRecord {
		err = c.setRecordXattr(e.id, b, sync)
	}
	if err == nil {
		return nil
	}
	if !errors.Is(err, errRecordTooLarge) && !errors.Is(err, syscall.E2BIG) && !errors.Is(err, syscall.ERANGE) && !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("cache: write metadata: %w", err)
	}
	return c.moveRecordToFile(e, b, sync)
}

// moveRecordToFile writes b as e's record in a metadata file, which is
// its record from then on (Open prefers it), and then removes the older
// record from the attribute. The file is written whole, with a rename:
// the attribute holds the record a crash must find if the file is not
// complete. Caller holds e.mu.
func (c *Cache) moveRecordToFile(e *entry, b []byte, sync bool) error {
	err := c.replaceRecord(e.id, b, sync)
	if _, serr := os.Lstat(c.metaPath(e.id)); serr == nil {
		e.metaFile, e.metaLen = true, len(b)
	}
	if err != nil {
		return fmt.Errorf("cache: write metadata: %w", err)
	}
	c.dropRecordXattr(e.id)
	return nil
}

// dropRecordXattr removes entry id's record attribute once its record is
// a metadata file: the file wins while it exists, but an older version
// of peerfs, which knows no attributes, may delete it first and crash
// before the data file, and the attribute's older record would then
// speak. Best effort: a failure is logged.
func (c *Cache) dropRecordXattr(id string) {
	if err := clearRecordXattr(c.dataPath(id)); err != nil {
		c.log.Warn().Err(err).Str("id", id).Msg("remove an older cache record from its data file's attribute")
	}
}

// errRecordTooLarge is writeRecordXattr's own refusal of a record longer
// than maxXattrRecord.
var errRecordTooLarge = errors.New("record too large for an extended attribute")

// setRecordXattr sets entry id's record attribute to b (an empty b marks
// a spare). With sync, the data file is fsynced, and the entries
// directory, so that the record and the data file's name survive a
// power loss; a failure then puts the attribute back as it was, because
// the caller restores its state in memory as if nothing reached the
// disk. (After a failed fsync the disk may still come to hold the new
// record: that takes a second failure, a power loss before the old value
// is written back, on a disk that already failed an fsync.)
func (c *Cache) setRecordXattr(id string, b []byte, sync bool) error {
	name := c.dataPath(id)
	if !sync {
		if err := unix.Setxattr(name, recordXattr, b, 0); err != nil {
			return &os.PathError{Op: "setxattr", Path: name, Err: err}
		}
		return nil
	}
	// Opened first: a failure to open changes nothing.
	fd, err := openRaw(name, syscall.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	old, hadOld, err := readRecordXattrFd(fd)
	if err != nil {
		return &os.PathError{Op: "getxattr", Path: name, Err: err}
	}
	if err := unix.Fsetxattr(fd, recordXattr, b, 0); err != nil {
		return &os.PathError{Op: "setxattr", Path: name, Err: err}
	}
	err = syscall.Fsync(fd)
	if err != nil {
		err = &os.PathError{Op: "fsync", Path: name, Err: err}
	} else {
		err = syncDir(c.entriesDir)
	}
	if err != nil {
		var rerr error
		if hadOld {
			rerr = unix.Fsetxattr(fd, recordXattr, old, 0)
		} else {
			rerr = unix.Fremovexattr(fd, recordXattr)
		}
		if rerr == nil {
			// The data file's fsync may have made the new value
			// durable before the directory's failed.
			rerr = syscall.Fsync(fd)
		}
		if rerr != nil {
			c.log.Error().Err(rerr).Str("id", id).AnErr("cause", err).Msg("cannot put back a cache record after a failed fsync; the disk holds the new one")
		}
		return err
	}
	return nil
}

// clearRecordXattr removes data file name's record attribute, if it has
// one: where records are metadata files, an attribute left by an earlier
// run with attributes (xattr.go) must not outlive the entry it was for.
func clearRecordXattr(name string) error {
	err := unix.Removexattr(name, recordXattr)
	if err == nil || errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	return &os.PathError{Op: "removexattr", Path: name, Err: err}
}

// readRecordXattr returns data file name's record attribute; ok is false
// if it has none.
func readRecordXattr(name string) (b []byte, ok bool, err error) {
	b, ok, err = readXattr(func(buf []byte) (int, error) { return unix.Getxattr(name, recordXattr, buf) })
	if err != nil {
		err = &os.PathError{Op: "getxattr", Path: name, Err: err}
	}
	return b, ok, err
}

// readRecordXattrFd is readRecordXattr of an open data file.
func readRecordXattrFd(fd int) (b []byte, ok bool, err error) {
	return readXattr(func(buf []byte) (int, error) { return unix.Fgetxattr(fd, recordXattr, buf) })
}

// readXattr reads an attribute with get, growing its buffer as needed;
// ok is false if there is no such attribute (or no attributes at all).
func readXattr(get func([]byte) (int, error)) (b []byte, ok bool, err error) {
	buf := make([]byte, 1024)
	for {
		n, err := get(buf)
		switch {
		case err == nil:
			return buf[:n], true, nil
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, false, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 1<<16:
			buf = make([]byte, 1<<16)
		default:
			return nil, false, err
		}
	}
}
