package peer

import (
	"context"
	"errors"
	"fmt"

	"github.com/peerfs/peerfs/peerproto"
)

// Ping checks the peer is alive.
func (c *Conn) Ping(ctx context.Context) error {
	_, err := c.roundTrip(ctx, peerproto.Ping{}, "")
	return err
}

// Stat returns the attributes of name ("" for the export root).
func (c *Conn) Stat(ctx context.Context, name string) (peerproto.Entry, error) {
	r, err := c.roundTrip(ctx, peerproto.Stat{Name: name}, name)
	if err != nil {
		return peerproto.Entry{}, err
	}
	return r.(peerproto.StatOK).Entry, nil
}

// List returns the entries of directory dir ("" for the export root).
func (c *Conn) List(ctx context.Context, dir string) ([]peerproto.Entry, error) {
	done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := c.send(peerproto.List{Dir: dir}); err != nil {
		return nil, c.fail("LIST", dir, err)
	}
	reply, err := peerproto.ReadReply(c.r, peerproto.VerbList)
	if err != nil {
		return nil, c.fail("LIST", dir, err)
	}
	n := reply.(peerproto.ListOK).Count
	entries := make([]peerproto.Entry, 0, min(n, 4096))
	for i := 0; i < n; i++ {
		if i%256 == 0 {
			c.touch()
		}
		line, err := peerproto.ReadLine(c.r)
		if err != nil {
			return nil, c.fail("LIST", dir, err)
		}
		e, err := peerproto.ParseEntry(line)
		if err != nil {
			return nil, c.fail("LIST", dir, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func (c *Conn) simple(ctx context.Context, m peerproto.Message, name string) error {
	_, err := c.roundTrip(ctx, m, name)
	return err
}

// Delete removes file name.
func (c *Conn) Delete(ctx context.Context, name string) error {
	return c.simple(ctx, peerproto.Delete{Name: name}, name)
}

// Rmdir removes the empty directory name.
func (c *Conn) Rmdir(ctx context.Context, name string) error {
	return c.simple(ctx, peerproto.Rmdir{Name: name}, name)
}

// Mkdir creates directory name with permission bits mode (0: default).
func (c *Conn) Mkdir(ctx context.Context, name string, mode uint32) error {
	return c.simple(ctx, peerproto.Mkdir{Name: name, Mode: mode}, name)
}

// Rename renames from to to, replacing a target file atomically.
func (c *Conn) Rename(ctx context.Context, from, to string) error {
	return c.simple(ctx, peerproto.Rename{From: from, To: to}, from)
}

// Setattr changes the attributes set in s and returns the new attributes.
// Owners (uid=, gid=) need a peer that allows them (Owners); on a Posix
// connection, times and owners of a symbolic link are the link's own.
func (c *Conn) Setattr(ctx context.Context, s peerproto.Setattr) (peerproto.Entry, error) {
	r, err := c.roundTrip(ctx, s, s.Name)
	if err != nil {
		return peerproto.Entry{}, err
	}
	return r.(peerproto.SetattrOK).Entry, nil
}

// Statfs returns the space of the peer's export filesystem, in bytes.
func (c *Conn) Statfs(ctx context.Context) (peerproto.StatfsOK, error) {
	r, err := c.roundTrip(ctx, peerproto.Statfs{}, "")
	if err != nil {
		return peerproto.StatfsOK{}, err
	}
	return r.(peerproto.StatfsOK), nil
}

// Fsync asks the peer to make everything stored so far durable.
func (c *Conn) Fsync(ctx context.Context) error {
	return c.simple(ctx, peerproto.Fsync{}, "")
}

// FsyncFiles asks the peer to make the named files (and their directory
// entries) durable: cheaper than Fsync on a busy filesystem, which the
// peer syncs whole. A peer that cannot (FEATURES), an empty list or one
// too long for a line get Fsync.
func (c *Conn) FsyncFiles(ctx context.Context, names []string) error {
	m := peerproto.Fsync{Names: names}
	if len(names) == 0 || len(m.AppendTo(nil)) >= peerproto.MaxLine {
		return c.Fsync(ctx)
	}
	f, err := c.Features(ctx)
	if err != nil {
		return err
	}
	if !f.Has(peerproto.FeatureFsyncFiles) {
		return c.Fsync(ctx)
	}
	return c.simple(ctx, m, names[0])
}

// Symlink creates a symbolic link name holding target, which the peer
// stores as it is and never resolves.
func (c *Conn) Symlink(ctx context.Context, name, target string) error {
	return c.simple(ctx, peerproto.Symlink{Name: name, Target: target}, name)
}

// Readlink returns the target of symbolic link name.
func (c *Conn) Readlink(ctx context.Context, name string) (string, error) {
	r, err := c.roundTrip(ctx, peerproto.Readlink{Name: name}, name)
	if err != nil {
		return "", err
	}
	return r.(peerproto.ReadlinkOK).Target, nil
}

// Link makes newName a hard link to oldName (a symbolic link is linked
// itself, not followed).
func (c *Conn) Link(ctx context.Context, oldName, newName string) error {
	return c.simple(ctx, peerproto.Link{Old: oldName, New: newName}, newName)
}

// Mknod creates the special file m: a FIFO or a socket, or a device if
// the peer allows them (Devices).
func (c *Conn) Mknod(ctx context.Context, m peerproto.Mknod) error {
	return c.simple(ctx, m, m.Name)
}

// StatResult is the answer to one STAT of Conn.WithStats: the entry, or
// the peer's refusal (a *peerproto.FailError: notfound...).
type StatResult struct {
	Entry peerproto.Entry
	Err   error
}

// WithStats sends m and, right behind it without waiting for its answer,
// a STAT of each of names, then reads the answers, which the peer gives
// in order: what m changed is seen in the same round trip (the
// directories a DELETE or a RENAME changed, the entry a MKDIR made). m
// must be a request answered by one line (not GET, PUT or LIST). A
// refusal of m is the error, and the STATs' results are returned all the
// same (they ran after it). A failure to talk to the peer returns no
// results.
func (c *Conn) WithStats(ctx context.Context, m peerproto.Message, names ...string) (peerproto.Message, []StatResult, error) {
	done, err := c.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	b := m.AppendTo(make([]byte, 0, 128))
	b = append(b, '\n')
	for _, name := range names {
		b = peerproto.Stat{Name: name}.AppendTo(b)
		b = append(b, '\n')
	}
	if _, err := c.w.Write(b); err != nil {
		return nil, nil, c.fail(m.Verb(), "", err)
	}
	if err := c.w.Flush(); err != nil {
		return nil, nil, c.fail(m.Verb(), "", err)
	}
	reply, merr := peerproto.ReadReply(c.r, m.Verb())
	var fe *peerproto.FailError
	if merr != nil && !errors.As(merr, &fe) {
		return nil, nil, c.fail(m.Verb(), "", merr)
	}
	results := make([]StatResult, len(names))
	for i, name := range names {
		r, err := peerproto.ReadReply(c.r, peerproto.VerbStat)
		switch {
		case err == nil:
			results[i].Entry = r.(peerproto.StatOK).Entry
		case errors.As(err, &fe):
			results[i].Err = fmt.Errorf("peer %s: STAT %q: %w", c.addr, name, err)
		default:
			return nil, nil, c.fail("STAT", name, err)
		}
	}
	if merr != nil {
		return nil, results, fmt.Errorf("peer %s: %s: %w", c.addr, m.Verb(), merr)
	}
	return reply, results, nil
}

// MaxBatch is how many requests Batch sends at most: the peer's answers
// to them must fit in the socket buffers while the last ones are still
// being written.
const MaxBatch = 128

// Batch sends msgs one behind the other without waiting for answers
// (pipelined: the peer answers in order) and then reads the answers:
// many namespace changes cost one round trip. Each message must be
// answered by one line (DELETE, RMDIR, MKDIR, RENAME, SETATTR...; not
// GET, PUT or LIST), and there are at most MaxBatch of them. errs holds
// the outcome of each message answered, in order: nil, or its refusal
// (a *peerproto.FailError inside), and replies the answer of each that
// succeeded (nil for a refusal: a SETATTR's carries the attributes after
// it). A failure to talk to the peer is err; then errs holds the outcomes
// read before it, and the messages after those may or may not have been
// carried out.
func (c *Conn) Batch(ctx context.Context, msgs []peerproto.Message) (replies []peerproto.Message, errs []error, err error) {
	if len(msgs) > MaxBatch {
		return nil, nil, fmt.Errorf("peer %s: a batch of %d requests (at most %d)", c.addr, len(msgs), MaxBatch)
	}
	if len(msgs) == 0 {
		return nil, nil, nil
	}
	done, err := c.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	b := make([]byte, 0, 64*len(msgs))
	for _, m := range msgs {
		b = m.AppendTo(b)
		b = append(b, '\n')
	}
	if _, err := c.w.Write(b); err != nil {
		return nil, nil, c.fail(msgs[0].Verb(), "", err)
	}
	if err := c.w.Flush(); err != nil {
		return nil, nil, c.fail(msgs[0].Verb(), "", err)
	}
	replies, errs = make([]peerproto.Message, 0, len(msgs)), make([]error, 0, len(msgs))
	for _, m := range msgs {
		r, rerr := peerproto.ReadReply(c.r, m.Verb())
		var fe *peerproto.FailError
		switch {
		case rerr == nil:
			replies, errs = append(replies, r), append(errs, nil)
		case errors.As(rerr, &fe):
			replies, errs = append(replies, nil), append(errs, fmt.Errorf("peer %s: %s: %w", c.addr, m.Verb(), rerr))
		default:
			return replies, errs, c.fail(m.Verb(), "", rerr)
		}
		c.touch()
	}
	return replies, errs, nil
}
