package export

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/peerfs/peerfs/export/jail"
	"golang.org/x/sys/unix"
)

// Version tokens (peerproto.Entry.Ver) tell one content of a file from
// another where modification times cannot: on a filesystem that keeps
// whole seconds (ext4 with 128-byte inodes, FAT, many NAS shares) two
// uploads within one second, of one size, would otherwise look the same,
// and a conditional PUT or a cached copy checked by mtime would take one
// for the other.
//
// Every file the server writes (PUT, SETATTR size=) gets a fresh random
// token, kept in memory and in the file's extended attribute
// versionXattr together with the size and mtime it was given at, so that
// it survives a restart of the peer. The token holds while the file still
// has that size and mtime: a change behind the server's back that alters
// either (any write on a filesystem with fine timestamps) ends it. Files
// without a valid recorded token (never written through peerfs, changed
// since, or on a filesystem without user extended attributes after a
// restart) get a token derived from inode number, size, mtime and ctime.
//
// What this cannot see: a change made behind the server's back, in place,
// that keeps the size, within one timestamp tick (or that restores mtime
// and, on such a filesystem, happens within the tick of ctime too).
const versionXattr = "user.peerfs.version"

// verMaxEntries bounds the table; past it, it is cleared (the tokens of
// files written through this server then come from their attributes).
const verMaxEntries = 1 << 17

// versions is a peer server's table of version tokens. It is safe for
// concurrent use.
type versions struct {
	// noXattr is set once the export's filesystem refused a user
	// extended attribute: tokens are then kept in memory only.
	noXattr atomic.Bool

	mu sync.Mutex // protects m
	m  map[verID]verEntry
}

// verID identifies an inode.
type verID struct{ dev, ino uint64 }

// verEntry is what the table knows of an inode.
type verEntry struct {
	size, mtime, ctime int64
	token              string
	// assigned: the server wrote this content and gave it token; it
	// holds while size and mtime are unchanged. Otherwise token is
	// derived, and valid while ctime is unchanged too.
	assigned bool
}

func newVersions() *versions { return &versions{m: make(map[verID]verEntry)} }

// verStat is what a token depends on, from a stat(2) of the file.
type verStat struct {
	dev, ino           uint64
	size, mtime, ctime int64
}

func verStatOf(st *unix.Stat_t) verStat {
	return verStat{uint64(st.Dev), st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
}

func verStatOfSys(st *syscall.Stat_t) verStat {
	return verStat{uint64(st.Dev), st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano()}
}

// xattrSource opens the file whose token is asked for, for reading its
// extended attribute: it returns a path for the *xattr calls (see
// fdPath), whether its last element must be followed (a descriptor's
// magic link) or not (a name, maybe of a link), and a function to call
// when done with it; or ok false.
type xattrSource func() (path string, follow bool, done func(), ok bool)

// fdSource is the xattrSource of name in directory fd ("" for fd itself),
// which stays open meanwhile.
func fdSource(fd int, name string) xattrSource {
	return func() (string, bool, func(), bool) { return fdPath(fd, name), name == "", func() {}, true }
}

// pathSource is the xattrSource of path p in the export, opened (O_PATH,
// following links inside the export) only if the attribute is needed.
func pathSource(j *jail.Jail, p string) xattrSource {
	return func() (string, bool, func(), bool) {
		fd, err := j.Open(p, unix.O_PATH)
		if err != nil {
			return "", false, nil, false
		}
		return fdPath(fd, ""), true, func() { unix.Close(fd) }, true
	}
}

// of returns the version token of the regular file with attributes st.
// src, if not nil, gives the file for reading its extended attribute;
// it is used only when the table does not know the file.
func (v *versions) of(st verStat, src xattrSource) string {
	id := verID{st.dev, st.ino}
	size, mtime, ctime := st.size, st.mtime, st.ctime
	v.mu.Lock()
	e, ok := v.m[id]
	v.mu.Unlock()
	if ok && e.size == size && e.mtime == mtime && (e.ctime == ctime || e.ctime == -1 && e.assigned) {
		if e.ctime == -1 {
			// Just written here: learn the ctime its rename gave it.
			e.ctime = ctime
			v.put(id, e)
		}
		return e.token
	}
	ne := verEntry{size: size, mtime: mtime, ctime: ctime}
	switch {
	case ok && e.assigned && e.size == size && e.mtime == mtime && v.noXattr.Load():
		// Only ctime moved (a chmod, a rename, a link) and there is no
		// attribute to confirm it is the same inode's content: it may be
		// a new file that reuses the inode number. Safer to call it new.
		ne.token = derivedToken(st)
	default:
		if tok, ok := v.readXattr(src, size, mtime); ok {
			ne.token, ne.assigned = tok, true
		} else {
			ne.token = derivedToken(st)
		}
	}
	v.put(id, ne)
	return ne.token
}

// assign gives the content of regular file fd (attributes st, taken after
// its last write) a fresh token, records it in the file's extended
// attribute, and returns it. Recording changes the file's ctime only.
func (v *versions) assign(fd int, st *unix.Stat_t) string {
	token := fmt.Sprintf("%016x", rand.Uint64())
	v.record(fd, st, token)
	return token
}

// keep records that fd's content is still the version token, after a
// change of its mtime only (SETATTR mtime=): st is taken after the change.
func (v *versions) keep(fd int, st *unix.Stat_t, token string) {
	v.record(fd, st, token)
}

func (v *versions) record(fd int, st *unix.Stat_t, token string) {
	if !v.noXattr.Load() {
		val := token + " " + strconv.FormatInt(st.Size, 10) + " " + strconv.FormatInt(st.Mtim.Nano(), 10)
		err := unix.Fsetxattr(fd, versionXattr, []byte(val), 0)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			v.noXattr.Store(true)
		}
		// Other failures (no space for attributes, a quota) leave this
		// file's token in memory only.
	}
	// ctime is left unknown (-1): setting the attribute changed it, and
	// so will the rename that usually follows. The next lookup confirms
	// the token from the attribute (or, without one, see of).
	v.put(verID{uint64(st.Dev), st.Ino}, verEntry{size: st.Size, mtime: st.Mtim.Nano(), ctime: -1, token: token, assigned: true})
}

// moved records that the server itself changed only the ctime of the file
// with attributes st (a chmod or a rename of it): an assigned token stays
// valid without asking the attribute again; so does a derived one, if
// pre (the attributes before the change; zero if unknown) is the same
// inode at the same size, mtime and ctime the token was derived at. A
// derived token kept so lives in memory only: after a restart of the
// peer the file's token is derived again, from its new ctime.
func (v *versions) moved(st, pre verStat) {
	id := verID{st.dev, st.ino}
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[id]
	if !ok || e.size != st.size || e.mtime != st.mtime {
		return
	}
	same := pre.dev == st.dev && pre.ino == st.ino && pre.size == st.size && pre.mtime == st.mtime && e.ctime == pre.ctime
	if e.assigned || same {
		e.ctime = st.ctime
		v.m[id] = e
	}
}

// forget drops what the table knows of the file with attributes st: it is
// being removed or changed by name, and its inode number may come back as
// another file.
func (v *versions) forget(st verStat) {
	v.mu.Lock()
	delete(v.m, verID{st.dev, st.ino})
	v.mu.Unlock()
}

func (v *versions) put(id verID, e verEntry) {
	v.mu.Lock()
	if len(v.m) >= verMaxEntries {
		clear(v.m)
	}
	v.m[id] = e
	v.mu.Unlock()
}

// readXattr returns the token recorded in the extended attribute of the
// file src gives if it was given at this size and mtime.
func (v *versions) readXattr(src xattrSource, size, mtime int64) (string, bool) {
	if src == nil || v.noXattr.Load() {
		return "", false
	}
	path, follow, done, ok := src()
	if !ok {
		return "", false
	}
	defer done()
	var buf [128]byte
	get := unix.Lgetxattr // never the attribute of what a link names
	if follow {
		get = unix.Getxattr
	}
	n, err := get(path, versionXattr, buf[:])
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			v.noXattr.Store(true)
		}
		return "", false
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 3 || f[1] != strconv.FormatInt(size, 10) || f[2] != strconv.FormatInt(mtime, 10) || !validToken(f[0]) {
		return "", false
	}
	return f[0], true
}

// validToken reports whether s is a token assign could have made.
func validToken(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// derivedToken is the token of a file the server did not write (or whose
// token no longer holds): a hash of its inode number, size, mtime and
// ctime, so that it is stable across restarts while the file is unchanged.
func derivedToken(st verStat) string {
	h := fnv.New64a()
	var b [8]byte
	for _, x := range []uint64{st.ino, uint64(st.size), uint64(st.mtime), uint64(st.ctime)} {
		binary.LittleEndian.PutUint64(b[:], x)
		h.Write(b[:])
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// fdPath names the file at name in directory fd (or, with name "", the
// file fd itself) for the *xattr calls that take a path: through
// /proc/self/fd, so nothing is resolved beyond what fd already is.
func fdPath(fd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if name != "" {
		p += "/" + name
	}
	return p
}
