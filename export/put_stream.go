package export

// A streamed PUT: the content arrives in DATA chunks while the client is
// still writing it, and is stored as any PUT's at END.

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

// putStream stores streamed PUT m (m.Stream): after the checks of any PUT
// (free space for m.Size, an estimate) and PUT OK, the content comes in
// "DATA <n>" chunks into a temporary file next to the target, until
// "END <size>", when it is stored as any PUT's (the condition checked
// again under putMu, renamed into place, PUT DONE), or "ABORT", when the
// temporary file is removed and nothing is answered. Until then the old
// file is untouched. A chunk that cannot be stored (a full disk) is
// refused at once and the connection closed, the rest unread. A
// malformed line, or a payload cut short, leaves the connection out of
// step: it is closed too. The temporary file is removed in every case
// but END's success.
//
// The whole stream is one transfer for the minimum rate, and each chunk
// must start within the I/O timeout of the one before it: a client whose
// writer pauses longer aborts the stream (or is cut), so a stream never
// holds a transfer slot and a temporary file for long.
func (c *conn) putStream(m peerproto.Put) error {
	const verb = peerproto.VerbPut
	if c.s.opts.ReadOnly {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeReadOnly, "export is read-only"))
	}
	p, t, err := c.locate(m)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	defer c.jail().CloseDir(t.dfd)
	if t.inPlace {
		// Its content goes into the inode its other links share, once
		// whole (overwrite): not worth a stream.
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeUnsupported, "%q has other hard links: send it as a whole PUT", m.Name))
	}
	if !c.s.beginTransfer() {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeBusy, "too many transfers (%d)", c.s.opts.MaxTransfers))
	}
	endTransfer := sync.OnceFunc(c.s.endTransfer)
	defer endTransfer()
	fd, tmp, err := createTemp(t.dfd, jail.TempPrefix, t.mode)
	if err != nil {
		return c.refuse(verb, err, m.Name)
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
	if err := c.send(peerproto.PutOK{}); err != nil {
		return err
	}
	// One transfer for its minimum rate, from PUT OK to END: a client
	// that trickles a byte per chunk is cut as a slow PUT would be.
	c.rate.start(time.Now())
	defer c.rate.stop()
	var size int64 // the content so far: the DATA lines' total
	for {
		line, err := peerproto.ReadLine(c.r)
		if err == nil {
			var msg peerproto.Message
			if msg, err = peerproto.ParseStreamLine(line); err == nil {
				switch x := msg.(type) {
				case peerproto.PutData:
					var werr error
					if size+x.Len > peerproto.MaxSize {
						werr = peerproto.Fail(verb, peerproto.CodeTooLarge, "%q: over %d bytes", m.Name, int64(peerproto.MaxSize))
					} else {
						werr = c.s.checkSpace(t.dfd, x.Len)
					}
					var w int64
					var rerr error
					if werr == nil {
						w, rerr, werr = c.receiveRanges(fd, []peerproto.Range{{Off: size, Len: x.Len}})
						c.bytes += w
						size += w
					}
					if werr != nil {
						// Answered at once, and the rest not read: the
						// client learns of a full disk now, not after
						// sending the rest of its file.
						if err := c.refuse(verb, werr, m.Name); err != nil {
							return err
						}
						return fmt.Errorf("peer: server: streamed put %q: closing after a failed chunk at %d bytes", m.Name, size)
					}
					if rerr != nil {
						err = rerr
						break
					}
					continue
				case peerproto.PutAbort:
					c.result = "aborted"
					return nil
				case peerproto.PutEnd:
					if x.Size != size {
						return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeInvalid, "END says %d bytes, the DATA lines held %d", x.Size, size))
					}
					c.rate.stop()
					st, ver, err := c.settle(m, p, t, fd)
					fd = -1
					if err != nil {
						return c.refuse(verb, err, m.Name)
					}
					if renamed, err = c.install(m, p, t, tmp, &st); err != nil {
						return c.refuse(verb, err, m.Name)
					}
					endTransfer()
					c.result = "stream"
					return c.send(c.putDone(t, &st, ver))
				}
			}
		}
		// Out of step: where the payload ends is unknown.
		c.result = "cut"
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("peer: server: streamed put %q: cut after %d bytes: %w", m.Name, size, err)
	}
}
