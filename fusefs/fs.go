package fusefs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	"github.com/peerfs/peerfs/fusefs/fusedev"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
	"github.com/rs/zerolog"
)

// Options configure a mount. The zero value is usable.
type Options struct {
	// AttrTimeout is how long the kernel may cache attributes (default 1s).
	AttrTimeout time.Duration
	// EntryTimeout is how long the kernel may cache a name lookup, and how
	// long a directory listing answers lookups in that directory
	// (default 1s).
	EntryTimeout time.Duration
	// Logger receives the package's logs, with component=fusefs added.
	// FUSE operations log at debug level, every request and answer at
	// trace (the request server's).
	Logger zerolog.Logger
	// FSName is the source shown in /proc/mounts (default "peerfs").
	FSName string
	// AllowOther lets other users access the mount (needs
	// user_allow_other in /etc/fuse.conf when not root). Permissions are
	// then checked by the kernel against the reported modes.
	AllowOther bool
	// ReadOnly mounts read-only.
	ReadOnly bool
	// MaxReadahead is the kernel's read-ahead in bytes (default 128 KiB).
	MaxReadahead uint32
	// MaxWrite is the largest write the kernel hands over in one
	// request, in bytes (default 1 MiB, the most; more than 128 KiB
	// needs a kernel with FUSE_MAX_PAGES, 4.20 and later, else 128 KiB).
	MaxWrite uint32
	// UnmountTimeout bounds how long Close waits for the server to stop
	// after a lazy unmount before aborting the connection (default 5s).
	UnmountTimeout time.Duration
	// Observe, if set, is called once per answered FUSE request with the
	// operation's name in lower case ("lookup", "read", "flush"...), the
	// time from when it was read to its answer, and the errno's name ("EIO")
	// or "" on success. It must be quick and safe for concurrent use.
	Observe func(op string, d time.Duration, errno string)
}

func (o *Options) setDefaults() {
	if o.AttrTimeout <= 0 {
		o.AttrTimeout = time.Second
	}
	if o.EntryTimeout <= 0 {
		o.EntryTimeout = time.Second
	}
	if o.FSName == "" {
		o.FSName = "peerfs"
	}
	if o.MaxReadahead == 0 {
		o.MaxReadahead = 128 << 10
	}
	if o.MaxWrite == 0 {
		o.MaxWrite = 1 << 20
	}
	if o.UnmountTimeout <= 0 {
		o.UnmountTimeout = 5 * time.Second
	}
}

// Mounted is a mounted, serving peerfs filesystem, returned by Mount. (It
// cannot share the name of the function.)
type Mounted struct {
	mountpoint string
	inval      *invalidator
	log        zerolog.Logger
	timeout    time.Duration
	connID     uint64        // fusectl connection number; 0 if unknown
	done       chan struct{} // closed when Serve returns
	serveErr   error         // written before done is closed

	closeOnce sync.Once
	closeErr  error // written inside closeOnce, read after it
}

// Mount mounts store at mountpoint and serves it in a goroutine until
// Close, or until the filesystem is unmounted from outside (see Done).
//
// Kernel caching: attributes and entries are cached for
// AttrTimeout/EntryTimeout and invalidated when store.Watch reports a
// change; file data is dropped on every open (close-to-open consistency)
// and writes go straight to the Store (no writeback cache), so Flush sees
// every byte written before close and its error reaches close().
func Mount(mountpoint string, store Store, opts Options) (*Mounted, error) {
	opts.setDefaults()
	log := opts.Logger.With().Str("component", "fusefs").Str("mountpoint", mountpoint).Logger()
	conn, err := fusedev.Mount(mountpoint, fusedev.Config{
		MountOptions: fusedev.MountOptions{
			FSName:             opts.FSName,
			Subtype:            "peerfs",
			AllowOther:         opts.AllowOther,
			DefaultPermissions: true,
			ReadOnly:           opts.ReadOnly,
		},
		MaxReadahead: opts.MaxReadahead,
		MaxWrite:     opts.MaxWrite,
		AsyncRead:    true,
		AtomicTrunc:  true,
		Readdirplus:  true,
		KillPriv:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", mountpoint, err)
	}
	f := newFilesys(store, opts, log)
	f.killPriv = conn.KillPriv()
	server, err := fuseserve.New(conn, f, fuseserve.Options{Logger: log, Observe: opts.Observe, Errno: f.errno})
	if err != nil {
		Unmount(mountpoint)
		conn.Close()
		return nil, fmt.Errorf("fusefs: %w", err)
	}
	f.kernel = server // before Serve: read-only from then on
	m := &Mounted{
		mountpoint: mountpoint,
		inval:      newInvalidator(f, server),
		log:        log,
		timeout:    opts.UnmountTimeout,
		done:       make(chan struct{}),
	}
	if m.connID, err = connNumber(mountpoint); err != nil {
		log.Debug().Err(err).Msg("FUSE connection number unknown; cannot abort a busy mount")
	}
	go func() {
		err := server.Serve()
		// The device is closed only once Serve no longer reads it.
		if cerr := conn.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("fusefs: close FUSE device: %w", cerr)
		}
		m.serveErr = err
		close(m.done)
	}()
	store.Watch(m.inval.enqueue)
	if ew, ok := store.(EntryWatcher); ok {
		ew.WatchEntries(m.inval.enqueueEntry)
	}
	if sw, ok := store.(StoredWatcher); ok {
		sw.WatchStored(f.stored)
	}
	log.Info().Msg("mounted")
	return m, nil
}

// Mountpoint returns the directory the filesystem is mounted on.
func (m *Mounted) Mountpoint() string { return m.mountpoint }

// Done is closed when the server has stopped, after Close or an unmount
// from outside.
func (m *Mounted) Done() <-chan struct{} { return m.done }

// Err returns the server's error once Done is closed (nil for a clean
// unmount), and nil before.
func (m *Mounted) Err() error {
	select {
	case <-m.done:
		return m.serveErr
	default:
		return nil
	}
}

// Close is Unmount; it makes Mounted an io.Closer.
func (m *Mounted) Close() error { return m.Unmount() }

// Unmount unmounts the filesystem (lazily if it is busy) and waits for the
// server to stop. If the server is still held by open files after
// UnmountTimeout, the FUSE connection is aborted. Calling it again returns
// the first result.
func (m *Mounted) Unmount() error {
	m.closeOnce.Do(func() {
		m.inval.stop()
		select {
		case <-m.done:
			// Already unmounted from outside.
		default:
			if err := Unmount(m.mountpoint); err != nil {
				m.closeErr = err
			}
			m.wait()
		}
		if m.closeErr == nil {
			m.closeErr = m.serveErr
		}
		m.log.Info().Err(m.closeErr).Msg("unmounted")
	})
	return m.closeErr
}

// wait waits for Serve to return. A lazy unmount leaves it running while
// files are open; past the timeout the connection is aborted, and if that
// is impossible (fusectl not mounted) Unmount gives up with an error,
// leaving the server to stop when the last file is closed (see Done).
func (m *Mounted) wait() {
	timer := time.NewTimer(m.timeout)
	defer timer.Stop()
	select {
	case <-m.done:
		return
	case <-timer.C:
	}
	m.log.Warn().Msg("server still busy after unmount; aborting the FUSE connection")
	if err := abortConn(m.connID); err != nil {
		m.closeErr = fmt.Errorf("fusefs: %s still busy after lazy unmount; abort: %w", m.mountpoint, err)
		return
	}
	timer.Reset(m.timeout)
	select {
	case <-m.done:
	case <-timer.C:
		m.closeErr = fmt.Errorf("fusefs: %s still busy after abort", m.mountpoint)
	}
}

// abortConn aborts FUSE connection number id through fusectl, which makes
// the server's pending read fail so that Serve returns.
func abortConn(id uint64) error {
	if id == 0 {
		return errors.New("connection number unknown")
	}
	p := filepath.Join("/sys/fs/fuse/connections", strconv.FormatUint(id, 10), "abort")
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// connNumber finds the FUSE mount at mountpoint in /proc/self/mountinfo and
// returns its minor device number, which names the connection in fusectl.
// It is read right after mounting: a lazy unmount removes the entry.
func connNumber(mountpoint string) (uint64, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	var found uint64
	var ok bool
	for line := range strings.Lines(string(data)) {
		// id parent major:minor root mountpoint options... - fstype source super
		fields := strings.Fields(line)
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != abs {
			continue
		}
		_, minor, cut := strings.Cut(fields[2], ":")
		if !cut {
			continue
		}
		if n, perr := strconv.ParseUint(minor, 10, 64); perr == nil {
			found, ok = n, true // the last entry is the top of the stack
		}
	}
	if !ok {
		return 0, fmt.Errorf("%s not in /proc/self/mountinfo", abs)
	}
	return found, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Unmount unmounts the FUSE filesystem at mountpoint: first normally with
// fusermount3, and if that fails (busy, or its server is gone) lazily, by
// umount2(MNT_DETACH) and then fusermount3 -u -z. It is for cleaning up a
// stale mount as well as for Mounted.Unmount.
func Unmount(mountpoint string) error {
	err := fuse.Unmount(mountpoint)
	if err == nil {
		return nil
	}
	lazyErr := syscall.Unmount(mountpoint, syscall.MNT_DETACH)
	if lazyErr == nil {
		return nil
	}
	out, zErr := exec.Command("fusermount3", "-u", "-z", mountpoint).CombinedOutput()
	if zErr == nil {
		return nil
	}
	return fmt.Errorf("fusefs: unmount %s: %w", mountpoint, errors.Join(err,
		fmt.Errorf("umount2 MNT_DETACH: %w", lazyErr),
		fmt.Errorf("fusermount3 -u -z: %w: %s", zErr, strings.TrimSpace(string(out)))))
}
