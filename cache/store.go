package cache

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// metaVersion is the format version written into every metadata file.
const metaVersion = 1

const (
	dataSuffix = ".data"
	metaSuffix = ".meta"
)

// record is the JSON form of an entry's metadata file. Peer and Path are
// escaped with escapeName because encoding/json would replace invalid UTF-8
// (which file names may contain) with U+FFFD. A metadata file may carry
// trailing white space after the record (see writeInPlace); JSON allows it.
type record struct {
	// Boot is the kernel boot ID when this metadata (and the data it
	// describes) was written without fsync; empty when both are durable.
	// After a reboot such an entry cannot be trusted and is discarded;
	// after a mere process crash the page cache still holds it. It comes
	// first so that it lies in the first sector of the file: a stamped
	// record torn by a power loss keeps its stamp (see writeRecord).
	Boot       string `json:"boot,omitempty"`
	V          int    `json:"v"`
	Peer       string `json:"peer"`
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	Version    string `json:"ver,omitempty"` // Meta.Version
	Dirty      bool   `json:"dirty"`
	DirtySince int64  `json:"dirtySince,omitempty"` // unix ns
	Mode       uint32 `json:"mode"`
	// BaseVersion is, for a dirty entry, Meta.Base: the peer's version
	// the local copy was started from. The mount makes its upload
	// conditional on it, also after a restart.
	BaseVersion string `json:"basever,omitempty"`
	// Mtime and Base are how records written before versions (December
	// 2026) kept a clean copy's version and a dirty copy's base: a
	// modification time in ns (Base -1 for a file created here, 0
	// unknown). Read only.
	Mtime int64 `json:"mtime,omitempty"`
	Base  int64 `json:"base,omitempty"`
	// Sent is, for a dirty entry, the mount's note of the content of its
	// last upload that failed but may have reached the peer (opaque to
	// the cache); empty if none.
	Sent string `json:"sent,omitempty"`
	// Tracked and Changed are, for a dirty entry, Meta.Tracked and
	// Meta.Changed, ranges as [off, end) pairs; Partial and Known are
	// Meta.Partial and Meta.Known. Records from before them load as an
	// untracked, whole copy.
	Tracked bool       `json:"tracked,omitempty"`
	Changed [][2]int64 `json:"changed,omitempty"`
	Partial bool       `json:"partial,omitempty"`
	Known   [][2]int64 `json:"known,omitempty"`
	// Parked, OriginPeer and OriginPath are, for a dirty entry set aside
	// (Park), why, and the key it had then (escaped like Peer and Path).
	Parked     string `json:"parked,omitempty"`
	OriginPeer string `json:"originPeer,omitempty"`
	OriginPath string `json:"originPath,omitempty"`
}

// version returns the record's Meta.Version, converting an old record's
// mtime to the form the mount gives versions known by mtime ("m<ns>",
// peerproto.MtimeVersion).
func (r record) version() string {
	if r.Version == "" && r.Mtime != 0 {
		return "m" + strconv.FormatInt(r.Mtime, 10)
	}
	return r.Version
}

// base returns the record's Meta.Base, converting an old record's
// (peerproto.VersionNone for a file created here).
func (r record) base() string {
	switch {
	case r.BaseVersion != "":
		return r.BaseVersion
	case r.Base == -1:
		return "none"
	case r.Base > 0:
		return "m" + strconv.FormatInt(r.Base, 10)
	}
	return ""
}

const hexDigits = "0123456789ABCDEF"

// escapeName returns s with '%' and every byte that is not part of valid
// UTF-8 written as %XX, so that it survives a JSON round trip unchanged.
func escapeName(s string) string {
	if utf8.ValidString(s) && !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == '%' || (r == utf8.RuneError && n == 1) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&15])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// unescapeName reverses escapeName.
func unescapeName(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

// newID returns a fresh random entry ID, safe as a file name.
func newID() string {
	return strings.ToLower(rand.Text())
}

func (c *Cache) dataPath(id string) string { return filepath.Join(c.entriesDir, id+dataSuffix) }
func (c *Cache) metaPath(id string) string { return filepath.Join(c.entriesDir, id+metaSuffix) }

// onDisk is what an entry's metadata file holds, as far as a power loss
// is concerned.
type onDisk int

const (
	noRecord      onDisk = iota // no metadata file (or only a torn attempt at one)
	stampedRecord               // a boot-stamped record, which a reboot discards
	durableRecord               // an unstamped record, fsynced, that a reboot trusts
)

// diskState returns what e's metadata file holds. Caller holds e.mu or
// c.mu (persisted and durable change only with both held).
func (e *entry) diskState() onDisk {
	switch {
	case !e.persisted:
		return noRecord
	case e.durable:
		return durableRecord
	}
	return stampedRecord
}

// maxInPlace bounds a record rewritten in place: a write(2) of at most one
// page at offset 0 of a regular file is copied into the page cache whole
// or not at all, even when the process is killed during it (the kernel
// checks for a fatal signal only between pages) or the write fails.
const maxInPlace = 4096

// writeRecord writes e's record with rec, which the caller took from e
// under c.mu: into its data file's attribute where the cache keeps
// records there and e has no metadata file (writeRecordXattr), unless
// it is durable, else into its metadata file, reporting the file's new
// length in e.metaLen. was
// is the record's state before (e.diskState()). Caller holds e.mu, so no
// other record write of e runs at the same time.
//
// How a metadata file is written depends on what a crash could otherwise
// pair with the entry's data:
//
//   - durable: the record is unstamped and written to a temporary file,
//     fsynced, renamed over the old one, and the directory fsynced.
//   - leaving a durable record: the same, but stamped. The fsyncs come
//     before the caller touches the data, so after a power loss the disk
//     holds either the old durable record with the old data, or the
//     stamped record, which is discarded.
//   - replacing a stamped record: rewritten in place (see writeInPlace),
//     with no new file and no rename. A process crash cannot tear a write
//     of one page; a reboot discards the file whatever it holds, torn or
//     not, because every version of it is stamped and the stamp comes
//     first; and no durable record was ever in this file (leaving durable
//     replaced that file with a fsynced rename).
//   - no record yet: the file is created in place. A crash before it is
//     complete leaves an empty or torn file that Open discards with the
//     entry, which then had no record and so nothing written to keep.
//
// Without durable, the record is stamped with the boot ID and, except
// when leaving a durable record, nothing is fsynced.
func (c *Cache) writeRecord(e *entry, rec record, durable bool, was onDisk) error {
	rec.V = metaVersion
	rec.Boot = ""
	if !durable {
		rec.Boot = c.boot
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("cache: encode metadata: %w", err)
	}
	b = append(b, '\n')
	if c.xattrs && !e.metaFile {
		if durable {
			// A file of its own from now on, which versions before
			// records in attributes read too (xattr.go).
			return c.moveRecordToFile(e, b, true)
		}
		return c.writeRecordXattr(e, b, was == durableRecord)
	}
	e.metaFile = true
	switch {
	case durable || was == durableRecord:
		err = c.replaceRecord(e.id, b, true)
	case was == noRecord:
		err = c.createRecord(e.id, b)
	case e.metaLen > 0 && max(len(b), e.metaLen) <= maxInPlace:
		if err = c.writeInPlace(e.id, b, e.metaLen); err == nil {
			e.metaLen = max(len(b), e.metaLen)
			return nil
		}
		// A failed write of one page changed nothing; but whatever the
		// file holds now, a rename replaces it whole.
		c.log.Warn().Err(err).Str("id", e.id).Msg("rewrite metadata in place; replacing it")
		err = c.replaceRecord(e.id, b, false)
	default:
		err = c.replaceRecord(e.id, b, false)
	}
	if err != nil {
		return fmt.Errorf("cache: write metadata: %w", err)
	}
	e.metaLen = len(b)
	return nil
}

// writeInPlace overwrites the metadata file of entry id, which is old
// bytes long, with b in a single pwrite(2) at offset 0. If b is shorter it
// is padded with spaces to the old length, so that no byte of the old
// record is left behind it and no ftruncate(2) is needed: the file holds
// the old record or the new one, never a mixture.
func (c *Cache) writeInPlace(id string, b []byte, old int) error {
	if len(b) < old {
		nl := len(b) - 1
		b = append(b[:nl], bytes.Repeat([]byte{' '}, old-len(b))...)
		b = append(b, '\n')
	}
	fd, err := openRaw(c.metaPath(id), syscall.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = pwriteAll(fd, b)
	if cerr := syscall.Close(fd); err == nil && cerr != nil {
		err = &os.PathError{Op: "close", Path: c.metaPath(id), Err: cerr}
	}
	return err
}

// createRecord creates the metadata file of entry id, which has none (or
// an empty one: a spare's), and writes b to it. On failure it leaves the
// file empty, so that Open takes the entry for a spare: removing it
// would let an attribute an earlier run left on the data file speak
// (xattr.go).
func (c *Cache) createRecord(id string, b []byte) error {
	name := c.metaPath(id)
	fd, err := openRaw(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = pwriteAll(fd, b)
	if err != nil {
		if terr := syscall.Ftruncate(fd, 0); terr != nil {
			c.log.Warn().Err(terr).Str("file", name).Msg("empty a metadata file whose write failed; removing it")
			_ = os.Remove(name)
		}
	}
	if cerr := syscall.Close(fd); err == nil && cerr != nil {
		err = &os.PathError{Op: "close", Path: name, Err: cerr}
	}
	return err
}

// replaceRecord atomically replaces the metadata file of entry id with b:
// temporary file, rename. With sync set the temporary file is fsynced
// before the rename and the directory after it, so that the new record is
// what the disk holds even after a power loss.
//
// With sync, a failure leaves the metadata file as it was (its old
// content, or none), as setRecordXattr does for an attribute: the caller
// restores its state in memory as if nothing reached the disk, and a
// durable record left in place after the directory's fsync failed would
// be trusted after a reboot with data written since without fsync.
func (c *Cache) replaceRecord(id string, b []byte, sync bool) error {
	if !sync {
		_, err := c.renameRecord(id, b, false)
		return err
	}
	name := c.metaPath(id)
	old, err := os.ReadFile(name)
	had := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	renamed, err := c.renameRecord(id, b, true)
	if err == nil || !renamed {
		return err
	}
	var rerr error
	if had {
		_, rerr = c.renameRecord(id, old, true)
	} else {
		rerr = os.Remove(name)
	}
	if rerr != nil {
		c.log.Error().Err(rerr).Str("file", name).AnErr("cause", err).Msg("cannot put back a cache record after a failed fsync; the disk holds the new one")
	}
	return err
}

// renameRecord writes b to a temporary file and renames it over entry
// id's metadata file, with the fsyncs replaceRecord's sync asks; renamed
// says whether the rename was done (a failure after it is the
// directory's fsync).
func (c *Cache) renameRecord(id string, b []byte, sync bool) (renamed bool, err error) {
	f, err := os.CreateTemp(c.tmpDir, id+".meta-*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.metaPath(id))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return false, err
	}
	if sync {
		return true, syncDir(c.entriesDir)
	}
	return true, nil
}

// openRaw is open(2) without the os package's wrapping, which costs four
// fcntl(2)s and a failing epoll_ctl(2) per regular file. It retries on
// EINTR, as package os does (the Go runtime's preemption signals can
// interrupt an open on some file systems).
func openRaw(name string, flags int, perm uint32) (int, error) {
	for {
		fd, err := syscall.Open(name, flags|syscall.O_CLOEXEC, perm)
		if err == nil {
			return fd, nil
		}
		if err != syscall.EINTR {
			return -1, &os.PathError{Op: "open", Path: name, Err: err}
		}
	}
}

// openData opens (or with create, creates) a data file for reading and
// writing, without the cost of os.OpenFile (see openRaw).
func openData(name string, create bool) (*os.File, error) {
	flags := syscall.O_RDWR
	if create {
		flags |= syscall.O_CREAT | syscall.O_EXCL
	}
	fd, err := openRaw(name, flags, 0o600)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// pwriteAll writes b at offset 0 of fd, retrying on EINTR.
func pwriteAll(fd int, b []byte) error {
	for {
		n, err := syscall.Pwrite(fd, b, 0)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return &os.PathError{Op: "pwrite", Path: "metadata", Err: err}
		case n != len(b):
			return fmt.Errorf("pwrite metadata: wrote %d of %d bytes: %w", n, len(b), io.ErrShortWrite)
		}
		return nil
	}
}

// syncDir fsyncs a directory so that renames and creations in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeFiles deletes an entry's files, data first: a crash in between
// leaves a metadata file without data, which Open discards, and never a
// data file whose record attribute a metadata file overrode (an entry
// whose records outgrew the attribute: writeRecordXattr). If the data
// file stays (EIO, EROFS, an immutable file), its metadata file is
// emptied rather than deleted: Open then takes the pair for a spare, and
// the attribute does not speak. A missing metadata file is no error.
func (c *Cache) removeFiles(id string) {
	data, meta := c.dataPath(id), c.metaPath(id)
	if err := os.Remove(data); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn().Err(err).Str("file", data).Msg("remove cache file")
		if err := os.Truncate(meta, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn().Err(err).Str("file", meta).Msg("empty cache file")
		}
		// And the attribute, best effort (an immutable file or a
		// read-only file system refuses that too).
		_ = unix.Setxattr(data, recordXattr, nil, unix.XATTR_REPLACE)
		return
	}
	if err := os.Remove(meta); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn().Err(err).Str("file", meta).Msg("remove cache file")
	}
}
