package cache

import (
	"cmp"
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Opening a cache directory: loading what an earlier run left, and closing.

// Open opens the cache in opts.Dir, creating it if needed, and loads the
// entries persisted there. It discards temporary files and entries whose
// data file is missing or, for clean entries, has the wrong size; dirty
// entries are kept with whatever their data file holds. Only one Cache may
// have a directory open at a time, across processes.
func Open(opts Options) (*Cache, error) {
	if opts.Dir == "" {
		return nil, errors.New("cache: open: no directory")
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("cache: open: negative MaxBytes %d", opts.MaxBytes)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.BootIDFile == "" {
		opts.BootIDFile = DefaultBootIDFile
	}
	c := &Cache{
		entriesDir: filepath.Join(opts.Dir, "entries"),
		tmpDir:     filepath.Join(opts.Dir, "tmp"),
		max:        opts.MaxBytes,
		log:        opts.Logger.With().Str("component", "cache").Logger(),
		entries:    map[Key]*entry{},
		under:      map[Key]int{},
		lru:        list.New(),
		boot:       bootID(opts.BootIDFile),
		filling:    map[string]bool{},
	}
	for _, d := range []string{opts.Dir, c.entriesDir, c.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cache: open: %w", err)
		}
	}
	lf, err := os.OpenFile(filepath.Join(opts.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache: open: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("cache: open: %s is in use: %w", opts.Dir, err)
	}
	c.lockFile = lf
	if err := c.clearTmp(); err != nil {
		lf.Close()
		return nil, err
	}
	if !opts.MetaFiles {
		switch err := probeXattrs(c.tmpDir); {
		case err == nil:
			c.xattrs = true
		case errors.Is(err, syscall.ENOTSUP):
			c.log.Info().Str("dir", opts.Dir).Msg("the cache's file system keeps no user extended attributes: records go to files of their own (two files per cached file)")
		default:
			c.log.Warn().Err(err).Str("dir", opts.Dir).Msg("cannot tell whether the cache's file system keeps user extended attributes: records go to files of their own")
		}
	}
	ls, err := c.load()
	if err != nil {
		lf.Close()
		return nil, err
	}
	if c.journal, err = openJournal(opts.Dir, c.log); err != nil {
		lf.Close()
		return nil, err
	}
	for _, l := range ls {
		e := &entry{
			id:        l.id,
			key:       l.key,
			size:      l.size,
			version:   l.rec.version(),
			mode:      l.rec.Mode,
			dirty:     l.rec.Dirty,
			persisted: true,
			durable:   l.rec.Boot == "",
			metaLen:   l.metaLen,
			metaFile:  l.metaFile,
		}
		if e.dirty {
			e.dirtySince = time.Unix(0, l.rec.DirtySince)
			e.base, e.sent = l.rec.base(), l.rec.Sent
			e.parked, e.origin = l.rec.Parked, l.origin
			e.changed, e.tracked = decodeRanges(l.rec.Changed)
			e.tracked = e.tracked && l.rec.Tracked
			if !e.tracked {
				e.changed = nil
			}
			if l.rec.Partial {
				// What lies past the data file's end is zeros if it
				// grows back: its base's bytes there were cut off.
				e.partial = true
				e.known, _ = decodeRanges(l.rec.Known)
				e.known = addRange(e.known, toEnd(l.size))
				if covers(e.known, toEnd(0)) {
					e.partial, e.known = false, nil
				}
			}
		}
		c.insertLocked(e)
	}
	// removeLoop's channels first: eviction queues the victims for it,
	// and a wake-up sent on a nil kick would be lost, leaving them whole
	// on disk until the next drop.
	c.kick = make(chan struct{}, 1)
	c.done = make(chan struct{})
	c.bg.Add(1)
	go c.removeLoop()
	c.mu.Lock()
	victims := c.evictLocked()
	c.mu.Unlock()
	c.discard(victims...)
	st := c.Stats()
	c.log.Info().Str("dir", opts.Dir).Int("entries", st.Entries).Int64("bytes", st.Bytes).
		Int("dirty", st.DirtyFiles).Int64("dirty_bytes", st.DirtyBytes).Msg("cache opened")
	return c, nil
}

// clearTmp deletes everything in the temp directory: leftovers of a crash.
func (c *Cache) clearTmp() error {
	des, err := os.ReadDir(c.tmpDir)
	if err != nil {
		return fmt.Errorf("cache: open: %w", err)
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(c.tmpDir, de.Name())); err != nil {
			return fmt.Errorf("cache: open: %w", err)
		}
	}
	return nil
}

// Close closes the cache. Everything is already persisted; Close only
// closes files and releases the directory. Handles still open become
// unusable.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	close(c.done) // removeLoop deletes what waits, kicked or not
	if c.dropTimer != nil {
		c.dropTimer.Stop()
		c.dropTimer = nil
	}
	c.mu.Unlock()
	jerr := c.journal.close()
	// Not under c.mu: removeLoop takes entry locks, whose holders may
	// be waiting for c.mu.
	c.bg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropSpares()
	// A Fill still at work on one of these writes into an unlinked file
	// from here on, and fails on finding the cache closed.
	for id := range c.filling {
		c.removeFiles(id)
	}
	clear(c.filling)
	var errs []error
	for _, e := range c.entries {
		if e.file != nil {
			errs = append(errs, e.file.Close())
		}
	}
	errs = append(errs, jerr, c.lockFile.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cache: close: %w", err)
	}
	return nil
}

// DefaultBootIDFile is where Linux publishes the kernel's boot ID.
const DefaultBootIDFile = "/proc/sys/kernel/random/boot_id"

// bootID returns the stamp for records written without fsync: the
// kernel's boot ID, read from file, or, if it cannot be read, a stamp of
// this process alone ("process-" and a random ID). No later Open trusts a
// record with a process stamp, so without a boot ID only what Persist
// made durable survives a restart of the mount: the copies of files still
// open for writing are lost with the process (nothing promised to keep
// them; a closed file is uploaded or persisted), and a record written
// without fsync is never paired with data a power loss tore.
func bootID(file string) string {
	b, err := os.ReadFile(file)
	if id := strings.TrimSpace(string(b)); err == nil && id != "" {
		return id
	}
	return "process-" + newID()
}

// loaded is an entry found on disk by load.
type loaded struct {
	id       string
	rec      record
	key      Key
	origin   Key // a parked entry's Meta.Origin
	size     int64
	written  time.Time // record's mtime (or the data file's ctime): recency after a restart
	metaLen  int       // metadata file's length
	metaFile bool      // the record is a metadata file's
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
	ids := make([]string, 0, len(datas)+len(metas))
	for id := range metas {
		ids = append(ids, id)
	}
	for id := range datas {
		if !metas[id] {
			ids = append(ids, id)
		}
	}
	byKey := map[Key]loaded{}
	for _, id := range ids {
		l, why := c.loadOne(id, datas[id], metas[id])
		if why == whyNoRecord {
			// A clean copy never recorded, or a removal cut short.
			c.removeFiles(id)
			continue
		}
		if why == whySpare {
			c.keepSpare(id, datas[id], metas[id])
			continue
		}
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

// whySpare is what loadOne returns for an entry with an empty record: a
// spare (reuse.go), or a new entry whose record was never written.
// whyNoRecord is its answer for a data file with no record at all.
const (
	whySpare    = "spare"
	whyNoRecord = "no record"
)

// keepSpare takes the files of entry id, found by Open with an empty
// record, back as a spare, or deletes them if the pool is full or its
// data file cannot be emptied. Spares are of the kind this cache makes
// (xattr.go): a metadata file's empty record where records are kept in
// attributes is deleted with its files, and where they are metadata
// files a spare keeps no attribute. Called by Open, which owns c.
func (c *Cache) keepSpare(id string, hasData, hasMeta bool) {
	if hasData && hasMeta != c.xattrs && len(c.spares) < maxSpares && syscall.Truncate(c.dataPath(id), 0) == nil &&
		(c.xattrs || clearRecordXattr(c.dataPath(id)) == nil) {
		c.spares = append(c.spares, id)
		return
	}
	c.removeFiles(id)
}

// loadOne reads entry id, or returns why it is unusable (whySpare for a
// spare, whyNoRecord for a data file without one). Its record is its
// metadata file if it has one (hasMeta), else its data file's attribute.
func (c *Cache) loadOne(id string, hasData, hasMeta bool) (loaded, string) {
	l := loaded{id: id, metaFile: hasMeta}
	if !hasData {
		return l, "data file missing"
	}
	var b []byte
	var err error
	if hasMeta {
		mf := c.metaPath(id)
		if b, err = os.ReadFile(mf); err != nil {
			return l, "read metadata: " + err.Error()
		}
		mst, err := os.Stat(mf)
		if err != nil {
			return l, "stat metadata: " + err.Error()
		}
		l.written = mst.ModTime()
		l.metaLen = len(b)
	} else {
		var ok bool
		switch b, ok, err = readRecordXattr(c.dataPath(id)); {
		case err != nil:
			return l, "read metadata: " + err.Error()
		case !ok:
			return l, whyNoRecord
		}
		// The record and the data change the data file's ctime.
		var st syscall.Stat_t
		if err := syscall.Stat(c.dataPath(id), &st); err != nil {
			return l, "stat data: " + err.Error()
		}
		l.written = time.Unix(st.Ctim.Unix())
	}
	if len(b) == 0 {
		return l, whySpare
	}
	if err := json.Unmarshal(b, &l.rec); err != nil {
		return l, "parse metadata: " + err.Error()
	}
	if l.rec.V != metaVersion {
		return l, fmt.Sprintf("metadata version %d", l.rec.V)
	}
	if l.rec.Boot != "" && l.rec.Boot != c.boot {
		if strings.HasPrefix(l.rec.Boot, "process-") {
			return l, "written without fsync by an earlier process that had no boot ID to tell a restart from a reboot"
		}
		return l, "written without fsync before a reboot"
	}
	if l.key.Peer, err = unescapeName(l.rec.Peer); err != nil {
		return l, err.Error()
	}
	if l.key.Path, err = unescapeName(l.rec.Path); err != nil {
		return l, err.Error()
	}
	if l.origin.Peer, err = unescapeName(l.rec.OriginPeer); err != nil {
		return l, err.Error()
	}
	if l.origin.Path, err = unescapeName(l.rec.OriginPath); err != nil {
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
	if !l.rec.Dirty && l.rec.Partial {
		return l, "clean, and only part of its version"
	}
	if l.rec.Partial {
		if _, ok := decodeRanges(l.rec.Known); !ok {
			return l, "what a partial copy holds is unreadable"
		}
	}
	return l, ""
}
