package export

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// spaceReserve is kept free on the export's filesystem: a PUT is
// refused unless its size plus this much is available, so uploads never
// fill the disk to the last byte.
const spaceReserve = 1 << 20

// put stores an upload: "PUT <name> <size>", then "PUT OK", then exactly
// size bytes, then "PUT DONE <size> <mtime>" (inline: the bytes follow
// the request line at once, and there is no "PUT OK"). The bytes go to a temporary
// file next to the target, renamed over it once complete (and, unless
// async, durable), so the old content stays whole until then. A delta
// PUT's temporary file starts as a copy of the old content, and its bytes
// go to their ranges in it (put_delta.go).
//
// Everything after locating the target is done relative to its directory,
// opened once: a stat, the temporary file's creation and the rename are
// single-name calls on that descriptor, so a new small file costs a
// handful of syscalls whatever its depth.
func (c *conn) put(m peerproto.Put) error {
	const verb = peerproto.VerbPut
	// An inline payload follows the request line: every refusal before
	// it is stored must first read it, to stay in step.
	refuse := func(err error, name ...string) error {
		if m.Inline {
			if err := c.discard(m.Size); err != nil {
				return err
			}
		}
		return c.refuse(verb, err, name...)
	}
	if c.s.opts.ReadOnly {
		return refuse(peerproto.Fail(verb, peerproto.CodeReadOnly, "export is read-only"))
	}
	p, t, err := c.locate(m)
	if err != nil {
		return refuse(err, m.Name)
	}
	defer c.jail().CloseDir(t.dfd)

	if !c.s.beginTransfer() {
		return refuse(peerproto.Fail(verb, peerproto.CodeBusy, "too many transfers (%d)", c.s.opts.MaxTransfers))
	}
	// The slot frees once the file is stored, before PUT DONE goes out, so
	// a client that saw PUT DONE finds it free.
	endTransfer := sync.OnceFunc(c.s.endTransfer)
	defer endTransfer()
	if m.Delta && !t.inPlace && m.Size <= memPayloadMax && c.s.clonesNot(t.st.Dev) && c.s.undoFits(m, &t.st) {
		// A small delta to a large file on a filesystem that cannot
		// share blocks: if it goes in place, its payload is kept in
		// memory, not in a temporary file made and removed for it
		// (put_undo.go). undoFits on what findTarget saw first, so that
		// the many deltas that cannot go in place (smaller files) open
		// nothing here; openBase checks the file is still that one.
		src, st, err := c.openBase(m, p, t)
		if err == nil {
			fits := c.s.undoFits(m, &st) && writable(src) && cleanRecordName(t.target)
			unix.Close(src)
			if fits {
				need := totalLen(undoSaved(m, st.Size)) + max(0, m.NewSize-st.Size)
				if err := c.s.checkSpace(t.dfd, need); err != nil {
					return refuse(err, m.Name)
				}
				return c.putInPlaceFromMemory(m, p, t, endTransfer)
			}
		}
		// Refused or not in place: as any delta, below.
	}
	fd, tmp, err := createTemp(t.dfd, jail.TempPrefix, t.mode)
	if err != nil {
		return refuse(err, m.Name)
	}
	renamed := false
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if !renamed {
			c.removeTemp(t, tmp)
		}
	}()
	// The payload, in the order it comes, and where it goes in fd: all
	// of it from the start, or a delta's ranges in a copy of the old
	// content (in place, a delta's payload is kept as it came: patch,
	// patchUndo).
	ranges := []peerproto.Range{{Off: 0, Len: m.Size}}
	copied := ""
	if m.Delta && !t.inPlace {
		if copied, err = c.cloneBase(m, p, t, fd); err != nil {
			return refuse(err, m.Name)
		}
		if copied != copiedInPlace {
			ranges = m.Ranges
		}
	}
	if !m.Inline {
		if err := c.send(peerproto.PutOK{}); err != nil {
			return err
		}
	}

	written, rerr, werr := c.receive(fd, ranges)
	c.bytes = written
	if rerr != nil {
		// The sender stopped short: the connection is out of step.
		c.result = "cut"
		return fmt.Errorf("peer: server: put %q: payload cut after %d of %d bytes: %w", m.Name, written, m.Size, rerr)
	}
	if werr != nil {
		return c.refuse(verb, werr, m.Name)
	}
	if undo := copied == copiedInPlace; t.inPlace || undo {
		store := c.overwrite
		switch {
		case undo:
			store = c.patchUndo
		case m.Delta:
			store = c.patch
		}
		st, ver, err := store(m, p, t, tmp)
		if err != nil {
			return c.refuse(verb, err, m.Name)
		}
		// The payload's temporary file goes before the answer, which
		// gives the directory's times (putDone): as they then stay.
		c.removeTemp(t, tmp)
		renamed = true
		endTransfer()
		c.result = copied
		return c.send(c.putDone(t, &st, ver))
	}
	st, ver, err := c.settle(m, p, t, fd)
	fd = -1
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	renamed, err = c.install(m, p, t, tmp, &st)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	endTransfer()
	c.result = copied // how a delta's old content was copied, for the log
	return c.send(c.putDone(t, &st, ver))
}

// memPayloadMax bounds the payload of a delta PUT applied in place that
// is received into memory rather than into a temporary file.
const memPayloadMax = 1 << 20

// putInPlaceFromMemory stores delta PUT m (payload up to memPayloadMax)
// into t's existing file in place, its payload received into memory,
// once put has found that it goes in place: it sends PUT OK (unless
// inline), receives the payload and answers as put does.
func (c *conn) putInPlaceFromMemory(m peerproto.Put, p string, t *putTarget, endTransfer func()) error {
	const verb = peerproto.VerbPut
	if !m.Inline {
		if err := c.send(peerproto.PutOK{}); err != nil {
			return err
		}
	}
	payload := make([]byte, m.Size)
	c.rate.start(time.Now())
	n, err := io.ReadFull(c.r, payload)
	c.rate.stop()
	c.bytes = int64(n)
	if err != nil {
		// The sender stopped short: the connection is out of step.
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		c.result = "cut"
		return fmt.Errorf("peer: server: put %q: payload cut after %d of %d bytes: %w", m.Name, n, m.Size, err)
	}
	st, ver, err := c.applyUndo(m, p, t, memPayload(payload))
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	endTransfer()
	c.result = copiedInPlace
	return c.send(c.putDone(t, &st, ver))
}

// install renames tmp, the stored file with attributes st, over t's name
// and, unless m is async, makes the rename durable. The condition of m is
// checked again right before the rename, under a lock that orders
// conditional PUTs: of two writers that started from the same version,
// exactly one replaces it. renamed says whether tmp is in place (the
// caller removes it if not); err is the refusal.
func (c *conn) install(m peerproto.Put, p string, t *putTarget, tmp string, st *unix.Stat_t) (renamed bool, err error) {
	conditional := m.Base != peerproto.BaseAny || m.Ver != ""
	c.s.patchMu.RLock()
	defer c.s.patchMu.RUnlock()
	if conditional {
		c.s.putMu.Lock()
		if err := c.recheckBase(m, t); err != nil {
			c.s.putMu.Unlock()
			return false, err
		}
		c.s.installHook()
	}
	if m.Base == peerproto.BaseNone && m.Ver == "" {
		// A new file: putMu orders the uploads, but a process on the
		// peer may make the name between the check and the rename. The
		// rename itself refuses to replace it.
		err = renameNew(t.dfd, tmp, t.base)
	} else {
		err = unix.Renameat(t.dfd, tmp, t.dfd, t.base)
	}
	if conditional {
		c.s.putMu.Unlock()
	}
	c.s.files.invalidate(p)
	c.s.files.invalidate(t.target)
	if errors.Is(err, unix.EEXIST) {
		return false, peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was created meanwhile", m.Name)
	}
	if err != nil {
		return false, &fs.PathError{Op: "rename", Path: p, Err: err}
	}
	if t.exists && t.st.Ino != st.Ino {
		c.s.vers.forget(verStatOf(&t.st)) // replaced: its inode number may come back
	}
	if !m.Async {
		if err := unix.Fsync(t.dfd); err != nil {
			// The file is in place; only its durability across a crash is
			// in doubt, and the client must not believe it is stored.
			return true, &fs.PathError{Op: "fsync", Path: t.dir, Err: err}
		}
	}
	return true, nil
}

// renameNew renames from to to, both in directory dfd, unless to exists
// (EEXIST). A filesystem that cannot tell (no RENAME_NOREPLACE: EINVAL)
// gets a plain rename, after the check the caller made.
func renameNew(dfd int, from, to string) error {
	err := unix.Renameat2(dfd, from, dfd, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) {
		err = unix.Renameat(dfd, from, dfd, to)
	}
	return err
}

// putDone is the final reply of a PUT that stored a file with attributes
// st and version token ver.
//
// On a posix connection it also gives the file's attributes as they are
// under its name now, read again: the rename into place and the version
// token's record moved its ctime since st was read, and a client that
// showed st's would see the ctime move later, with nothing changed.
// (If the name holds another file, or other content, already, st's are
// given.) So are its directory's times, which a new file or new content
// renamed over the file moved, after the PUT and before it.
func (c *conn) putDone(t *putTarget, st *unix.Stat_t, ver string) peerproto.PutDone {
	done := peerproto.PutDone{Size: st.Size, Mtime: st.Mtim.Nano()}
	if c.attrs {
		done.Ver = ver
	}
	if c.posix {
		now := *st
		var cur unix.Stat_t
		if err := unix.Fstatat(t.dfd, t.base, &cur, unix.AT_SYMLINK_NOFOLLOW); err == nil &&
			cur.Ino == st.Ino && cur.Dev == st.Dev && cur.Size == st.Size && cur.Mtim == st.Mtim {
			now = cur
		}
		done.Attrs = posixEntry("", &now)
		done.Attrs.Has &^= peerproto.AttrRdev
		// And its directory's times, which a new file, or new content
		// renamed over the file, moved.
		var dir unix.Stat_t
		if err := unix.Fstat(t.dfd, &dir); err == nil {
			done.DirTimes, done.DirMtime, done.DirCtime = true, dir.Mtim.Nano(), dir.Ctim.Nano()
		}
		if t.hasDir0 {
			done.PreDirTimes, done.PreDirMtime, done.PreDirCtime = true, t.dir0.Mtim.Nano(), t.dir0.Ctim.Nano()
		}
	}
	return done
}

// locate finds where PUT m stores its file and checks that it may: p is
// its clean path and t its target, whose directory the caller closes
// (Jail.CloseDir). An error is the refusal to send, about m.Name.
func (c *conn) locate(m peerproto.Put) (p string, t *putTarget, err error) {
	p, err = c.jail().Clean(m.Name)
	if err != nil {
		return "", nil, err
	}
	if p == "" {
		return "", nil, peerproto.Fail(peerproto.VerbPut, peerproto.CodeIsDir, "the export root is a directory")
	}
	if t, err = c.findTarget(p, m.Name, !m.Async); err != nil {
		return "", nil, err
	}
	if c.posix {
		// The directory's times before the PUT changes them (putDone).
		t.hasDir0 = unix.Fstat(t.dfd, &t.dir0) == nil
	}
	// checkBase refuses with a *peerproto.FailError only: its refusal
	// does not name the file. A version is checked under putMu, on the
	// file as it is then: a SETATTR holds it from taking a file's token
	// to recording it at its new mtime (changeFD), where the file would
	// show a token it does not have.
	if m.Ver != "" {
		c.s.putMu.Lock()
		err = c.recheckBase(m, t)
		c.s.putMu.Unlock()
	} else {
		err = c.checkBase(m, t)
	}
	if err == nil {
		err = c.s.checkSpace(t.dfd, m.Size)
	}
	if err != nil {
		c.jail().CloseDir(t.dfd)
		return "", nil, err
	}
	return p, t, nil
}

// settle makes the content received in the temporary file fd what PUT m
// stores at p: it gives it its version token (returned with its
// attributes), the owner of the file it replaces where the peer keeps
// owners and its mode (replacedOwner), makes it durable unless m is
// async, and closes fd, whatever the outcome.
func (c *conn) settle(m peerproto.Put, p string, t *putTarget, fd int) (unix.Stat_t, string, error) {
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd)
		}
	}()
	st, err := jail.Fstat(fd, p)
	if err != nil {
		return st, "", err
	}
	// The owner of the file it replaces, on a peer that keeps owners,
	// and its setuid and setgid bits where the writer may keep them.
	mode, chowned, err := c.replacedOwner(m, p, t, fd)
	if err != nil {
		return st, "", err
	}
	// The file was created with the mode it must end with (less those
	// bits); the umask or the kernel (setgid) may have trimmed it.
	if st.Mode&0o7777 != mode || chowned {
		if st.Mode&0o7777 != mode {
			if err := unix.Fchmod(fd, mode); err != nil {
				return st, "", &fs.PathError{Op: "chmod", Path: p, Err: err}
			}
		}
		if st, err = jail.Fstat(fd, p); err != nil {
			return st, "", err
		}
	}
	// The new content's version token, recorded with the file before it
	// becomes visible (and before the seed's fsync, which then covers it).
	ver := c.s.vers.assign(fd, &st)
	// The seed's PUT is durable before it is visible. An async PUT is
	// visible (renamed into place, atomically) before it is durable; the
	// client asks for durability with FSYNC when its user calls fsync.
	if !m.Async {
		if err := unix.Fsync(fd); err != nil {
			return st, "", &fs.PathError{Op: "fsync", Path: p, Err: err}
		}
	}
	closed = true
	if err := unix.Close(fd); err != nil {
		return st, "", &fs.PathError{Op: "close", Path: p, Err: err}
	}
	return st, ver, nil
}

// replacedOwner gives the new content of PUT m in temporary file fd (for
// p, over t's file) the owner and group of the file it replaces, where
// this peer keeps owners and may give files away (Server.keepsOwner): as
// a write to a file on a local disk leaves its owner, and a client then
// sends no chown after the PUT (peerproto.FeatureKeepOwner). It returns
// the mode the content gets: t.mode (no setuid or setgid bit:
// contentMode), with those of the file it replaces where m.Setid says the
// writer may keep them, the export allows them, and the content has the
// owner (or, for setgid, the group) they give the rights of.
//
// The file is read right before the content is made durable and
// renamed, so that a chown or chmod made on the peer while it came is
// kept; only the very file findTarget found counts (a regular file, the
// same inode: not one put at the name since, nor a link). Otherwise the
// content stays this process's own, as on a peer that does not keep
// owners. A chown that fails is the PUT's refusal (err).
func (c *conn) replacedOwner(m peerproto.Put, p string, t *putTarget, fd int) (mode uint32, chowned bool, err error) {
	if !t.exists || t.st.Mode&unix.S_IFMT != unix.S_IFREG || !c.s.keepsOwner() && !m.Setid {
		return t.mode, false, nil
	}
	var cur unix.Stat_t
	if err := unix.Fstatat(t.dfd, t.base, &cur, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
		cur.Mode&unix.S_IFMT != unix.S_IFREG || cur.Ino != t.st.Ino || cur.Dev != t.st.Dev {
		return t.mode, false, nil
	}
	if c.s.keepsOwner() {
		// A client of a peer that says keep-owner sends no chown after
		// the PUT: content it cannot give the owner is refused, as that
		// chown would be, and the client keeps its copy.
		if err := unix.Fchown(fd, int(cur.Uid), int(cur.Gid)); err != nil {
			return 0, false, &fs.PathError{Op: "chown", Path: p, Err: err}
		}
		chowned = true
	}
	mode = t.mode
	if m.Setid && c.s.opts.AllowSetuid && cur.Mode&privBits != 0 {
		var own unix.Stat_t
		if err := unix.Fstat(fd, &own); err == nil {
			if own.Uid == cur.Uid {
				mode |= cur.Mode & unix.S_ISUID
			}
			if own.Gid == cur.Gid {
				mode |= cur.Mode & unix.S_ISGID
			}
		}
	}
	return mode, chowned, nil
}

// removeTemp removes tmp, the temporary file of a failed upload to t.
func (c *conn) removeTemp(t *putTarget, tmp string) {
	if err := unix.Unlinkat(t.dfd, tmp, 0); err != nil && err != unix.ENOENT {
		c.log.Error().Err(err).Str("temp", path.Join(t.dir, tmp)).Msg("removing temporary file of a failed upload")
	}
}

// putTarget is where a PUT stores its file.
type putTarget struct {
	target string      // the file's path: the request's, or what its symbolic link names
	dir    string      // target's directory, "" for the export
	base   string      // target's last element
	dfd    int         // dir, open; the caller closes it with Jail.CloseDir
	mode   uint32      // the stored file's permission bits: 0644, or the replaced file's (contentMode)
	st     unix.Stat_t // the existing file's attributes, if exists
	exists bool
	// dir0 are the directory's attributes when the PUT found it, if
	// hasDir0 (a posix connection: putDone).
	dir0    unix.Stat_t
	hasDir0 bool
	// inPlace: the content goes into the existing file rather than
	// replacing it, so that it stays the inode its other hard links
	// share (a posix connection, and a file with more than one link).
	inPlace bool
}

// putTarget locates a PUT's target p (name is the request's, for
// messages): it opens its directory (for fsync too if sync) and checks
// what the last element is.
// The refusals are those of PUT's first reply.
func (c *conn) findTarget(p, name string, sync bool) (*putTarget, error) {
	const verb = peerproto.VerbPut
	j := c.jail()
	t := &putTarget{target: p, mode: 0o644}
	for hop := 0; ; hop++ {
		t.dir, t.base = jail.Split(t.target)
		dfd, err := j.OpenDir(t.dir, sync)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) && !jail.Escapes(err):
			return nil, peerproto.Fail(verb, peerproto.CodeNotFound, "no such directory %q", path.Dir(name))
		case errors.Is(err, syscall.ENOTDIR):
			code, text, _ := jail.Explain(path.Dir(name), err)
			return nil, &peerproto.FailError{Verb: verb, Code: code, Text: text}
		default:
			return nil, err
		}
		st, err := jail.StatAt(dfd, t.base, t.target)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK && c.posix {
			// A posix connection replaces the link itself, as a new
			// file: the peer follows no link for it.
			t.dfd, t.st, t.exists = dfd, st, true
			return t, nil
		}
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK && hop == 0 {
			// Write to what a symbolic link names, not over the link
			// itself: resolve it inside the export, and start again there.
			j.CloseDir(dfd)
			if t.target, err = j.Resolve(p); err != nil {
				if errors.Is(err, fs.ErrNotExist) && !jail.Escapes(err) {
					return nil, peerproto.Fail(verb, peerproto.CodeNotFound, "no such directory %q", path.Dir(name))
				}
				if errors.Is(err, syscall.ENOTDIR) {
					code, text, _ := jail.Explain(path.Dir(name), err)
					return nil, &peerproto.FailError{Verb: verb, Code: code, Text: text}
				}
				return nil, err
			}
			continue
		}
		t.dfd = dfd
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			err = peerproto.Fail(verb, peerproto.CodeIsDir, "%q is a directory", name)
		case err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG:
			// A FIFO, a device, or a link still (changed meanwhile).
			err = peerproto.Fail(verb, peerproto.CodeInvalid, "%q exists and is not a regular file", name)
		case err == nil:
			// The new content keeps the old file's mode, but not its
			// setuid or setgid bit: like a write by a process without
			// CAP_FSETID, a client's new content must not run with the
			// owner's rights (contentMode).
			t.st, t.exists, t.mode = st, true, contentMode(st.Mode)
			t.inPlace = c.posix && st.Nlink > 1
		case errors.Is(err, fs.ErrNotExist):
			err = nil
		}
		if err != nil {
			j.CloseDir(dfd)
			return nil, err
		}
		return t, nil
	}
}

// checkBase enforces a conditional PUT's base (see peerproto.Put) on the
// target as putTarget found it: it returns a conflict refusal if that is
// not the version the writer started from.
func (c *conn) checkBase(m peerproto.Put, t *putTarget) error {
	var mtime int64
	if t.exists {
		mtime = t.st.Mtim.Nano()
	}
	switch {
	case m.Ver != "" && !t.exists:
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was removed meanwhile", m.Name)
	case m.Ver != "":
		if cur := c.s.vers.of(verStatOf(&t.st), fdSource(t.dfd, t.base)); cur != m.Ver {
			return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q changed meanwhile (version %s, base %s)", m.Name, cur, m.Ver)
		}
		return nil
	case m.Base == peerproto.BaseAny:
		return nil
	case m.Base == peerproto.BaseNone && t.exists:
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was created meanwhile (mtime %d)", m.Name, mtime)
	case m.Base > 0 && !t.exists:
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was removed meanwhile", m.Name)
	case m.Base > 0 && mtime != m.Base:
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q changed meanwhile (mtime %d, base %d)", m.Name, mtime, m.Base)
	}
	return nil
}

// recheckBase is checkBase on the target as it is now.
func (c *conn) recheckBase(m peerproto.Put, t *putTarget) error {
	st, err := jail.StatAt(t.dfd, t.base, t.target)
	switch {
	case err == nil:
		t.st, t.exists = st, true
	case errors.Is(err, fs.ErrNotExist):
		t.exists = false
	default:
		return err
	}
	return c.checkBase(m, t)
}

// spaceFresh is how long a free-space figure is trusted for small
// uploads, and spaceSlack how far below it they must stay to skip a
// new statfs. The check is a courtesy (a full disk still fails the write
// itself with nospace); it need not cost a syscall per small file.
const (
	spaceFresh = time.Second
	spaceSlack = 64 << 20
)

// checkSpace refuses an upload of size bytes that would leave less than
// spaceReserve free on the filesystem of directory dfd.
func (s *Server) checkSpace(dfd int, size int64) error {
	now := time.Now()
	s.spaceMu.Lock()
	recent := now.Sub(s.spaceAt) < spaceFresh && size+spaceReserve+spaceSlack <= s.spaceAvail
	s.spaceMu.Unlock()
	if recent {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(dfd, &st); err != nil {
		return &fs.PathError{Op: "statfs", Path: ".", Err: err}
	}
	avail := int64(st.Bavail) * int64(st.Bsize)
	s.spaceMu.Lock()
	s.spaceAvail, s.spaceAt = avail, now
	s.spaceMu.Unlock()
	if need := size + spaceReserve; avail < need {
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeNoSpace, "need %d bytes, %d available", need, avail)
	}
	return nil
}

// createTemp creates an empty, exclusive temporary file, its name prefix
// (jail.TempPrefix or one that starts with it) and random characters, with
// permission bits mode in directory dfd and returns it with its name.
func createTemp(dfd int, prefix string, mode uint32) (int, string, error) {
	var rnd [8]byte
	for range 10 {
		if _, err := rand.Read(rnd[:]); err != nil {
			return -1, "", err
		}
		name := prefix + hex.EncodeToString(rnd[:])
		fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode&0o777)
		switch err {
		case nil:
			return fd, name, nil
		case unix.EEXIST, unix.EINTR:
			continue
		}
		return -1, "", &fs.PathError{Op: "create", Path: name, Err: err}
	}
	return -1, "", errors.New("peer: no free temporary name")
}

// receive copies the payload from the connection to file fd, whose offset
// is 0: for each of ranges, in turn, its Len bytes to its offset. A read error (rerr) means
// the payload stopped short and the connection is out of step. After a
// write error (werr) the rest of the payload is read and dropped, so the
// connection stays usable for the refusal; if that fails too, rerr is set
// as well.
//
// A range that fits the connection's read buffer is written straight
// from it; a larger one goes through a pooled sendChunk buffer, filled
// before each write, so a big upload costs one write(2) per MiB rather
// than one per TLS record.
func (c *conn) receive(fd int, ranges []peerproto.Range) (written int64, rerr, werr error) {
	c.rate.start(time.Now())
	defer c.rate.stop()
	return c.receiveRanges(fd, ranges)
}

// receiveRanges is receive within a transfer whose minimum rate the
// caller runs (a streamed PUT's, over all its chunks).
func (c *conn) receiveRanges(fd int, ranges []peerproto.Range) (written int64, rerr, werr error) {
	var buf []byte
	var pos int64 // fd's offset, while werr is nil
	for _, r := range ranges {
		if werr == nil && r.Off != pos {
			if _, err := unix.Seek(fd, r.Off, io.SeekStart); err != nil {
				werr = &fs.PathError{Op: "seek", Path: "", Err: err}
			}
		}
		pos = r.End()
		if r.Len <= int64(c.r.Size()) {
			b, err := c.r.Peek(int(r.Len))
			if len(b) > 0 && werr == nil {
				var w int64
				w, werr = writeFull(fd, b)
				written += w
			}
			c.r.Discard(len(b))
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return written, err, werr
			}
			continue
		}
		if buf == nil {
			bp := c.s.bufs.Get().(*[]byte)
			defer c.s.bufs.Put(bp)
			buf = *bp
		}
		for got := int64(0); got < r.Len; {
			n, err := io.ReadFull(c.r, buf[:min(int64(len(buf)), r.Len-got)])
			got += int64(n)
			if n > 0 && werr == nil {
				var w int64
				w, werr = writeFull(fd, buf[:n])
				written += w
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return written, err, werr
			}
		}
	}
	return written, nil, werr
}

// discard reads and drops n payload bytes: an inline PUT's, refused.
func (c *conn) discard(n int64) error {
	c.rate.start(time.Now())
	defer c.rate.stop()
	for n > 0 {
		k, err := c.r.Discard(int(min(n, 1<<30)))
		n -= int64(k)
		if err != nil {
			c.result = "cut"
			return fmt.Errorf("peer: server: put: refused inline payload cut with %d bytes to go: %w", n, err)
		}
	}
	return nil
}

// writeFull writes all of b to fd.
func writeFull(fd int, b []byte) (int64, error) {
	var done int64
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if n > 0 {
			done += int64(n)
			b = b[n:]
		}
		switch {
		case err == unix.EINTR:
		case err != nil:
			return done, &fs.PathError{Op: "write", Path: "", Err: err}
		case n == 0:
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}
