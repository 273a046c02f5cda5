package cache

// The namespace journal: changes to peers' names (unlink, rmdir, rename,
// mkdir) and attributes (chmod, utimes) that the mount acknowledged before their
// peer carried them out (write-behind).

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/rs/zerolog"
)

// journalName is the journal's file in the cache directory.
const journalName = "namespace.log"

// compactAt is the size past which the journal is rewritten with only the
// operations still pending (it is emptied whenever none is).
const compactAt = 4 << 20

// Kinds of journalled operations.
const (
	OpDelete = "delete" // DELETE of a file (anything but a directory)
	OpRmdir  = "rmdir"  // RMDIR of an empty directory
	OpRename = "rename" // RENAME of a file (Path) to To
	OpMkdir  = "mkdir"  // MKDIR of Path with permission bits Mode
	// OpSetattr is a SETATTR of a file's or a directory's permission
	// bits or times (Mode, Atime, Mtime); never its size or owner.
	OpSetattr = "setattr"
)

// NamespaceOp is one change to a peer's names or attributes, journalled between the
// mount's acknowledgement of it and its peer's answer.
type NamespaceOp struct {
	Seq  uint64 `json:"seq"` // its place in the order of operations, from 1
	Op   string `json:"op"`  // OpDelete, OpRmdir, OpRename, OpMkdir or OpSetattr
	Peer string `json:"peer"`
	Path string `json:"path"`
	To   string `json:"to,omitempty"` // OpRename's new name
	// Owner is the identity of the peer's export the operation was made
	// for ("" if it was not known): it is carried out on that export
	// only.
	Owner string `json:"owner,omitempty"`
	// Version is the version of the file as the mount knew it when the
	// operation was acknowledged ("" if unknown); a replay after a
	// restart deletes that version only.
	Version string `json:"version,omitempty"`
	// ToVersion is, for OpRename, the version of the file it replaces as
	// the mount knew it ("" if none was known): a replay does not replace
	// another version.
	ToVersion string `json:"to_version,omitempty"`
	// Mode is OpMkdir's permission bits. Mode, Atime and Mtime are
	// OpSetattr's changes (nil: unchanged): the permission bits, and
	// times in nanoseconds since the Unix epoch or TimeNow (the peer's
	// clock, as utimensat's UTIME_NOW).
	Mode  *uint32 `json:"mode,omitempty"`
	Atime *int64  `json:"atime,omitempty"`
	Mtime *int64  `json:"mtime,omitempty"`
	// Dir marks an OpSetattr of a directory: a replay changes a
	// directory only, not a file another writer put at its name.
	Dir bool `json:"dir,omitempty"`
	// Uid and Gid, both or neither, are the owner and group an OpMkdir
	// makes its directory with, on a peer that keeps owners (the group
	// only where the parent is not setgid: peerproto.Mkdir).
	Uid *uint32 `json:"uid,omitempty"`
	Gid *uint32 `json:"gid,omitempty"`
}

// TimeNow as an OpSetattr time asks for the peer's current time.
const TimeNow int64 = -1 << 63

// journalLine is one line of the journal: an operation, or the sequence
// numbers of operations that are done.
type journalLine struct {
	*NamespaceOp
	Done []uint64 `json:"done,omitempty"`
}

// Journal is the append-only record of namespace operations acknowledged
// and not yet done. Each Append and Done is one write(2) of whole lines
// to a file opened O_APPEND, with no fsync: a crash of the process loses
// nothing (the page cache keeps the file), and a power loss loses at most
// the latest operations, as a local filesystem loses an unlink not yet
// committed, unless an fsync came between. A line cut short by a crash
// is skipped when the journal is read. It is safe for concurrent use.
type Journal struct {
	path string
	log  zerolog.Logger

	mu      sync.Mutex              // protects the fields below; held across the file's writes
	f       *os.File                // nil once closed
	size    int64                   // of the file
	next    uint64                  // the next sequence number
	pending map[uint64]*NamespaceOp // appended and not done
	// live is the size of the pending operations' lines: compaction
	// pays only when the file is well over it.
	live  int64
	lines map[uint64]int64 // each pending operation's line size
}

// openJournal opens (creating if needed) the journal in dir and loads the
// operations an earlier run left pending.
func openJournal(dir string, log zerolog.Logger) (*Journal, error) {
	j := &Journal{path: filepath.Join(dir, journalName), log: log, next: 1, pending: map[uint64]*NamespaceOp{}, lines: map[uint64]int64{}}
	data, err := os.ReadFile(j.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cache: journal: %w", err)
	}
	// A last line cut short by a crash is dropped from the file too:
	// the next line appended would otherwise continue it, and be lost
	// with it at the next read.
	whole := int64(bytes.LastIndexByte(data, '\n') + 1)
	torn := whole < int64(len(data))
	data = data[:whole]
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l journalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			j.log.Warn().Err(err).Str("file", j.path).Msg("skipping a namespace journal line cut short by a crash")
			continue
		}
		if op := l.NamespaceOp; op != nil && op.Seq > 0 && known(op) {
			j.pending[op.Seq] = op
			j.lines[op.Seq] = int64(len(sc.Bytes()) + 1)
			j.next = max(j.next, op.Seq+1)
		}
		for _, seq := range l.Done {
			delete(j.pending, seq)
			delete(j.lines, seq)
		}
	}
	j.f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache: journal: %w", err)
	}
	for _, n := range j.lines {
		j.live += n
	}
	if torn {
		if err := j.f.Truncate(whole); err != nil {
			j.f.Close()
			return nil, fmt.Errorf("cache: journal: %w", err)
		}
	}
	j.size = whole
	if len(j.pending) == 0 || j.wasteful() {
		if err := j.compactLocked(); err != nil {
			j.f.Close()
			return nil, err
		}
	}
	return j, nil
}

// known reports whether op is one this journal keeps (a line of a newer
// version may hold others: they are skipped).
func known(op *NamespaceOp) bool {
	switch op.Op {
	case OpDelete, OpRmdir:
		return op.Path != ""
	case OpRename:
		return op.Path != "" && op.To != ""
	case OpMkdir:
		return op.Path != "" && op.Mode != nil && (op.Uid == nil) == (op.Gid == nil)
	case OpSetattr:
		return op.Path != "" && (op.Mode != nil || op.Atime != nil || op.Mtime != nil)
	}
	return false
}

// Pending returns the operations not done, in order.
func (j *Journal) Pending() []NamespaceOp {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]NamespaceOp, 0, len(j.pending))
	for _, op := range j.pending {
		out = append(out, *op)
	}
	slices.SortFunc(out, func(a, b NamespaceOp) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// Append records op (its Seq is assigned here) and returns it as
// recorded. Once it returns, a crash of the process does not lose it.
func (j *Journal) Append(op NamespaceOp) (NamespaceOp, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return op, ErrClosed
	}
	op.Seq = j.next
	b, err := json.Marshal(journalLine{NamespaceOp: &op})
	if err != nil {
		return op, fmt.Errorf("cache: journal: %w", err)
	}
	if err := j.writeLocked(append(b, '\n')); err != nil {
		return op, err
	}
	j.next++
	j.pending[op.Seq] = &op
	j.lines[op.Seq] = int64(len(b) + 1)
	j.live += int64(len(b) + 1)
	return op, nil
}

// Done records that the operations seqs are done (carried out, or given
// up): they are not replayed.
func (j *Journal) Done(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return ErrClosed
	}
	for _, seq := range seqs {
		delete(j.pending, seq)
		j.live -= j.lines[seq]
		delete(j.lines, seq)
	}
	if len(j.pending) == 0 {
		return j.compactLocked()
	}
	b, err := json.Marshal(journalLine{Done: seqs})
	if err != nil {
		return fmt.Errorf("cache: journal: %w", err)
	}
	if err := j.writeLocked(append(b, '\n')); err != nil {
		return err
	}
	if j.wasteful() {
		return j.compactLocked()
	}
	return nil
}

// wasteful reports whether the journal is large and mostly lines of
// operations done: rewriting it then drops at least as much as it keeps,
// so a long run of Done with much pending rewrites it a few times, not
// at each call. Called with j.mu held.
func (j *Journal) wasteful() bool {
	return j.size > compactAt && j.size > 2*j.live
}

// writeLocked appends b with one write. A write that fails part way is
// cut off again, so that the next line does not continue its fragment.
// Called with j.mu held.
func (j *Journal) writeLocked(b []byte) error {
	n, err := j.f.Write(b)
	if err != nil {
		if n > 0 && j.f.Truncate(j.size) != nil {
			j.size += int64(n) // the fragment stays; Open drops it
		}
		return fmt.Errorf("cache: journal: %w", err)
	}
	j.size += int64(n)
	return nil
}

// compactLocked leaves only the pending operations in the journal:
// truncated to nothing when there are none, else rewritten in a new file
// (synced before it replaces the old one). Called with j.mu held.
func (j *Journal) compactLocked() error {
	if len(j.pending) == 0 {
		if err := j.f.Truncate(0); err != nil {
			return fmt.Errorf("cache: journal: %w", err)
		}
		j.size = 0
		return nil
	}
	ops := make([]*NamespaceOp, 0, len(j.pending))
	for _, op := range j.pending {
		ops = append(ops, op)
	}
	slices.SortFunc(ops, func(a, b *NamespaceOp) int { return cmp.Compare(a.Seq, b.Seq) })
	var buf bytes.Buffer
	for _, op := range ops {
		b, err := json.Marshal(journalLine{NamespaceOp: op})
		if err != nil {
			return fmt.Errorf("cache: journal: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	tmp := j.path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("cache: journal: %w", err)
	}
	_, werr := f.Write(buf.Bytes())
	if werr == nil {
		werr = f.Sync()
	}
	if werr == nil {
		werr = os.Rename(tmp, j.path)
	}
	if werr != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("cache: journal: %w", werr)
	}
	j.f.Close()
	j.f, j.size = f, int64(buf.Len())
	return nil
}

// close closes the journal's file; what is pending stays for the next
// Open.
func (j *Journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// Journal returns the cache directory's namespace journal.
func (c *Cache) Journal() *Journal { return c.journal }
