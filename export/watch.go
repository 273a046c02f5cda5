package export

// WATCH (docs/PROTOCOL.md, "Watching directories"): a client names the
// directories it caches, and the server reports every change of their
// entries as it happens, from one inotify instance per Server, so that
// the client may keep its listings until told. Changes are reported
// whoever made them: a client through this server (itself included), a
// process on this machine, a peer's other export of the same directory.
//
// An event names a path and is the entry as it is when reported (lstat,
// with its version token), or GONE: a client that knows that entry
// already (it made the change) keeps what it knows. Events of one path
// close together are reported once (eventBatch). A directory that is
// removed, moved or replaced, or under one that is, stops being watched
// (UNWATCHED): its path no longer leads to it. An entry's change
// reports its directory too (its times and link count). What inotify
// does not see is not reported: changes through mmap until the file is
// closed, a file's changes through another of its hard links in another
// directory, and a link made to it from a directory not watched. A TICK
// goes out only while nothing read from the kernel waits to be
// reported; when the kernel's queue overflows, or reading it fails, the
// event connections are closed (their clients watch anew).

import (
	"errors"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/peerfs/peerfs/export/jail"
	"github.com/peerfs/peerfs/peerproto"
	"golang.org/x/sys/unix"
)

const (
	// watchMask is what a watched directory reports: its entries made,
	// removed, moved, written or given other attributes, and itself
	// given other attributes, removed or moved.
	watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
		unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	// eventBatch is how long the server gathers events before it reports
	// them: a file written in many pieces is reported once, not per
	// write.
	eventBatch = 2 * time.Millisecond
	// maxWatchedDirs bounds the directories a server watches, and
	// maxConnWatches those one event connection names.
	maxWatchedDirs = 65536
	maxConnWatches = 16384
	// eventQueue is how many lines an event connection may have waiting;
	// past it, its client is sent RESET instead of what did not fit.
	eventQueue = 4096
)

// errWatchClosed: the server is closing.
var errWatchClosed = errors.New("watching stopped: server closing")

// watcher is a Server's inotify instance, the directories it watches and
// the event connections they are reported to. Lock order: watcher.mu is
// a leaf (eventConn.send does not block).
type watcher struct {
	s  *Server
	f  *os.File // the inotify descriptor, non-blocking, read through Go's poller
	fd int      // f's descriptor, for (un)watching while not closed (mu)

	kick chan struct{} // wakes the reporter (buffered 1)

	mu   sync.Mutex           // protects the fields below
	dirs map[string]*watchDir // by path ("" the root)
	wds  map[int32]*watchDir  // by watch descriptor
	// below counts, per path, the directories of dirs strictly under
	// it: dropLocked scans dirs only for a path with some (every
	// directory made, removed or moved in a watched one drops what is
	// watched at its path). Kept by watchLocked and unwatchLocked.
	below   map[string]int
	conns   map[*eventConn]struct{} // every event connection
	pending map[string]struct{}     // paths changed, to report
	gone    map[*eventConn][]string // UNWATCHED owed, by connection
	// reporting: the reporter is working on a batch (looking entries
	// up); no TICK goes out meanwhile, nor while pending has any.
	reporting bool
	// dead: reading the kernel's events failed; nothing more will be
	// reported, so the event connections are closed and no WATCH taken.
	dead   bool
	closed bool
}

// watchDir is one watched directory.
type watchDir struct {
	wd   int32
	path string
	by   map[*eventConn]struct{}
}

// watcher returns the Server's watcher, started at the first call.
func (s *Server) watcher() (*watcher, error) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.watch != nil && !s.watch.isDead() {
		return s.watch, nil
	}
	if s.watch != nil {
		s.watch.close() // failed: a new instance instead
		s.watch = nil
	}
	if s.watchDone {
		return nil, errWatchClosed
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "inotify_init1", Err: err}
	}
	w := &watcher{
		s: s, f: os.NewFile(uintptr(fd), "inotify"), fd: fd,
		kick:    make(chan struct{}, 1),
		dirs:    map[string]*watchDir{},
		below:   map[string]int{},
		wds:     map[int32]*watchDir{},
		conns:   map[*eventConn]struct{}{},
		pending: map[string]struct{}{},
		gone:    map[*eventConn][]string{},
	}
	s.watch = w
	s.wg.Add(2)
	go w.read()
	go w.report()
	return w, nil
}

// isDead reports whether w stopped reading the kernel's events.
func (w *watcher) isDead() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dead
}

// close stops w: its reader and reporter end.
func (w *watcher) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.f.Close()
	w.poke()
}

func (w *watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// add watches directory p (clean) for ec and queues WATCH OK, in one
// critical section (an UNWATCHED of p never goes out before it): nil
// once every change of it from now on will be reported.
func (w *watcher) add(ec *eventConn, p string) error {
	const verb = peerproto.VerbWatch
	j := w.s.jail.Strict()
	fd, err := j.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !watchableFS(fd) {
		// A network filesystem mounted inside the export.
		return peerproto.Fail(verb, peerproto.CodeUnsupported, "%q is on a filesystem that does not report changes made elsewhere", p)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.dead {
		return errWatchClosed
	}
	if d, ok := w.dirs[p]; ok {
		if _, mine := d.by[ec]; !mine && len(ec.dirs) >= maxConnWatches {
			return peerproto.Fail(verb, peerproto.CodeTooLarge, "this connection watches %d directories already", len(ec.dirs))
		}
	} else if len(w.dirs) >= maxWatchedDirs || len(ec.dirs) >= maxConnWatches {
		return peerproto.Fail(verb, peerproto.CodeTooLarge, "too many directories watched")
	}
	wd, err := unix.InotifyAddWatch(w.fd, fdPath(fd, ""), watchMask)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return peerproto.Fail(verb, peerproto.CodeTooLarge, "the system's limit of inotify watches is reached (fs.inotify.max_user_watches)")
		}
		return &os.SyscallError{Syscall: "inotify_add_watch", Err: err}
	}
	d := w.wds[int32(wd)]
	if d != nil && d.path != p {
		// The same directory, watched under a path it no longer has
		// (moved, and its IN_MOVE_SELF not read yet).
		w.dropLocked(d.path, true)
		w.poke() // the UNWATCHED owed
		d = nil
	}
	if d == nil {
		d = w.dirs[p]
	}
	if d == nil {
		d = &watchDir{wd: int32(wd), path: p, by: map[*eventConn]struct{}{}}
		w.watchLocked(d)
	}
	d.wd = int32(wd)
	w.wds[d.wd] = d
	d.by[ec] = struct{}{}
	ec.dirs[p] = struct{}{}
	// Moved between the open and the watch, the directory watched is
	// not the one p leads to now: what p holds would go unreported.
	if now, err := j.Stat(p); err != nil || !sameInode(now, &st) {
		delete(d.by, ec)
		delete(ec.dirs, p)
		if len(d.by) == 0 {
			w.unwatchLocked(d)
		}
		return peerproto.Fail(verb, peerproto.CodeConflict, "%q was moved while it was being watched", p)
	}
	ec.send(peerproto.WatchOK{Dir: p})
	return nil
}

// sameInode reports whether fi is the file st describes.
func sameInode(fi os.FileInfo, st *unix.Stat_t) bool {
	s, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(s.Dev) == uint64(st.Dev) && s.Ino == st.Ino
}

// remove stops watching p for ec.
func (w *watcher) remove(ec *eventConn, p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(ec.dirs, p)
	if d, ok := w.dirs[p]; ok {
		delete(d.by, ec)
		if len(d.by) == 0 {
			w.unwatchLocked(d)
		}
	}
}

// join registers ec; leave forgets it and every watch it alone holds.
func (w *watcher) join(ec *eventConn) {
	w.mu.Lock()
	w.conns[ec] = struct{}{}
	w.mu.Unlock()
}

func (w *watcher) leave(ec *eventConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.conns, ec)
	delete(w.gone, ec)
	for p := range ec.dirs {
		if d, ok := w.dirs[p]; ok {
			delete(d.by, ec)
			if len(d.by) == 0 {
				w.unwatchLocked(d)
			}
		}
	}
	clear(ec.dirs)
}

// unwatchLocked removes d's inotify watch and forgets d. Called with
// w.mu held.
func (w *watcher) unwatchLocked(d *watchDir) {
	if w.dirs[d.path] == d {
		delete(w.dirs, d.path)
		w.countLocked(d.path, -1)
	}
	if w.wds[d.wd] == d {
		delete(w.wds, d.wd)
		if !w.closed {
			// IN_IGNORED follows, for a descriptor no longer known.
			_, _ = unix.InotifyRmWatch(w.fd, uint32(d.wd))
		}
	}
}

// dropLocked stops watching the directory at p and, with tree, every
// one under it: their paths lead to them no longer. Their connections
// are owed UNWATCHED. Called with w.mu held.
func (w *watcher) dropLocked(p string, tree bool) {
	if d, ok := w.dirs[p]; ok {
		w.dropOneLocked(d)
	}
	if !tree || w.below[p] == 0 {
		return
	}
	for dp, d := range w.dirs {
		if under(dp, p) {
			w.dropOneLocked(d)
		}
	}
}

// dropOneLocked stops watching d; its connections are owed UNWATCHED.
// Called with w.mu held.
func (w *watcher) dropOneLocked(d *watchDir) {
	for ec := range d.by {
		delete(ec.dirs, d.path)
		w.gone[ec] = append(w.gone[ec], d.path)
	}
	w.unwatchLocked(d)
}

// watchLocked records d, new, in dirs. Called with w.mu held.
func (w *watcher) watchLocked(d *watchDir) {
	w.dirs[d.path] = d
	w.countLocked(d.path, 1)
}

// countLocked adds n to below of every path above p. Called with w.mu
// held.
func (w *watcher) countLocked(p string, n int) {
	for p != "" {
		p = parentOf(p)
		if w.below[p] += n; w.below[p] == 0 {
			delete(w.below, p)
		}
	}
}

// under reports whether path p is dir or inside it.
func under(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// read reads the kernel's events until w is closed, noting which paths
// changed and waking the reporter.
func (w *watcher) read() {
	defer w.s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
				w.s.log.Error().Err(err).Msg("reading inotify events; watching stopped, event connections closed")
				w.mu.Lock()
				w.dead = true
				for ec := range w.conns {
					ec.kill()
				}
				w.mu.Unlock()
			}
			return
		}
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := ""
			if ev.Len > 0 {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				if i := strings.IndexByte(string(raw), 0); i >= 0 {
					raw = raw[:i]
				}
				name = string(raw)
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.noteLocked(ev.Wd, ev.Mask, name)
		}
		w.mu.Unlock()
		w.poke()
	}
}

// noteLocked records one event. Called with w.mu held.
func (w *watcher) noteLocked(wd int32, mask uint32, name string) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		// Events lost, those that keep the paths of the watches true
		// among them: every event connection ends, and its client
		// watches anew (the watches no one holds go with them).
		w.s.log.Warn().Msg("inotify's queue overflowed: the event connections are closed, their clients watch anew")
		for ec := range w.conns {
			ec.kill()
		}
		return
	}
	d := w.wds[wd]
	if d == nil {
		return // removed here (IN_IGNORED after rm_watch), or unknown
	}
	dir := d.path
	switch {
	case mask&unix.IN_IGNORED != 0, mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
		// Gone from its path: so is every directory watched under it.
		w.pending[dir] = struct{}{}
		delete(w.wds, wd) // the kernel dropped it or will
		w.dropLocked(dir, true)
		return
	case name == "":
		w.pending[dir] = struct{}{} // its own attributes
		return
	case jail.Reserved(name):
		return // temporary files clients never see
	}
	p := path.Join(dir, name)
	if dir == "" {
		p = name
	}
	w.pending[p] = struct{}{}
	// The directory's own times and link count changed too: its
	// entry, in its parent's watchers' listings, is reported as well.
	w.pending[dir] = struct{}{}
	if mask&unix.IN_ISDIR != 0 && mask&(unix.IN_MOVED_FROM|unix.IN_DELETE|unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
		// A directory gone from p, or another one there now (one
		// renamed over a watched one that is held open, whose
		// IN_DELETE_SELF waits for its last close): what is watched
		// at or under p is not what p leads to.
		w.dropLocked(p, true)
	}
}

// report writes out what changed, in batches, until w is closed.
func (w *watcher) report() {
	defer w.s.wg.Done()
	for range w.kick {
		time.Sleep(eventBatch)
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return
		}
		w.reporting = true
		paths := make([]string, 0, len(w.pending))
		for p := range w.pending {
			paths = append(paths, p)
		}
		clear(w.pending)
		gone := w.gone
		w.gone = map[*eventConn][]string{}
		w.mu.Unlock()
		// Looked up without w.mu: a stat may wait on the disk.
		lines := make(map[string][]byte, len(paths))
		for _, p := range paths {
			lines[p] = w.s.eventLine(p)
		}
		w.mu.Lock()
		for ec, dirs := range gone {
			for _, dp := range dirs {
				ec.send(peerproto.Unwatched{Dir: dp})
			}
		}
		for _, p := range paths {
			// To whoever watches its directory, or it.
			to := map[*eventConn]struct{}{}
			if p != "" {
				if d, ok := w.dirs[parentOf(p)]; ok {
					for ec := range d.by {
						to[ec] = struct{}{}
					}
				}
			}
			if d, ok := w.dirs[p]; ok {
				for ec := range d.by {
					to[ec] = struct{}{}
				}
			}
			for ec := range to {
				ec.sendLine(lines[p])
			}
		}
		w.reporting = false
		w.mu.Unlock()
	}
}

// idleLocked reports whether nothing read from the kernel is waiting to
// be reported: a TICK may say so. Called with w.mu held.
func (w *watcher) idleLocked() bool {
	return !w.reporting && len(w.pending) == 0 && len(w.gone) == 0
}

// parentOf returns the directory of clean path p ("" for the root's
// entries).
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// eventLine returns the event line of clean path p as it is now: CHANGED
// with its entry as a posix connection's LIST gives it, or GONE.
func (s *Server) eventLine(p string) []byte {
	e, err := s.posixEntryOf(p)
	if err != nil {
		return peerproto.Gone{Path: p}.AppendTo(nil)
	}
	e.Name = p
	return peerproto.Changed{Entry: e}.AppendTo(nil)
}

// posixEntryOf returns the entry (without its name) of clean path p as a
// posix connection sees it.
func (s *Server) posixEntryOf(p string) (peerproto.Entry, error) {
	j := s.jail.Strict()
	if p == "" {
		st, err := jail.Fstat(j.FD(), p)
		if err != nil {
			return peerproto.Entry{}, err
		}
		return posixEntry("", &st), nil
	}
	dir, base := jail.Split(p)
	dfd, err := j.OpenDir(dir, false)
	if err != nil {
		return peerproto.Entry{}, err
	}
	defer j.CloseDir(dfd)
	return s.posixEntryAt(dfd, base, p)
}

// eventConn is an event connection's side of the watcher: the lines
// waiting to be written, and the directories it watches.
type eventConn struct {
	nc  net.Conn    // closed by kill
	out chan []byte // lines to write; never closed while the watcher may send
	// lost is set when a line did not fit in out: RESET is owed. Guarded
	// by watcher.mu (senders hold it) and read by the writer under it.
	lost bool
	dirs map[string]struct{} // guarded by watcher.mu
}

// kill closes ec's connection: its client hears nothing more, and
// watches again elsewhere or later.
func (ec *eventConn) kill() { ec.nc.Close() }

// send queues m (watcher.mu held, or the connection not yet joined).
func (ec *eventConn) send(m peerproto.Message) { ec.sendLine(m.AppendTo(nil)) }

// sendLine queues line, or notes it lost.
func (ec *eventConn) sendLine(line []byte) {
	select {
	case ec.out <- line:
	default:
		ec.lost = true
	}
}

// startEvents checks that c may become an event connection and returns
// the server's watcher; nil if it refused the request (err is then the
// refusal's, nil if it was sent).
func (c *conn) startEvents() (*watcher, error) {
	const verb = peerproto.VerbWatch
	if !c.posix || !c.s.watchable {
		why := "watching needs FEATURES posix"
		if !c.s.watchable {
			why = "this export's filesystem does not report changes made elsewhere"
		}
		return nil, c.refuse(verb, peerproto.Fail(verb, peerproto.CodeUnsupported, "%s", why))
	}
	w, err := c.s.watcher()
	if err != nil {
		return nil, c.refuse(verb, err)
	}
	return w, nil
}

// serveEvents turns c into an event connection of w, starting with its
// first request: it answers WATCH, UNWATCH and PING, writes the events
// of the directories it watches, and a TICK whenever it has been quiet
// for peerproto.TickEvery, until the client leaves or the connection breaks.
func (c *conn) serveEvents(w *watcher, first peerproto.Watch) error {
	const verb = peerproto.VerbWatch
	ec := &eventConn{nc: c.nc, out: make(chan []byte, eventQueue), dirs: map[string]struct{}{}}
	w.join(ec)
	defer w.leave(ec)
	c.result = "events"
	// The writer: the only one to write to c from here.
	werr := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		err := c.writeEvents(w, ec, stop)
		if err != nil {
			c.nc.Close() // the reader ends too
		}
		werr <- err
	}()
	defer func() {
		close(stop)
		<-werr
	}()
	var m peerproto.Message = first
	for {
		switch m := m.(type) {
		case peerproto.Watch:
			p, err := c.s.jail.Clean(m.Dir)
			if err == nil {
				err = w.add(ec, p) // queues WATCH OK
			}
			if err != nil {
				w.mu.Lock()
				ec.send(c.refusal(verb, err, m.Dir))
				w.mu.Unlock()
			}
		case peerproto.Unwatch:
			if p, err := c.s.jail.Clean(m.Dir); err == nil {
				w.remove(ec, p)
			}
			w.mu.Lock()
			ec.send(peerproto.UnwatchOK(m))
			w.mu.Unlock()
		case peerproto.Ping:
			w.mu.Lock()
			ec.send(peerproto.Pong{})
			w.mu.Unlock()
		case peerproto.Quit:
			return nil
		case malformed:
			w.mu.Lock()
			ec.send(peerproto.Refusal{Err: peerproto.Fail(verb, peerproto.CodeInvalid, "malformed request on an event connection")})
			w.mu.Unlock()
		default:
			w.mu.Lock()
			ec.send(peerproto.Refusal{Err: peerproto.Fail(m.Verb(), peerproto.CodeState, "an event connection takes only WATCH, UNWATCH, PING and QUIT")})
			w.mu.Unlock()
		}
		select {
		case err := <-werr:
			werr <- err // for the deferred wait
			return err
		default:
		}
		var err error
		if m, err = c.nextRequest(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// nextRequest reads the next request on an event connection, which may
// idle up to IdleTimeout between requests (the client PINGs). A
// malformed line is refused (through the writer) and skipped.
func (c *conn) nextRequest() (peerproto.Message, error) {
	for {
		if err := c.nc.SetReadDeadline(time.Now().Add(c.s.opts.IdleTimeout)); err != nil {
			return nil, err
		}
		c.rd.timeout = 0
		line, err := peerproto.ReadLine(c.r)
		if err != nil {
			return nil, err
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		m, err := peerproto.ParsePeerRequest(line)
		if err != nil {
			var pe *peerproto.ProtocolError
			if errors.As(err, &pe) {
				return malformed{}, nil // refused, and the connection goes on
			}
			return nil, err
		}
		return m, nil
	}
}

// malformed stands for a line an event connection could not parse.
type malformed struct{}

func (malformed) Verb() string             { return peerproto.VerbWatch }
func (malformed) AppendTo(b []byte) []byte { return b }

// refusal is the refusal of verb's request for err, about name.
func (c *conn) refusal(verb string, err error, name string) peerproto.Refusal {
	var fe *peerproto.FailError
	if !errors.As(err, &fe) {
		code, text, _ := jail.Explain(name, err)
		fe = &peerproto.FailError{Verb: verb, Code: code, Text: text}
	}
	return peerproto.Refusal{Err: fe}
}

// writeEvents writes ec's lines to c until stop is closed or a write
// fails: a TICK after peerproto.TickEvery without a line, and RESET where lines
// were lost (before any TICK: a TICK says nothing was).
func (c *conn) writeEvents(w *watcher, ec *eventConn, stop <-chan struct{}) error {
	tick := time.NewTimer(peerproto.TickEvery)
	defer tick.Stop()
	write := func(line []byte) error {
		if err := c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.IOTimeout)); err != nil {
			return err
		}
		if _, err := c.w.Write(line); err != nil {
			return err
		}
		return c.w.WriteByte('\n')
	}
	for {
		select {
		case <-stop:
			return nil
		case <-c.s.done:
			c.nc.Close()
			return errWatchClosed
		case line := <-ec.out:
			if err := write(line); err != nil {
				return err
			}
			// What else is queued goes in the same flush.
			for more := true; more; {
				select {
				case line := <-ec.out:
					if err := write(line); err != nil {
						return err
					}
				default:
					more = false
				}
			}
		case <-tick.C:
			w.mu.Lock()
			lost, idle := ec.lost, w.idleLocked()
			ec.lost = false
			w.mu.Unlock()
			var m peerproto.Message = peerproto.Tick{}
			switch {
			case lost:
				m = peerproto.Reset{}
			case !idle:
				// Changes read but not reported yet: a TICK would
				// say they were. The client waits, up to its silence
				// limit.
				tick.Reset(peerproto.TickEvery / 5)
				continue
			}
			if err := write(m.AppendTo(nil)); err != nil {
				return err
			}
		}
		// Lines that did not fit: the client forgets what it knows
		// (before any TICK tells it nothing was missed).
		w.mu.Lock()
		lost := ec.lost
		ec.lost = false
		w.mu.Unlock()
		if lost {
			if err := write(peerproto.Reset{}.AppendTo(nil)); err != nil {
				return err
			}
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		tick.Reset(peerproto.TickEvery)
	}
}

// watchableFS reports whether the filesystem of directory fd reports
// every change to it through inotify: not one whose files other
// machines change (NFS, SMB, Ceph, 9P, AFS) or whose changes another
// process serves (FUSE), where inotify sees only this machine's own.
func watchableFS(fd int) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.NFS_SUPER_MAGIC, unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC,
		unix.FUSE_SUPER_MAGIC, unix.CEPH_SUPER_MAGIC, unix.V9FS_MAGIC, unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC,
		0x47504653: // GPFS
		return false
	}
	return true
}
