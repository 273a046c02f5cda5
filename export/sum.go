package export

import (
	"crypto/sha256"

	"github.com/peerfs/peerfs/peerproto"
)

// sum answers "SUM <name>" with the file's size and SHA-256: "SUM OK
// <size> <hex>". It reads the whole file, in chunks read as GET reads
// them (apart from a change in place), and counts as a transfer. A file
// that changes meanwhile gives a sum of no version, which matches
// nothing a client sent: it then keeps its own as a conflict copy.
func (c *conn) sum(m peerproto.Sum) error {
	const verb = peerproto.VerbSum
	f, st, done, err := c.openTransfer(verb, m.Name)
	if f == nil {
		return err
	}
	defer done()
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
