package remote

// Conflicts: telling a conflicting upload from this writer's own
// earlier attempt, and keeping the loser's data as a conflict copy.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
)

// digest identifies a file's content: its size and SHA-256.
type digest struct {
	size int64
	sum  [sha256.Size]byte
}

// String encodes v for the cache record (Meta.Sent): "<size>:<sha256 hex>".
func (v digest) String() string { return fmt.Sprintf("%d:%x", v.size, v.sum) }

// parseDigest decodes a digest.String; nil if s is empty or not one.
func parseDigest(s string) *digest {
	size, sum, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(size, 10, 64)
	b, herr := hex.DecodeString(sum)
	if !ok || err != nil || herr != nil || n < 0 || len(b) != sha256.Size {
		return nil
	}
	v := digest{size: n}
	copy(v.sum[:], b)
	return &v
}

// sumMax bounds the peer's files fetched to be hashed here when a
// conditional PUT is refused, for a peer that cannot hash its own (SUM):
// a larger conflict is then always kept as a conflict copy.
const sumMax = 16 << 20

// digestMax bounds the local copies hashed (on those failure paths only):
// past it a conflict is always kept as a conflict copy.
const digestMax = 4 << 30

// digestOf returns the digest of r's first size bytes, if size is at
// most digestMax.
func digestOf(r io.ReaderAt, size int64) (digest, bool) {
	if size > digestMax {
		return digest{}, false
	}
	h := sha256.New()
	if n, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil || n != size {
		return digest{}, false
	}
	v := digest{size: size}
	h.Sum(v.sum[:0])
	return v, true
}

// What peerHolds found on the peer.
const (
	holdsOther   = iota // another version (or one not compared)
	holdsCurrent        // this copy's content
	holdsSent           // the content of this writer's last failed attempt
)

// peerHolds reports whether the peer's file at path holds the content of
// ch (size bytes) or the version sent (if not nil), with the peer's
// attributes of it, comparing contents only when its size is one of
// theirs: the peer hashes its file (SUM) where it can, else it is fetched
// and hashed here, up to sumMax. The attributes are from before: if the
// file changed in between, the next conditional PUT finds out.
func (s *Store) peerHolds(ctx context.Context, c *peer.Conn, path string, ch *cache.Handle, size int64, sent *digest) (peerproto.Entry, int) {
	e, err := c.Stat(ctx, path)
	if err != nil || e.IsDir() || (e.Size != size && (sent == nil || e.Size != sent.size)) {
		return peerproto.Entry{}, holdsOther
	}
	f, err := c.Features(ctx)
	sums := err == nil && f.Has(peerproto.FeatureSum)
	if !sums && e.Size > sumMax {
		return peerproto.Entry{}, holdsOther
	}
	var cur digest
	curOK := false
	if e.Size == size {
		cur, curOK = digestOf(ch, size)
	}
	var theirs digest
	ok := false
	if sums {
		var so peerproto.SumOK
		if so, err = c.Sum(ctx, path, e.Size); err == nil {
			theirs, ok = digest{size: so.Size, sum: so.Sum}, true
		}
	} else {
		err = c.GetStream(ctx, path, func(n int64, r io.Reader) error {
			if n > sumMax {
				return errors.New("changed meanwhile") // too big to drain: drop the connection
			}
			h := sha256.New()
			if _, err := io.Copy(h, r); err != nil {
				return err
			}
			theirs.size = n
			h.Sum(theirs.sum[:0])
			ok = true
			return nil
		})
	}
	switch {
	case err != nil || !ok:
		return peerproto.Entry{}, holdsOther
	case curOK && theirs == cur:
		return e, holdsCurrent
	case sent != nil && theirs == *sent:
		return e, holdsSent
	}
	return peerproto.Entry{}, holdsOther
}

// putConflictCopy stores f's copy as "<name>.conflict-<self>-<time>" next
// to the file whose newer version it must not replace, and moves f (and
// its cache entry) to that name, so that later writes through open
// handles go there too. Called with f.up held.
func (s *Store) putConflictCopy(ctx context.Context, c *peer.Conn, f *fileState, key cache.Key, ch *cache.Handle) (peerproto.PutDone, error) {
	name := conflictName(key.Path, s.opts.Self, time.Now())
	src, err := ch.Reopen()
	if err != nil {
		return peerproto.PutDone{}, err
	}
	defer src.Close()
	pd, err := c.PutWith(ctx, peerproto.Put{Name: name, Size: ch.Size(), Async: true, Base: peerproto.BaseNone}, src, nil)
	if err != nil {
		return pd, err
	}
	to := cache.Key{Peer: key.Peer, Path: name}
	s.mu.Lock()
	if s.files[key] == f {
		delete(s.files, key)
	}
	f.mu.Lock()
	f.key = to
	f.mu.Unlock()
	s.files[to] = f
	s.mu.Unlock()
	_ = s.cache.Rename(key, to)
	s.log.Warn().Str("peer", key.Peer).Str("path", key.Path).Str("kept_as", name).Msg("conflict: the file changed on its peer since this copy was opened; kept this writer's data beside it")
	return pd, nil
}

// conflictName returns the name a conflicting copy of p is kept under.
func conflictName(p, self string, now time.Time) string {
	dir, file := parent(p), base(p)
	suffix := ".conflict-" + self + "-" + now.UTC().Format("20060102T150405.000000000Z")
	if n := 255 - len(suffix); len(file) > n {
		file = file[:n]
	}
	if dir == "" {
		return file + suffix
	}
	return dir + "/" + file + suffix
}
