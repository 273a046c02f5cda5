package cache

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// metaVersion is the format version written into every metadata file.
const metaVersion = 1

const (
	dataSuffix = ".data"
	metaSuffix = ".meta"
)

// record is the JSON form of an entry's metadata file. Peer and Path are
// escaped with escapeName because encoding/json would replace invalid UTF-8
// (which file names may contain) with U+FFFD.
type record struct {
	V          int    `json:"v"`
	Peer       string `json:"peer"`
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	Mtime      int64  `json:"mtime"`
	Dirty      bool   `json:"dirty"`
	DirtySince int64  `json:"dirtySince,omitempty"` // unix ns
	Mode       uint32 `json:"mode"`
	// Boot is the kernel boot ID when this metadata (and the data it
	// describes) was written without fsync; empty when both are durable.
	// After a reboot such an entry cannot be trusted and is discarded;
	// after a mere process crash the page cache still holds it.
	Boot string `json:"boot,omitempty"`
}

const hexDigits = "0123456789ABCDEF"

// escapeName returns s with '%' and every byte that is not part of valid
// UTF-8 written as %XX, so that it survives a JSON round trip unchanged.
func escapeName(s string) string {
	if utf8.ValidString(s) && !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == '%' || (r == utf8.RuneError && n == 1) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[s[i]>>4])
			b.WriteByte(hexDigits[s[i]&15])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// unescapeName reverses escapeName.
func unescapeName(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

// newID returns a fresh random entry ID, safe as a file name.
func newID() string {
	return strings.ToLower(rand.Text())
}

func (c *Cache) dataPath(id string) string { return filepath.Join(c.entriesDir, id+dataSuffix) }
func (c *Cache) metaPath(id string) string { return filepath.Join(c.entriesDir, id+metaSuffix) }

// writeMeta atomically replaces the metadata file of entry id with rec.
// With durable set it makes the change durable, including the directory
// entries of the data file and the metadata file, and records the entry as
// durable; otherwise it skips every fsync and stamps the record with the
// boot ID, so that only a reboot can make it untrustworthy.
func (c *Cache) writeMeta(id string, rec record, durable bool) error {
	rec.V = metaVersion
	rec.Boot = ""
	if !durable {
		rec.Boot = c.boot
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("cache: encode metadata: %w", err)
	}
	f, err := os.CreateTemp(c.tmpDir, id+".meta-*")
	if err != nil {
		return fmt.Errorf("cache: write metadata: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil && rec.Boot == "" {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.metaPath(id))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cache: write metadata: %w", err)
	}
	if rec.Boot != "" {
		return nil
	}
	if err := syncDir(c.entriesDir); err != nil {
		return fmt.Errorf("cache: write metadata: %w", err)
	}
	return nil
}

// bootID returns the kernel's boot ID, or "" (which makes every metadata
// write durable) if it cannot be read.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// syncDir fsyncs a directory so that renames and creations in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncFile fsyncs a file by name; fsync through any descriptor flushes the
// file's data.
func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeFiles deletes an entry's files, metadata first: a crash in between
// leaves only a data file without metadata, which Open discards.
func (c *Cache) removeFiles(id string) {
	for _, p := range []string{c.metaPath(id), c.dataPath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn().Err(err).Str("file", p).Msg("remove cache file")
		}
	}
}

// loaded is an entry found on disk by load.
type loaded struct {
	id      string
	rec     record
	key     Key
	size    int64
	written time.Time // metadata file's mtime: recency after a restart
}

// load scans the entries directory and returns the valid entries, least
// recently written first. It deletes what it cannot use: data files without
// metadata, unreadable metadata, metadata whose data file is missing, clean
// entries whose data file has the wrong size, and the loser of two entries
// with the same key (a crash in the middle of replacing one).
func (c *Cache) load() ([]loaded, error) {
	des, err := os.ReadDir(c.entriesDir)
	if err != nil {
		return nil, fmt.Errorf("cache: load: %w", err)
	}
	metas := map[string]bool{}
	datas := map[string]bool{}
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, metaSuffix):
			metas[strings.TrimSuffix(name, metaSuffix)] = true
		case strings.HasSuffix(name, dataSuffix):
			datas[strings.TrimSuffix(name, dataSuffix)] = true
		}
	}
	discard := func(id, why string) {
		c.log.Warn().Str("id", id).Str("reason", why).Msg("discard cache entry")
		c.removeFiles(id)
	}
	for id := range datas {
		if !metas[id] {
			// A clean copy never recorded, or a removal cut short.
			c.removeFiles(id)
		}
	}
	byKey := map[Key]loaded{}
	for id := range metas {
		l, why := c.loadOne(id, datas[id])
		if why != "" {
			discard(id, why)
			continue
		}
		if prev, ok := byKey[l.key]; ok {
			// Keep dirty data first, then the newer copy.
			if prev.rec.Dirty && !l.rec.Dirty || prev.rec.Dirty == l.rec.Dirty && !l.written.After(prev.written) {
				discard(id, "duplicate key")
				continue
			}
			discard(prev.id, "duplicate key")
		}
		byKey[l.key] = l
	}
	out := make([]loaded, 0, len(byKey))
	for _, l := range byKey {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b loaded) int {
		return cmp.Or(a.written.Compare(b.written), strings.Compare(a.id, b.id))
	})
	return out, nil
}

// loadOne reads entry id, or returns why it is unusable.
func (c *Cache) loadOne(id string, hasData bool) (loaded, string) {
	l := loaded{id: id}
	if !hasData {
		return l, "data file missing"
	}
	mf := c.metaPath(id)
	b, err := os.ReadFile(mf)
	if err != nil {
		return l, "read metadata: " + err.Error()
	}
	mst, err := os.Stat(mf)
	if err != nil {
		return l, "stat metadata: " + err.Error()
	}
	l.written = mst.ModTime()
	if err := json.Unmarshal(b, &l.rec); err != nil {
		return l, "parse metadata: " + err.Error()
	}
	if l.rec.V != metaVersion {
		return l, fmt.Sprintf("metadata version %d", l.rec.V)
	}
	if l.rec.Boot != "" && l.rec.Boot != c.boot {
		return l, "written without fsync before a reboot"
	}
	if l.key.Peer, err = unescapeName(l.rec.Peer); err != nil {
		return l, err.Error()
	}
	if l.key.Path, err = unescapeName(l.rec.Path); err != nil {
		return l, err.Error()
	}
	dst, err := os.Stat(c.dataPath(id))
	if err != nil {
		return l, "stat data: " + err.Error()
	}
	l.size = dst.Size()
	// A dirty entry's recorded size is from when it turned dirty; the data
	// file is the truth. A clean entry must match what was recorded.
	if !l.rec.Dirty && l.size != l.rec.Size {
		return l, fmt.Sprintf("size %d, recorded %d", l.size, l.rec.Size)
	}
	return l, ""
}
