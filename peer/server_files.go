package peer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/peerproto"
)

// srvSpaceReserve is kept free on the export's filesystem: a PUT is
// refused unless its size plus this much is available, so uploads never
// fill the disk to the last byte.
const srvSpaceReserve = 1 << 20

// srvSendChunk is the most file data sent under one write deadline. Each
// chunk goes out through sendfile; a receiver slower than
// srvSendChunk per IOTimeout is cut.
const srvSendChunk = 1 << 20

// put stores an upload: "PUT <name> <size>", then "PUT OK", then exactly
// size bytes, then "PUT DONE <size> <mtime>". The bytes go to a temporary
// file next to the target, renamed over it once complete and durable, so
// the old content stays whole until then.
func (c *srvConn) put(m peerproto.Put) error {
	const verb = peerproto.VerbPut
	j := c.s.jail
	p, refused, err := c.writePath(verb, m.Name)
	if refused {
		return err
	}
	if p == "" {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "the export root is a directory"))
	}
	// Write to what a symbolic link names, not over the link itself.
	target, err := j.resolve(p)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && !jailEscapes(err):
		// Only the last element may be missing: the parent is.
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotFound, "no such directory %q", path.Dir(m.Name)))
	case errors.Is(err, syscall.ENOTDIR):
		return c.refuse(verb, err, path.Dir(m.Name))
	default:
		return c.refuse(verb, err, m.Name)
	}
	mode := fs.FileMode(0o644)
	switch fi, err := j.lstat(target); {
	case err == nil && fi.IsDir():
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeIsDir, "%q is a directory", m.Name))
	case err == nil && !fi.Mode().IsRegular():
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeInvalid, "%q exists and is not a regular file", m.Name))
	case err == nil:
		mode = jailFileMode(jailModeBits(fi.Mode()))
	case errors.Is(err, fs.ErrNotExist):
		dir := path.Dir(target)
		if dir == "." {
			dir = ""
		}
		switch di, err := j.stat(dir); {
		case errors.Is(err, fs.ErrNotExist) && !jailEscapes(err):
			return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotFound, "no such directory %q", path.Dir(m.Name)))
		case err != nil:
			return c.refuse(verb, err, path.Dir(m.Name))
		case !di.IsDir():
			return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotDir, "%q is not a directory", path.Dir(m.Name)))
		}
	default:
		return c.refuse(verb, err, m.Name)
	}
	if err := c.checkBase(m, target); err != nil {
		return c.refuse(verb, err)
	}
	_, _, avail, err := j.statfs()
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	if need := m.Size + srvSpaceReserve; avail < need {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNoSpace, "need %d bytes, %d available", need, avail))
	}

	if !c.s.beginTransfer() {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeBusy, "too many transfers (%d)", c.s.opts.MaxTransfers))
	}
	// The slot frees once the file is stored, before PUT DONE goes out, so
	// a client that saw PUT DONE finds it free.
	endTransfer := sync.OnceFunc(c.s.endTransfer)
	defer endTransfer()
	f, tmp, err := j.createTemp(path.Dir(target))
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	renamed := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if !renamed {
			if err := j.root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
				c.log.Error().Err(err).Str("temp", tmp).Msg("removing temporary file of a failed upload")
			}
		}
	}()
	if err := c.send(peerproto.PutOK{}); err != nil {
		return err
	}

	written, rerr, werr := c.receive(f, m.Size)
	c.bytes = written
	if rerr != nil {
		// The sender stopped short: the connection is out of step.
		c.result = "cut"
		return fmt.Errorf("peer: server: put %q: payload cut after %d of %d bytes: %w", m.Name, written, m.Size, rerr)
	}
	if werr != nil {
		return c.refuse(verb, werr, m.Name)
	}
	// The seed's PUT is durable before it is visible. An async PUT is
	// visible (renamed into place, atomically) before it is durable; the
	// client asks for durability with FSYNC when its user calls fsync.
	if !m.Async {
		if err := f.Sync(); err != nil {
			return c.refuse(verb, err, m.Name)
		}
	}
	if err := f.Chmod(mode); err != nil {
		return c.refuse(verb, err, m.Name)
	}
	fi, err := f.Stat()
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	// The condition is checked again right before the rename, under a
	// lock that orders conditional PUTs: of two writers that started from
	// the same version, exactly one replaces it.
	c.s.putMu.Lock()
	if err := c.checkBase(m, target); err != nil {
		c.s.putMu.Unlock()
		return c.refuse(verb, err)
	}
	err = j.root.Rename(tmp, target)
	c.s.putMu.Unlock()
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	renamed = true
	if m.Async {
		endTransfer()
		return c.send(peerproto.PutDone{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()})
	}
	if err := j.syncDir(path.Dir(target)); err != nil {
		// The file is in place; only its durability across a crash is in
		// doubt, and the client must not believe it is stored.
		return c.refuse(verb, err, m.Name)
	}
	endTransfer()
	return c.send(peerproto.PutDone{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()})
}

// checkBase enforces a conditional PUT's base (see peerproto.Put): it
// returns a conflict refusal if target is not the version the writer
// started from.
func (c *srvConn) checkBase(m peerproto.Put, target string) error {
	if m.Base == peerproto.BaseAny {
		return nil
	}
	fi, err := c.s.jail.lstat(target)
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	case m.Base == peerproto.BaseNone && err == nil:
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was created meanwhile (mtime %d)", m.Name, fi.ModTime().UnixNano())
	case m.Base > 0 && err != nil:
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q was removed meanwhile", m.Name)
	case m.Base > 0 && fi.ModTime().UnixNano() != m.Base:
		return peerproto.Fail(peerproto.VerbPut, peerproto.CodeConflict, "%q changed meanwhile (mtime %d, base %d)", m.Name, fi.ModTime().UnixNano(), m.Base)
	}
	return nil
}

// receive copies exactly size payload bytes from the connection to f. A
// read error (rerr) means the payload stopped short and the connection is
// out of step. After a write error (werr) the rest of the payload is read
// and dropped, so the connection stays usable for the refusal; if that
// fails too, rerr is set as well.
func (c *srvConn) receive(f io.Writer, size int64) (written int64, rerr, werr error) {
	bp := c.s.bufs.Get().(*[]byte)
	defer c.s.bufs.Put(bp)
	buf := *bp
	var got int64
	for got < size {
		n, err := c.r.Read(buf[:min(int64(len(buf)), size-got)])
		got += int64(n)
		if n > 0 && werr == nil {
			var w int
			w, werr = f.Write(buf[:n])
			written += int64(w)
		}
		if err != nil && got < size {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return written, err, werr
		}
	}
	return written, nil, werr
}

// get sends a file or a range of it: "GET OK <n>" and exactly n bytes.
func (c *srvConn) get(m peerproto.Get) error {
	const verb = peerproto.VerbGet
	j := c.s.jail
	p, err := j.clean(m.Name)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	f, fi, err := j.openRegular(p, os.O_RDONLY)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !jailEscapes(err) {
			return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotFound, "no such file %q", m.Name))
		}
		return c.refuse(verb, err, jailDisplay(m.Name))
	}
	defer f.Close()
	if !c.s.beginTransfer() {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeBusy, "too many transfers (%d)", c.s.opts.MaxTransfers))
	}
	defer c.s.endTransfer()
	var n int64
	if size := fi.Size(); m.Offset < size {
		n = size - m.Offset
		if m.Length >= 0 && m.Length < n {
			n = m.Length
		}
	}
	if n > 0 && m.Offset > 0 {
		if _, err := f.Seek(m.Offset, io.SeekStart); err != nil {
			return c.refuse(verb, err, m.Name)
		}
	}
	if err := c.send(peerproto.GetOK{Size: n}); err != nil {
		return err
	}
	// Bypass the bufio.Writer (just flushed) so that *net.TCPConn's
	// ReadFrom moves the data with sendfile, one deadline per chunk. Over
	// TLS (a *tls.Conn) io.CopyN still works, through a buffer: the data
	// must be encrypted in user space.
	for c.bytes < n {
		if err := c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.IOTimeout)); err != nil {
			return err
		}
		k, err := io.CopyN(c.nc, f, min(srvSendChunk, n-c.bytes))
		c.bytes += k
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The file shrank after GET OK announced n bytes: closing
				// is the only honest way to tell the client.
				c.result = "shrank"
				return fmt.Errorf("peer: server: get %q: file shrank while sending (%d of %d bytes sent)", m.Name, c.bytes, n)
			}
			c.result = "cut"
			return err
		}
	}
	return nil
}

// list sends a directory's entries with their attributes in one reply:
// "LIST OK <count>" and count entry lines, sorted by name. Symbolic links
// that resolve inside the export are reported as their targets; links
// that escape or dangle, special files and temporary files are left out.
func (c *srvConn) list(m peerproto.List) error {
	const verb = peerproto.VerbList
	j := c.s.jail
	p, err := j.clean(m.Dir)
	if err != nil {
		return c.refuse(verb, err, m.Dir)
	}
	// O_DIRECTORY: fail on a FIFO instead of blocking on it.
	d, err := j.root.OpenFile(jailRel(p), os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return c.refuse(verb, err, jailDisplay(m.Dir))
	}
	dirents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return c.refuse(verb, err, jailDisplay(m.Dir))
	}
	entries := make([]peerproto.Entry, 0, len(dirents))
	for _, de := range dirents {
		name := de.Name()
		if jailReserved(name) {
			continue
		}
		var fi fs.FileInfo
		if de.Type()&fs.ModeSymlink != 0 {
			fi, err = j.stat(path.Join(p, name))
		} else {
			fi, err = de.Info()
		}
		if err != nil {
			continue // gone since ReadDir, dangling, or escaping
		}
		if e, ok := jailEntry(name, fi); ok {
			entries = append(entries, e)
		}
	}
	// File.ReadDir returns directory order; the protocol promises names
	// sorted bytewise.
	slices.SortFunc(entries, func(a, b peerproto.Entry) int { return strings.Compare(a.Name, b.Name) })
	if len(entries) > peerproto.MaxListEntries {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeTooLarge,
			"directory %q has %d entries, more than the protocol's limit %d", jailDisplay(m.Dir), len(entries), peerproto.MaxListEntries))
	}
	c.result = "ok"
	c.bytes = int64(len(entries))
	if err := peerproto.WriteMessage(c.w, peerproto.ListOK{Count: len(entries)}); err != nil {
		return err
	}
	var line []byte
	for _, e := range entries {
		line = append(peerproto.AppendEntry(line[:0], e), '\n')
		if _, err := c.w.Write(line); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// stat answers "STAT <name>" with the attributes of a file or directory.
func (c *srvConn) stat(m peerproto.Stat) error {
	const verb = peerproto.VerbStat
	p, err := c.s.jail.clean(m.Name)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	fi, err := c.s.jail.visible(p)
	if err != nil {
		return c.refuse(verb, err, jailDisplay(m.Name))
	}
	e, _ := jailEntry("", fi)
	return c.send(peerproto.StatOK{Entry: e})
}
