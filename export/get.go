package export

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// openTransfer opens file name for reading, as GET and SUM read it, and
// takes a transfer slot. If it cannot, it refuses the request for verb
// and returns a nil file, with the refusal's error (nil once sent).
// done releases the file and the slot.
func (c *conn) openTransfer(verb, name string) (f *openFile, st unix.Stat_t, done func(), err error) {
	p, err := c.s.jail.Clean(name)
	if err != nil {
		return nil, st, nil, c.refuse(verb, err, name)
	}
	f, st, err = c.s.openRead(c.jail(), p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !jail.Escapes(err) {
			return nil, st, nil, c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotFound, "no such file %q", name))
		}
		return nil, st, nil, c.refuse(verb, err, jail.Display(name))
	}
	if !c.s.beginTransfer() {
		c.s.files.release(f)
		return nil, st, nil, c.refuse(verb, peerproto.Fail(verb, peerproto.CodeBusy, "too many transfers (%d)", c.s.opts.MaxTransfers))
	}
	return f, st, func() {
		c.s.endTransfer()
		c.s.files.release(f)
	}, nil
}

// get sends a file or a range of it: "GET OK <n>" and exactly n bytes.
func (c *conn) get(m peerproto.Get) error {
	f, st, done, err := c.openTransfer(peerproto.VerbGet, m.Name)
	if f == nil {
		return err
	}
	defer done()
	c.rate.start(time.Now())
	defer c.rate.stop()
	var n int64
	if size := st.Size; m.Offset < size {
		n = size - m.Offset
		if m.Length >= 0 && m.Length < n {
			n = m.Length
		}
	}
	c.result = "ok"
	if err := peerproto.WriteMessage(c.w, peerproto.GetOK{Size: n}); err != nil {
		return err
	}
	if n <= int64(c.w.Available()) {
		// Small, like a FUSE read: the data joins the reply line in the
		// write buffer, and both leave in one write (one TLS record).
		buf := c.w.AvailableBuffer()[:n]
		k, err := c.s.readFenced(f.fd, buf, m.Offset)
		c.bytes = int64(k)
		if err != nil {
			return c.shrank(m.Name, n, err)
		}
		if _, err := c.w.Write(buf); err != nil {
			return err
		}
		return c.w.Flush()
	}
	if tc, ok := c.nc.(*net.TCPConn); ok && !c.s.mayChangeInPlace(&st) {
		// Plain TCP: sendfile, at explicit offsets (the descriptor may be
		// shared with other GETs), one deadline per chunk. Not for a file
		// a change in place may write to meanwhile: sendfile reads as it
		// sends, and no read may see such a change half done.
		if err := c.w.Flush(); err != nil {
			return err
		}
		for c.bytes < n {
			chunk := min(sendChunk, n-c.bytes)
			if err := c.nc.SetWriteDeadline(c.rate.deadline(time.Now().Add(c.s.opts.IOTimeout), chunk)); err != nil {
				return err
			}
			k, err := sendfile(tc, f.fd, m.Offset+c.bytes, chunk)
			c.bytes += k
			c.rate.moved(k, time.Now())
			if err != nil {
				return c.shrank(m.Name, n, c.rate.cut(err))
			}
		}
		return nil
	}
	// TLS: the data is encrypted in user space anyway; read it in large
	// chunks into a pooled buffer, each sent with one Write.
	if err := c.w.Flush(); err != nil {
		return err
	}
	bp := c.s.bufs.Get().(*[]byte)
	defer c.s.bufs.Put(bp)
	buf := *bp
	for c.bytes < n {
		k, err := c.s.readFenced(f.fd, buf[:min(int64(len(buf)), n-c.bytes)], m.Offset+c.bytes)
		if err != nil {
			c.bytes += int64(k)
			return c.shrank(m.Name, n, err)
		}
		if err := c.nc.SetWriteDeadline(c.rate.deadline(time.Now().Add(c.s.opts.IOTimeout), int64(k))); err != nil {
			return err
		}
		w, err := c.nc.Write(buf[:k])
		c.rate.moved(int64(w), time.Now())
		if err != nil {
			c.result = "cut"
			return c.rate.cut(err)
		}
		c.bytes += int64(k)
	}
	return nil
}

// shrank ends a GET whose data stopped short of the n bytes announced
// (err is io.EOF) or could not be read or sent.
func (c *conn) shrank(name string, n int64, err error) error {
	if errors.Is(err, io.EOF) {
		// The file shrank after GET OK announced n bytes: closing is the
		// only honest way to tell the client.
		c.result = "shrank"
		return fmt.Errorf("peer: server: get %q: file shrank while sending (%d of %d bytes sent)", name, c.bytes, n)
	}
	c.result = "cut"
	return fmt.Errorf("peer: server: get %q: %w", name, err)
}

// openRead returns an open descriptor of regular file p, resolved by j,
// from the cache or opened now, with its current attributes; release it
// with files.release.
func (s *Server) openRead(j *jail.Jail, p string) (*openFile, unix.Stat_t, error) {
	now := time.Now()
	if f := s.files.get(p, j.IsStrict(), now); f != nil {
		st, err := jail.Fstat(f.fd, p)
		if err == nil && st.Nlink > 0 {
			return f, st, nil
		}
		// Deleted or replaced since it was opened: open the path anew.
		s.files.forget(f)
		s.files.release(f)
	}
	gen := s.files.generation()
	// OpenFile opens nothing but a regular file or a directory: a
	// special file planted in the export is refused unopened. Without
	// openat2 (os.Root), an O_PATH open does not follow a final link the
	// way a plain connection must, so there the file is opened as it is,
	// O_NONBLOCK (no effect on regular files) and O_NOCTTY its guards.
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	var fd int
	var err error
	if j.IsStrict() || j.Beneath() {
		fd, _, err = j.OpenFile(p, flags)
	} else {
		fd, err = j.Open(p, flags)
	}
	if err != nil {
		return nil, unix.Stat_t{}, err
	}
	st, err := jail.Fstat(fd, p)
	if err == nil {
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
		case unix.S_IFDIR:
			err = &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
		default:
			err = &jail.Refusal{Code: peerproto.CodeInvalid, Text: fmt.Sprintf("%q is not a regular file", p)}
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, st, err
	}
	return s.files.add(p, fd, j.IsStrict(), now, gen), st, nil
}

// pread fills b from fd at off. A file that ends before b is full is
// io.EOF, with the count read.
func pread(fd int, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Pread(fd, b[done:], off+int64(done))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return done, &fs.PathError{Op: "read", Path: "", Err: err}
		case n == 0:
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

// sendfile sends n bytes of file fd from offset off on tc with
// sendfile(2), waiting for the socket under its write deadline. A file
// that ends first is io.EOF.
func sendfile(tc *net.TCPConn, fd int, off, n int64) (int64, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var sent int64
	var serr error
	err = rc.Write(func(sock uintptr) bool {
		for sent < n {
			o := off + sent
			k, err := unix.Sendfile(int(sock), fd, &o, int(n-sent))
			if k > 0 {
				sent += int64(k)
			}
			switch {
			case err == unix.EAGAIN:
				return false // wait until the socket is writable
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			case k == 0:
				serr = io.EOF
				return true
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return sent, err
}
