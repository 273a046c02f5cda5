package export

// A delta PUT to a large file on a filesystem that cannot share blocks
// between files (ext4, tmpfs): copying the old content into the upload's
// temporary file, as put_delta.go does, costs a read and a write of the
// whole file for a change of a few KiB (a 512 MiB file: about a second
// and 512 MiB of disk writes per save of an appended log). Such a delta
// is applied to the file in place instead, after the old bytes it
// overwrites (none for an append) are saved in an undo record in the
// export's root and made durable. Until the change is durable and the
// record gone, the record can put the old version back, or tell that the
// change landed whole:
//
//   - a failure on the way (a full disk, a refusal from the filesystem)
//     rolls it back at once, and the PUT is refused as any failed PUT;
//   - a crash leaves the record, and NewServer ends the change before it
//     serves anything: a change that landed whole (the file holds the
//     size, mode and new bytes the record says, landed) is kept, as the
//     client may have been told; any other is rolled back (the old
//     content, size, mtime, mode and version token), so that the
//     client's replay of the upload (it never got PUT DONE) applies to
//     the version it names.
//
// The record and the root are fsynced before the file is touched; the
// file is fsynced before PUT DONE unless the PUT is async. The rest
// comes after PUT DONE, in the background (endInPlace): an async PUT's
// file fsync (a failure rolls the change back), then the record emptied
// for good and removed (dropRecord), all under patchMu, so that nothing
// else changes the file until the record is harmless. Cut by a power
// loss before then, an async change is rolled back whole or kept whole
// (the record's SHA-256 of the bytes written tells), never left partly
// changed under either version token, which other clients' caches would
// trust: async promises no more, as a rename not yet fsynced does not.
// FSYNC waits for every such end, and answers the failure of one whose
// file it covers (settled). (The eighteenth session of
// docs/PERFORMANCE.md measured the four fsyncs that all came before PUT
// DONE until then: 3.4 ms of a 10 ms append here.)
//
// Readers through the server never see such a change half done: GETs and
// the copies of other deltas read the file apart from it (readFenced), so
// what a client holds is the version before or after, and a rollback may
// give the old version token back. What the atomic replace gave and this
// does not: a process on the peer reading the file directly may see part
// of the change, as it would see a local write. A rollback that fails
// gives up (giveUp): the file stays partly changed, under a new token,
// and its record goes, lest a later start roll back acknowledged changes;
// a record that can neither be rolled back nor removed at start stops a
// writable server.
// Small files, changes that overwrite much of a file (more than half, or
// more than undoMaxSaved), files with other hard links (a link may lead
// out of the export: a PUT replaces that name, SECURITY.md), files this
// process cannot write, and filesystems with reflinks keep the copy.
//
// While a change in place runs it holds Server.patchMu, which the
// requests that could move, replace, remove or resize its file wait for:
// the record names the file by its path until it is gone. Records lie in
// the export's root only, so that a start finds them without a walk of
// the export (a read-only export has none otherwise).
//
// The record (a temporary file, UndoPrefix, that clients never see):
//
//	"peerfs undo 1\n"
//	u16 len, name            the file's path in the export
//	u64 ino, i64 btime.sec, i64 btime.nsec, u32 gen, u8 hasGen
//	                         the file: inode, birth time (0 if unknown),
//	                         inode generation (FS_IOC_GETVERSION) if known
//	u32 mode                 its permission bits
//	i64 size, i64 mtime.sec, i64 mtime.nsec
//	u8 len, token            its version token
//	u32 n, n x (i64 off, i64 len)   the old bytes saved, in order
//	the saved bytes
//	u32 CRC-32 (IEEE) of all of the above, "end\n"
//
// integers little-endian. A record that does not check out was cut short
// while it was written: the file was not touched yet, and it is removed.
//
// Since version 2 ("peerfs undo 2\n") the record also says what the
// change makes of the file, right after the saved ranges' list:
//
//	i64 size, u32 mode       the file's size and permission bits after it
//	u32 m, m x (i64 off, i64 len)   the ranges it writes, in order
//	32 bytes: SHA-256 of the bytes it writes there, in order
//
// so that a start can tell a change that landed whole from one cut short
// (landed) and keep the first. That is what lets the end of a change
// (endInPlace) come after PUT DONE: the removal of the record, and for an
// async PUT the fsync of the file too. A record of version 1, from an
// older peer, always rolls back, as it did there.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"slices"
	"strings"
	"unsafe"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

const (
	// undoMinSize is the least size of a file that a delta PUT changes in
	// place (where there is no reflink): below it, copying is cheap.
	undoMinSize = 8 << 20
	// undoMaxSaved bounds the old bytes an undo record holds, and
	// undoMaxRanges the ranges they come in; a delta that overwrites more
	// is applied to a copy.
	undoMaxSaved  = 16 << 20
	undoMaxRanges = 4096
	// copiedInPlace is how a delta PUT's old content was "copied", for
	// the request's log line: not at all, the file was changed in place.
	copiedInPlace = "in place"
)

var (
	undoMagic   = []byte("peerfs undo 1\n")
	undoMagic2  = []byte("peerfs undo 2\n")
	undoTrailer = []byte("end\n")
	// errUndoBad: an undo record that does not check out.
	errUndoBad = errors.New("undo record incomplete or damaged")
)

// undoRecord is what an undo record says: the file it restores, as it
// was, and the ranges of the old content it saved.
type undoRecord struct {
	name   string // the file's path in the export
	ino    uint64
	btime  unix.Timespec // birth time, zero where the filesystem has none
	gen    uint32        // inode generation, if hasGen
	hasGen bool
	mode   uint32 // permission bits (07777)
	size   int64
	mtime  unix.Timespec
	token  string
	saved  []peerproto.Range
	after  *undoAfter // nil in a record of version 1
}

// undoAfter is what a change in place makes of its file: the part of a
// record (version 2) by which a start recognises a change that landed.
type undoAfter struct {
	size    int64
	mode    uint32 // permission bits (07777)
	written []peerproto.Range
	sum     [sha256.Size]byte // SHA-256 of the new bytes of written, in order
}

// birth returns the birth time of open file fd, or zero if its
// filesystem keeps none: with the inode number, what tells a file from a
// later one that reuses the number.
func birth(fd int) unix.Timespec {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &stx); err != nil || stx.Mask&unix.STATX_BTIME == 0 {
		return unix.Timespec{}
	}
	return unix.Timespec{Sec: stx.Btime.Sec, Nsec: int64(stx.Btime.Nsec)}
}

// fsIocGetVersion is FS_IOC_GETVERSION, _IOR('v', 1, long) (not in
// x/sys/unix).
const fsIocGetVersion = 0x80007601 | uint(unsafe.Sizeof(uintptr(0)))<<16

// generation returns the inode generation of file fd (open for reading
// or writing, not O_PATH), which a filesystem changes when it gives the
// inode number to a new file: ext4 keeps it where 128-byte inodes keep no
// birth time.
func generation(fd int) (uint32, bool) {
	v, err := unix.IoctlGetInt(fd, fsIocGetVersion)
	if err != nil {
		return 0, false
	}
	return uint32(v), true
}

// identify fills in rec the identity of file fd (open, not O_PATH).
func (rec *undoRecord) identify(fd int, ino uint64) {
	rec.ino, rec.btime = ino, birth(fd)
	rec.gen, rec.hasGen = generation(fd)
}

// sameFile reports whether file fd (open, not O_PATH), inode ino, is the
// one rec names: the same inode number, birth time and generation, where
// both sides know them. The device is not compared: it may change across
// a reboot, and the record lies in the file's directory.
func (rec *undoRecord) sameFile(fd int, ino uint64) bool {
	var now undoRecord
	now.identify(fd, ino)
	switch {
	case now.ino != rec.ino:
		return false
	case now.btime != unix.Timespec{} && rec.btime != unix.Timespec{} && now.btime != rec.btime:
		return false
	case now.hasGen && rec.hasGen && now.gen != rec.gen:
		return false
	}
	return true
}

// undoSaved returns the ranges of a file of size bytes that delta PUT m
// overwrites or cuts off: what an undo record of it must keep.
func undoSaved(m peerproto.Put, size int64) []peerproto.Range {
	var out []peerproto.Range
	keep := min(size, m.NewSize)
	for _, r := range m.Ranges {
		if end := min(r.End(), keep); end > r.Off {
			out = append(out, peerproto.Range{Off: r.Off, Len: end - r.Off})
		}
	}
	if m.NewSize < size {
		out = append(out, peerproto.Range{Off: m.NewSize, Len: size - m.NewSize})
	}
	return out
}

// noteNoClone records that FICLONE failed on the filesystem of device
// dev as on one that cannot share blocks between files, if its error err
// says so of the filesystem. EINVAL, EXDEV and EPERM may refuse one file
// on a filesystem that shares blocks (a Btrfs nodatacow file, a file
// bind-mounted into the export): they are not noted, lest every delta on
// that device skip its reflink.
func (s *Server) noteNoClone(dev uint64, err error) {
	for _, e := range []error{unix.EOPNOTSUPP, unix.ENOTTY, unix.ENOSYS} { // ENOTSUP is EOPNOTSUPP
		if errors.Is(err, e) {
			s.noCloneDevs.Store(dev, true)
			return
		}
	}
}

// clonesNot reports whether a delta PUT to a file on device dev would be
// refused a reflink (noteNoClone, or Options.noReflink), so that put can
// tell before the upload's temporary file is made whether a delta may go
// in place.
func (s *Server) clonesNot(dev uint64) bool {
	if s.opts.noReflink {
		return true
	}
	_, ok := s.noCloneDevs.Load(dev)
	return ok
}

// undoLeast is the least size of a file a delta PUT changes in place, or
// -1 for none.
func (s *Server) undoLeast() int64 {
	if s.opts.undoMinSize != 0 {
		return s.opts.undoMinSize
	}
	return undoMinSize
}

// mayChangeInPlace reports whether a change in place could write to the
// file with attributes st.
func (s *Server) mayChangeInPlace(st *unix.Stat_t) bool {
	least := s.undoLeast()
	return least >= 0 && st.Size >= least
}

// readFenced is pread, apart from any change in place (which holds
// patchMu to write from its first byte changed until its record is gone,
// or to the end of its rollback): a reader sees the file before such a
// change or after it, never half done. So no client ever holds content that a rollback,
// which gives the old version token back, would make look current. The
// hold covers the disk read only, never network I/O.
func (s *Server) readFenced(fd int, b []byte, off int64) (int, error) {
	s.patchMu.RLock()
	defer s.patchMu.RUnlock()
	return pread(fd, b, off)
}

// undoFits reports whether delta PUT m to the file with attributes st
// is applied in place: see the file comment.
func (s *Server) undoFits(m peerproto.Put, st *unix.Stat_t) bool {
	if !s.mayChangeInPlace(st) || st.Nlink != 1 {
		return false
	}
	size := st.Size
	rs := undoSaved(m, size)
	saved := totalLen(rs)
	return len(rs) <= undoMaxRanges && saved <= undoMaxSaved && saved <= size/2
}

// patchUndo stores delta PUT m into t's existing file in place, from tmp
// (its payload as it came, in t's directory): see applyUndo. The caller
// removes tmp.
func (c *conn) patchUndo(m peerproto.Put, p string, t *putTarget, tmp string) (unix.Stat_t, string, error) {
	src, err := unix.Openat(t.dfd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return unix.Stat_t{}, "", &fs.PathError{Op: "open", Path: tmp, Err: err}
	}
	defer unix.Close(src)
	return c.applyUndo(m, p, t, filePayload(src))
}

// payloadSource is a delta PUT's payload as it came: its ranges' bytes,
// one after the other.
type payloadSource interface {
	// writeRange writes range r of the new content, which starts at
	// offset from in the payload, into file dst.
	writeRange(dst int, from int64, r peerproto.Range) error
	// sum returns the SHA-256 of the payload's first n bytes.
	sum(n int64) ([sha256.Size]byte, error)
}

// filePayload is a payload received into a temporary file, open for
// reading.
type filePayload int

func (f filePayload) writeRange(dst int, from int64, r peerproto.Range) error {
	return copyRange(dst, int(f), from, r)
}

func (f filePayload) sum(n int64) ([sha256.Size]byte, error) {
	return sumRanges(int(f), []peerproto.Range{{Off: 0, Len: n}})
}

// sumRanges returns the SHA-256 of the bytes of file fd in ranges rs,
// one after the other.
func sumRanges(fd int, rs []peerproto.Range) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	h := sha256.New()
	buf := make([]byte, min(totalLen(rs), 1<<20))
	for _, r := range rs {
		for at := r.Off; at < r.End(); {
			b := buf[:min(int64(len(buf)), r.End()-at)]
			k, err := pread(fd, b, at)
			if err == nil && k < len(b) {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return sum, err
			}
			h.Write(b)
			at += int64(k)
		}
	}
	h.Sum(sum[:0])
	return sum, nil
}

// memPayload is a payload received into memory (memPayloadMax).
type memPayload []byte

func (b memPayload) writeRange(dst int, from int64, r peerproto.Range) error {
	if from < 0 || r.Len < 0 || from+r.Len > int64(len(b)) {
		return &fs.PathError{Op: "copy", Err: io.ErrUnexpectedEOF}
	}
	_, err := pwriteFull(dst, b[from:from+r.Len], r.Off)
	return err
}

func (b memPayload) sum(n int64) ([sha256.Size]byte, error) {
	if n < 0 || n > int64(len(b)) {
		return [sha256.Size]byte{}, io.ErrUnexpectedEOF
	}
	return sha256.Sum256(b[:n]), nil
}

// applyUndo stores delta PUT m into t's existing file in place, from
// src, with an undo record: see the file comment. It returns once the
// change is written (and, unless m is async, the file fsynced), with the
// stored file's attributes and new version token; the rest (endInPlace) goes
// on after it, holding patchMu.
func (c *conn) applyUndo(m peerproto.Put, p string, t *putTarget, src payloadSource) (unix.Stat_t, string, error) {
	// What the record says the change writes, before any lock: the
	// payload does not change, and may be large (an append).
	sum, err := src.sum(totalLen(m.Ranges))
	if err != nil {
		return unix.Stat_t{}, "", fmt.Errorf("reading the payload back: %w", err)
	}
	// The export's root, where the record goes, open for fsync.
	rfd, err := c.s.jail.OpenDir("", true)
	if err != nil {
		return unix.Stat_t{}, "", err
	}
	dst := -1
	settling := false // patchMu, dst and rfd handed over to endInPlace
	defer func() {
		if !settling {
			if dst >= 0 {
				unix.Close(dst)
			}
			c.s.jail.CloseDir(rfd)
		}
	}()
	c.s.patchMu.Lock()
	defer func() {
		if !settling {
			c.s.patchMu.Unlock()
		}
	}()
	c.s.putMu.Lock()
	defer c.s.putMu.Unlock()
	if err := c.recheckBase(m, t); err != nil {
		return unix.Stat_t{}, "", err
	}
	dst, err = c.openInPlace(m, p, t, unix.O_RDWR)
	if err != nil {
		dst = -1
		return unix.Stat_t{}, "", err
	}
	defer c.s.files.invalidate(p)
	old, err := jail.Fstat(dst, p)
	if err != nil {
		return unix.Stat_t{}, "", err
	}
	if old.Nlink != 1 {
		// Linked since the PUT began: the copy it then gets is a retry.
		return unix.Stat_t{}, "", peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q got another hard link meanwhile", m.Name)
	}
	// The record names the file by its path, which renames cannot change
	// from here on (patchMu); but one may have while the payload came
	// (the file was reached through t.dfd, opened before): the path must
	// lead to this very file now, as the next start will resolve it.
	if !c.s.pathLeadsTo(t.target, &old) {
		return unix.Stat_t{}, "", peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was moved meanwhile", m.Name)
	}
	rec := &undoRecord{
		name: t.target, mode: old.Mode & 0o7777,
		size: old.Size, mtime: old.Mtim, token: m.Ver, saved: undoSaved(m, old.Size),
		after: &undoAfter{size: m.NewSize, mode: t.mode & 0o7777, written: m.Ranges, sum: sum},
	}
	rec.identify(dst, old.Ino)
	undo, err := writeUndo(rfd, dst, rec)
	if err != nil {
		return unix.Stat_t{}, "", fmt.Errorf("saving what %q held: %w", m.Name, err)
	}
	if err := c.s.patchHook("saved"); err != nil {
		return unix.Stat_t{}, "", err // as a crash leaves it: the next start rolls back
	}
	fail := func(err error) (unix.Stat_t, string, error) {
		if errors.Is(err, errPatchCrashed) {
			return unix.Stat_t{}, "", err
		}
		if rerr := c.s.rollBack(dst, rfd, undo, rec); rerr != nil {
			c.s.giveUp(dst, rfd, undo, p, rerr)
			return unix.Stat_t{}, "", fmt.Errorf("%w (and putting the old content back: %v; the file is left partly changed)", err, rerr)
		}
		return unix.Stat_t{}, "", err
	}
	// After the record, which keeps the old mode for a roll back.
	if err := c.killPriv(p, t, dst); err != nil {
		return fail(err)
	}
	if m.NewSize != old.Size {
		if err := unix.Ftruncate(dst, m.NewSize); err != nil {
			return fail(&fs.PathError{Op: "truncate", Path: p, Err: err})
		}
	}
	var from int64
	for _, r := range m.Ranges {
		if err := src.writeRange(dst, from, r); err != nil {
			return fail(err)
		}
		from += r.Len
		if err := c.s.patchHook("applied"); err != nil {
			return fail(err)
		}
	}
	st, ver, err := c.finishInPlace(m, p, t, dst, !m.Async)
	if err != nil {
		return fail(err)
	}
	settling = true
	c.s.wg.Add(1) // this connection's count is held: Close has not returned
	go c.s.endInPlace(dst, rfd, undo, p, rec, m.Async)
	return st, ver, nil
}

// endInPlace ends a change in place after its PUT DONE. For an async
// PUT it fsyncs the file first; if that fails the change may not be on
// the disk, and it is rolled back, as a failed PUT would have been (async
// promised no more). Then the undo record is emptied for good and
// removed (dropRecord). It holds patchMu (taken by applyUndo) until then,
// so that no other change reaches the file, and no other change in place
// begins, while the record could still come back at a start: one that
// comes back names the change as it landed (landed), which the start
// keeps, and nothing since. It closes dst and rfd (the export's root).
// What fails here cannot fail the PUT any more: it is logged, and
// answered to the next FSYNC of the file (settleFailed).
func (s *Server) endInPlace(dst, rfd int, undo, p string, rec *undoRecord, async bool) {
	defer s.wg.Done()
	crashed := false
	defer func() {
		unix.Close(dst)
		s.jail.CloseDir(rfd)
		if !crashed {
			s.patchMu.Unlock()
		}
	}()
	if err := s.patchHook("settle"); errors.Is(err, errPatchCrashed) {
		// As a crash leaves it: the record stays, and nothing of this
		// process touches the export any more (patchMu stays held).
		crashed = true
		return
	}
	if async {
		err := s.patchHook("settle-fsync") // tests: a failure of the fsync
		if err == nil {
			if err = unix.Fsync(dst); err != nil {
				err = &fs.PathError{Op: "fsync", Path: p, Err: err}
			}
		}
		if err != nil {
			s.settleFailed(dst, p, err)
			if rerr := s.rollBack(dst, rfd, undo, rec); rerr != nil {
				s.giveUp(dst, rfd, undo, p, rerr)
			}
			return
		}
	}
	if err := dropRecord(rfd, undo); err != nil {
		s.settleFailed(dst, p, err)
	}
}

// dropRecord makes undo record undo (in directory rfd, the export's
// root) harmless for good, then removes it: emptied and fsynced first (a
// start takes an empty record for one cut short, and removes it), so
// that neither a failed removal nor one that a power loss undoes leaves a
// record that would roll back later changes of its file at some start.
// Where it cannot be emptied, it is removed and the removal made durable.
func dropRecord(rfd int, undo string) error {
	fd, err := unix.Openat(rfd, undo, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		err = unix.Ftruncate(fd, 0)
		if err == nil {
			err = unix.Fsync(fd)
		}
		unix.Close(fd)
	}
	if err == nil {
		// Left behind, an empty record is harmless.
		_ = unix.Unlinkat(rfd, undo, 0)
		return nil
	}
	if uerr := unix.Unlinkat(rfd, undo, 0); uerr != nil {
		return fmt.Errorf("emptying undo record %s: %w; removing it: %w", undo, err, uerr)
	}
	if ferr := unix.Fsync(rfd); ferr != nil {
		return fmt.Errorf("emptying undo record %s: %w; making its removal durable: %w", undo, err, ferr)
	}
	return nil
}

// settleFailed logs err, a failure of endInPlace on file dst (path p),
// and keeps it for the next FSYNC that names the file (or syncs the
// whole export): that FSYNC must not say durable what may not be, and
// the file's own fsync would not say it again (the kernel reports a
// write-back error once, and endInPlace's fsync took it).
func (s *Server) settleFailed(dst int, p string, err error) {
	s.log.Error().Err(err).Str("path", p).Msg("ending a change in place after its PUT DONE failed")
	var st unix.Stat_t
	id := verID{}
	if unix.Fstat(dst, &st) == nil {
		id = verID{uint64(st.Dev), st.Ino}
	}
	s.settleMu.Lock()
	defer s.settleMu.Unlock()
	if s.settleErrs == nil {
		s.settleErrs = map[verID]error{}
	}
	if _, ok := s.settleErrs[id]; !ok {
		s.settleErrs[id] = fmt.Errorf("%s: storing it after PUT DONE failed: %w", p, err)
	}
}

// settled waits until every change in place has ended (endInPlace
// holds patchMu to write), then returns and forgets the failure kept for
// one of the files ids, or for any file if all.
func (s *Server) settled(ids []verID, all bool) error {
	s.patchMu.RLock()
	defer s.patchMu.RUnlock()
	s.settleMu.Lock()
	defer s.settleMu.Unlock()
	for id, err := range s.settleErrs {
		if all || slices.Contains(ids, id) {
			delete(s.settleErrs, id)
			return err
		}
	}
	return nil
}

// errPatchCrashed, returned by a test's patchHook, stops patchUndo there
// as a crash would: everything is left as a process killed at that point
// leaves it. Another error from it is a failure of that stage.
var errPatchCrashed = errors.New("peer: server: simulated crash during a change in place")

// installHook calls Options.installHook (tests).
func (s *Server) installHook() {
	if s.opts.installHook != nil {
		s.opts.installHook()
	}
}

// patchHook calls Options.patchHook (tests) at stage of patchUndo.
func (s *Server) patchHook(stage string) error {
	if s.opts.patchHook == nil {
		return nil
	}
	return s.opts.patchHook(stage)
}

// pathLeadsTo reports whether path p in the export, resolved as
// recoverUndo resolves a record's, is the file with attributes st.
func (s *Server) pathLeadsTo(p string, st *unix.Stat_t) bool {
	fd, err := s.jail.Open(p, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var now unix.Stat_t
	return unix.Fstat(fd, &now) == nil && now.Dev == st.Dev && now.Ino == st.Ino
}

// writable reports whether this process may open file fd (open for
// reading) for writing too, as a change in place must.
func writable(fd int) bool {
	return unix.Faccessat(unix.AT_FDCWD, fdPath(fd, ""), unix.W_OK, unix.AT_EACCESS) == nil
}

// writeUndo creates the undo record rec in directory dfd (the export's
// root, open for reading), with the old bytes of its saved ranges read
// from file fd, and makes it durable (its content, and its name by an
// fsync of dfd). It returns the record's name; on failure nothing is
// left.
func writeUndo(dfd, fd int, rec *undoRecord) (name string, err error) {
	ufd, name, err := createTemp(dfd, jail.UndoPrefix, 0o600)
	if err != nil {
		return "", err
	}
	defer func() {
		if ufd >= 0 {
			unix.Close(ufd)
		}
		if err != nil {
			unix.Unlinkat(dfd, name, 0)
		}
	}()
	sum := crc32.NewIEEE()
	var off int64
	put := func(b []byte) error {
		sum.Write(b)
		n, err := pwriteFull(ufd, b, off)
		off += n
		return err
	}
	if err := put(rec.header()); err != nil {
		return "", err
	}
	buf := make([]byte, min(1<<20, totalLen(rec.saved)))
	for _, r := range rec.saved {
		for at := r.Off; at < r.End(); {
			b := buf[:min(int64(len(buf)), r.End()-at)]
			k, err := pread(fd, b, at)
			if err == nil && k < len(b) {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return "", fmt.Errorf("reading the old content at %d: %w", at, err)
			}
			if err := put(b); err != nil {
				return "", err
			}
			at += int64(k)
		}
	}
	if err := put(binary.LittleEndian.AppendUint32(nil, sum.Sum32())); err != nil {
		return "", err
	}
	if err := put(undoTrailer); err != nil {
		return "", err
	}
	if err := unix.Fsync(ufd); err != nil {
		return "", &fs.PathError{Op: "fsync", Path: name, Err: err}
	}
	err = unix.Close(ufd)
	ufd = -1
	if err != nil {
		return "", &fs.PathError{Op: "close", Path: name, Err: err}
	}
	if err := unix.Fsync(dfd); err != nil {
		return "", &fs.PathError{Op: "fsync", Path: ".", Err: err}
	}
	return name, nil
}

func totalLen(rs []peerproto.Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}

// header is rec's record up to the saved bytes.
func (rec *undoRecord) header() []byte {
	le := binary.LittleEndian
	magic := undoMagic
	if rec.after != nil {
		magic = undoMagic2
	}
	b := append([]byte(nil), magic...)
	b = le.AppendUint16(b, uint16(len(rec.name)))
	b = append(b, rec.name...)
	b = le.AppendUint64(b, rec.ino)
	b = le.AppendUint64(b, uint64(rec.btime.Sec))
	b = le.AppendUint64(b, uint64(rec.btime.Nsec))
	b = le.AppendUint32(b, rec.gen)
	hasGen := byte(0)
	if rec.hasGen {
		hasGen = 1
	}
	b = append(b, hasGen)
	b = le.AppendUint32(b, rec.mode)
	b = le.AppendUint64(b, uint64(rec.size))
	b = le.AppendUint64(b, uint64(rec.mtime.Sec))
	b = le.AppendUint64(b, uint64(rec.mtime.Nsec))
	b = append(b, byte(len(rec.token)))
	b = append(b, rec.token...)
	b = le.AppendUint32(b, uint32(len(rec.saved)))
	for _, r := range rec.saved {
		b = le.AppendUint64(b, uint64(r.Off))
		b = le.AppendUint64(b, uint64(r.Len))
	}
	if a := rec.after; a != nil {
		b = le.AppendUint64(b, uint64(a.size))
		b = le.AppendUint32(b, a.mode)
		b = le.AppendUint32(b, uint32(len(a.written)))
		for _, r := range a.written {
			b = le.AppendUint64(b, uint64(r.Off))
			b = le.AppendUint64(b, uint64(r.Len))
		}
		b = append(b, a.sum[:]...)
	}
	return b
}

// readUndo reads and checks the undo record open as ufd: it returns the
// record, or errUndoBad.
func readUndo(ufd int) (*undoRecord, error) {
	var st unix.Stat_t
	if err := unix.Fstat(ufd, &st); err != nil {
		return nil, err
	}
	tail := int64(4 + len(undoTrailer))
	if st.Size < int64(len(undoMagic))+tail {
		return nil, errUndoBad
	}
	// The whole record through the checksum first: the header's lengths
	// are trusted only once it checks out.
	sum := crc32.NewIEEE()
	buf := make([]byte, 1<<20)
	body := st.Size - tail
	for at := int64(0); at < body; {
		b := buf[:min(int64(len(buf)), body-at)]
		k, err := pread(ufd, b, at)
		if err != nil {
			return nil, err
		}
		sum.Write(b[:k])
		at += int64(k)
	}
	end := make([]byte, tail)
	if _, err := pread(ufd, end, body); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(end) != sum.Sum32() || !bytes.Equal(end[4:], undoTrailer) {
		return nil, errUndoBad
	}
	head := buf[:min(int64(len(buf)), body)]
	if _, err := pread(ufd, head, 0); err != nil {
		return nil, err
	}
	r := undoReader{b: head}
	magic := r.next(len(undoMagic))
	v2 := bytes.Equal(magic, undoMagic2)
	if !v2 && !bytes.Equal(magic, undoMagic) {
		return nil, errUndoBad
	}
	le := binary.LittleEndian
	rec := &undoRecord{}
	rec.name = string(r.next(int(le.Uint16(r.next(2)))))
	rec.ino = le.Uint64(r.next(8))
	rec.btime.Sec = int64(le.Uint64(r.next(8)))
	rec.btime.Nsec = int64(le.Uint64(r.next(8)))
	rec.gen = le.Uint32(r.next(4))
	rec.hasGen = r.next(1)[0] == 1
	rec.mode = le.Uint32(r.next(4)) & 0o7777
	rec.size = int64(le.Uint64(r.next(8)))
	rec.mtime.Sec = int64(le.Uint64(r.next(8)))
	rec.mtime.Nsec = int64(le.Uint64(r.next(8)))
	rec.token = string(r.next(int(r.next(1)[0])))
	n := le.Uint32(r.next(4))
	if n > undoMaxRanges {
		return nil, errUndoBad
	}
	var saved int64
	for i := uint32(0); i < n && r.err == nil; i++ {
		g := peerproto.Range{Off: int64(le.Uint64(r.next(8))), Len: int64(le.Uint64(r.next(8)))}
		if g.Off < 0 || g.Len < 0 || g.Off > rec.size-g.Len {
			return nil, errUndoBad
		}
		rec.saved = append(rec.saved, g)
		saved += g.Len
	}
	if v2 && r.err == nil {
		a := &undoAfter{size: int64(le.Uint64(r.next(8))), mode: le.Uint32(r.next(4)) & 0o7777}
		m := le.Uint32(r.next(4))
		if a.size < 0 || m > undoMaxRanges {
			return nil, errUndoBad
		}
		for i := uint32(0); i < m && r.err == nil; i++ {
			g := peerproto.Range{Off: int64(le.Uint64(r.next(8))), Len: int64(le.Uint64(r.next(8)))}
			if g.Off < 0 || g.Len < 0 || g.Off > a.size-g.Len {
				return nil, errUndoBad
			}
			a.written = append(a.written, g)
		}
		copy(a.sum[:], r.next(sha256.Size))
		rec.after = a
	}
	if r.err != nil || !cleanRecordName(rec.name) ||
		rec.size < 0 || int64(r.off)+saved != body {
		return nil, errUndoBad
	}
	return rec, nil
}

// cleanRecordName reports whether name, a record's file, is a path in the
// export as findTarget gives one: clean, relative, not the root, with no
// reserved element, and no longer than a request's (a link may resolve
// to a longer one: such a file is not changed in place).
func cleanRecordName(name string) bool {
	p, err := peerproto.CleanPath(name)
	if err != nil || p != name || p == "" {
		return false
	}
	for _, elem := range strings.Split(p, "/") {
		if jail.Reserved(elem) {
			return false
		}
	}
	return true
}

// undoReader takes fields off a record's header; past its end, it
// records errUndoBad and returns zeros.
type undoReader struct {
	b   []byte
	off int
	err error
}

func (r *undoReader) next(n int) []byte {
	if r.err != nil || n > len(r.b)-r.off {
		r.err = errUndoBad
		return make([]byte, n)
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

// rollBack puts back in fd the version undo record rec (named undo, in
// directory dfd, the export's root open for reading) saved: its bytes,
// size, mtime, mode and version token, made durable; then it removes the
// record.
func (s *Server) rollBack(fd, dfd int, undo string, rec *undoRecord) error {
	ufd, err := unix.Openat(dfd, undo, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: undo, Err: err}
	}
	defer unix.Close(ufd)
	// The saved bytes follow the header; rec came from this record
	// (written here, or read and checked by readUndo), so re-encoding its
	// header gives their offset without reading the record again.
	at := int64(len(rec.header()))
	for _, r := range rec.saved {
		if err := copyRange(fd, ufd, at, r); err != nil {
			return err
		}
		at += r.Len
	}
	if err := unix.Ftruncate(fd, rec.size); err != nil {
		return &fs.PathError{Op: "truncate", Err: err}
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, rec.mtime}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(fd, ""), ts, 0); err != nil {
		return &fs.PathError{Op: "utimes", Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&0o7777 != rec.mode {
		// The change dropped setuid or setgid (killPriv).
		if err := unix.Fchmod(fd, rec.mode); err != nil {
			return &fs.PathError{Op: "chmod", Err: err}
		}
	}
	if validToken(rec.token) {
		s.vers.keep(fd, &st, rec.token)
	}
	if err := unix.Fsync(fd); err != nil {
		return &fs.PathError{Op: "fsync", Err: err}
	}
	if err := unix.Unlinkat(dfd, undo, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: undo, Err: err}
	}
	if err := unix.Fsync(dfd); err != nil {
		return &fs.PathError{Op: "fsync", Path: ".", Err: err}
	}
	return nil
}

// giveUp ends a change in place whose rollback failed (rerr): the file
// (fd, path p) is left as it is, partly changed, under a fresh version
// token (so that nobody takes it for the version before or the one
// asked for), and its undo record (undo in directory dfd, the export's
// root open for reading) is removed: kept, it would roll the file back
// at some later start, over changes acknowledged meanwhile. It returns
// the error removing the record, if that failed too.
func (s *Server) giveUp(fd, dfd int, undo, p string, rerr error) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil {
		s.vers.assign(fd, &st)
	}
	err := unix.Unlinkat(dfd, undo, 0)
	if err == nil {
		err = unix.Fsync(dfd)
	}
	ev := s.log.Error().Err(rerr).Str("undo", undo).Str("path", p)
	if err != nil {
		ev.AnErr("remove", err).Msg("a change in place could not be rolled back, nor its undo record removed")
		return &fs.PathError{Op: "remove", Path: undo, Err: err}
	}
	ev.Msg("a change in place could not be rolled back: the file is left partly changed, under a new version")
	return nil
}

// recoverUndo handles undo record name (in the export's root) found at
// start: a change in place that a crash interrupted is kept if it landed
// whole (keepLanded), else rolled back; a record cut short (the file was
// not touched yet) or emptied (dropRecord), or one whose file is gone or
// was replaced, is removed.
func (s *Server) recoverUndo(name string) error {
	dfd, err := s.jail.OpenDir("", true)
	if err != nil {
		return err
	}
	defer s.jail.CloseDir(dfd)
	ufd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	rec, err := readUndo(ufd)
	unix.Close(ufd)
	discard := func(why string) error {
		s.log.Warn().Str("undo", name).Msg("undo record removed: " + why)
		if err := unix.Unlinkat(dfd, name, 0); err != nil {
			return &fs.PathError{Op: "remove", Path: name, Err: err}
		}
		return nil
	}
	if errors.Is(err, errUndoBad) {
		return discard("cut short before the file was changed")
	}
	if err != nil {
		return err
	}
	target := rec.name
	// The link itself if the last element is one (then discarded);
	// directories on the way as the export's view resolves them, which
	// nothing renamed since the change began (patchMu).
	pfd, err := s.jail.Open(target, unix.O_PATH|unix.O_NOFOLLOW)
	if errors.Is(err, fs.ErrNotExist) && !jail.Escapes(err) {
		return discard(fmt.Sprintf("%q no longer exists", target))
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: target, Err: err}
	}
	st, err := jail.Fstat(pfd, target)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(pfd)
		return discard(fmt.Sprintf("%q is not a regular file now", target))
	}
	if err != nil {
		unix.Close(pfd)
		return err
	}
	// Opened only once known to be a regular file (never a FIFO).
	fd, err := unix.Open(fdPath(pfd, ""), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	unix.Close(pfd)
	if err != nil {
		return &fs.PathError{Op: "open", Path: target, Err: err}
	}
	defer unix.Close(fd)
	if !rec.sameFile(fd, st.Ino) {
		return discard(fmt.Sprintf("%q is another file now", target))
	}
	if rec.landed(fd) {
		return s.keepLanded(fd, dfd, name, rec)
	}
	if err := s.rollBack(fd, dfd, name, rec); err != nil {
		if gerr := s.giveUp(fd, dfd, name, target, err); gerr != nil {
			return fmt.Errorf("rolling back %q: %w; and removing its undo record: %w", target, err, gerr)
		}
		return nil
	}
	s.log.Warn().Str("path", target).Int64("size", rec.size).
		Msg("a change in place cut short by a crash was rolled back: the file is its last version stored whole")
	return nil
}

// landed reports whether file fd holds what the change in place of
// record rec (version 2) makes of it: its size, permission bits and the
// bytes it writes. A crash after the change was written whole (and, for
// a PUT that was not async, fsynced) leaves such a file: its PUT DONE may
// have been sent (endInPlace). The change of a record of version 1 was
// never acknowledged (it was durable and the record gone before PUT DONE):
// such a record always rolls back. A file that cannot be read is taken
// as not landed.
func (rec *undoRecord) landed(fd int) bool {
	a := rec.after
	if a == nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Size != a.size || st.Mode&0o7777 != a.mode {
		return false
	}
	sum, err := sumRanges(fd, a.written)
	return err == nil && sum == a.sum
}

// keepLanded ends, at start, the change in place of record undo (rec,
// in directory dfd, the export's root) that landed whole in file fd: the
// file stays as the change made it, and the record goes. The file keeps
// the mtime and token the change gave it, unless what holds them did not
// reach the disk with the bytes (a power loss) and the file would pass
// for its old version: then it gets the time now, and a new token.
func (s *Server) keepLanded(fd, dfd int, undo string, rec *undoRecord) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: rec.name, Err: err}
	}
	if st.Mtim == rec.mtime {
		// The bytes reached the disk and the inode's new mtime did not:
		// clients that go by mtime (base=, no attrs) would take the file
		// for its old version.
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(fd, ""), []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}, 0); err != nil {
			return &fs.PathError{Op: "utimes", Path: rec.name, Err: err}
		}
		if err := unix.Fstat(fd, &st); err != nil {
			return &fs.PathError{Op: "stat", Path: rec.name, Err: err}
		}
	}
	if s.vers.of(verStatOf(&st), fdSource(fd, "")) == rec.token {
		s.vers.assign(fd, &st)
	}
	if err := unix.Fsync(fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: rec.name, Err: err}
	}
	if err := dropRecord(dfd, undo); err != nil {
		return err
	}
	s.log.Warn().Str("path", rec.name).Int64("size", st.Size).
		Msg("a change in place that a crash interrupted had been written whole: kept")
	return nil
}
