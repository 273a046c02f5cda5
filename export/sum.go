package export

import (
	"crypto/sha256"
	"errors"
	"io/fs"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
)

// sum answers "SUM <name>" with the file's size and SHA-256: "SUM OK
// <size> <hex>". It reads the whole file, in chunks read as GET reads
// them (apart from a change in place), and counts as a transfer. A file
// that changes meanwhile gives a sum of no version, which matches
// nothing a client sent: it then keeps its own as a conflict copy.
func (c *conn) sum(m peerproto.Sum) error {
	const verb = peerproto.VerbSum
	p, err := c.s.jail.Clean(m.Name)
	if err != nil {
		return c.refuse(verb, err, m.Name)
	}
	f, st, err := c.s.openRead(c.jail(), p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !jail.Escapes(err) {
			return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeNotFound, "no such file %q", m.Name))
		}
		return c.refuse(verb, err, jail.Display(m.Name))
	}
	defer c.s.files.release(f)
	if !c.s.beginTransfer() {
		return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeBusy, "too many transfers (%d)", c.s.opts.MaxTransfers))
	}
	defer c.s.endTransfer()
	bp := c.s.bufs.Get().(*[]byte)
	defer c.s.bufs.Put(bp)
	buf := *bp
	h := sha256.New()
	var off int64
	for off < st.Size {
		n, err := c.s.readFenced(f.fd, buf[:min(int64(len(buf)), st.Size-off)], off)
		if n > 0 {
			h.Write(buf[:n])
			off += int64(n)
		}
		if err != nil || n == 0 {
			return c.refuse(verb, peerproto.Fail(verb, peerproto.CodeConflict, "%q changed while it was read (%d of %d bytes)", m.Name, off, st.Size))
		}
	}
	c.bytes = off
	c.result = "ok"
	ok := peerproto.SumOK{Size: st.Size}
	h.Sum(ok.Sum[:0])
	return c.send(ok)
}
