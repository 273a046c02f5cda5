package shell

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/peerfs/peerfs/peer"
)

// barThreshold is the smallest transfer that shows a progress bar.
const barThreshold = 4 << 20

// progress returns the progress callback for a transfer of size bytes and
// a function to call when it ends (ok: it completed). Without a terminal,
// or for a small transfer, both do nothing.
func (s *shell) progress(desc string, size int64) (peer.Progress, func(ok bool)) {
	if !s.opts.TTY || size <= barThreshold {
		return nil, func(bool) {}
	}
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(s.errw),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	update := func(done int64) { _ = bar.Set64(done) }
	end := func(ok bool) {
		if ok {
			_ = bar.Finish()
			return
		}
		_ = bar.Clear()
		_ = bar.Exit()
	}
	return update, end
}

func (s *shell) cmdPut(args []string) bool {
	c, id, ok := s.conn("PUT", args[0])
	if !ok {
		return false
	}
	local := args[1]
	typed := filepath.Base(local)
	if len(args) == 3 {
		typed = args[2]
	}
	name, err := remoteName(typed)
	if err == nil && name == "" {
		err = errors.New("remote name is the export root")
	}
	if err != nil {
		s.println("PUT FAIL " + err.Error())
		return false
	}
	f, err := os.Open(local)
	if err != nil {
		s.println("PUT FAIL " + err.Error())
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.println("PUT FAIL " + err.Error())
		return false
	}
	if !fi.Mode().IsRegular() {
		s.printf("PUT FAIL %s is not a regular file", local)
		return false
	}
	progress, end := s.progress("PUT "+show(name), fi.Size())
	// An *os.File goes out with sendfile.
	done, err := c.Put(s.ctx, name, f, fi.Size(), progress)
	end(err == nil)
	if err != nil {
		s.failed("PUT", id, c, err)
		return false
	}
	s.printf("PUT OK %s %d bytes", show(name), done.Size)
	return false
}

func (s *shell) cmdGet(args []string) bool {
	c, id, ok := s.conn("GET", args[0])
	if !ok {
		return false
	}
	name, err := remoteName(args[1])
	if err == nil && name == "" {
		err = errors.New("the export root is a directory")
	}
	if err != nil {
		s.println("GET FAIL " + err.Error())
		return false
	}
	local := baseName(name)
	if len(args) == 3 {
		local = args[2]
	}
	// Like cp, a directory as target means "into it".
	if fi, err := os.Stat(local); err == nil && fi.IsDir() {
		local = filepath.Join(local, baseName(name))
	}
	// STAT first: its size sizes the progress bar, and a directory or a
	// missing file fails before a temporary file is made.
	e, err := c.Stat(s.ctx, name)
	if err != nil {
		s.failed("GET", id, c, err)
		return false
	}
	if e.IsDir() {
		s.printf("GET FAIL isdir %s is a directory", show(name))
		return false
	}
	progress, end := s.progress("GET "+show(name), e.Size)
	n, err := s.download(c, name, local, progress)
	end(err == nil)
	switch {
	case err == nil:
		s.printf("GET OK %s %d bytes -> %s", show(name), n, show(local))
	case errors.Is(err, errLocal):
		s.println("GET FAIL " + err.Error())
	default:
		s.failed("GET", id, c, err)
	}
	return false
}

// errLocal marks a download failure on the local side (the file system),
// which says nothing about the connection.
var errLocal = errors.New("local file")

// download fetches name into local atomically: into a temporary file in
// local's directory, fsynced and renamed over local only when complete.
// On failure nothing is left under local or the temporary name.
func (s *shell) download(c *peer.Conn, name, local string, progress peer.Progress) (n int64, err error) {
	localErr := func(err error) error { return fmt.Errorf("%w: %w", errLocal, err) }
	f, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".peerfs-*")
	if err != nil {
		return 0, localErr(err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err = c.Get(s.ctx, name, 0, -1, f, progress)
	if err != nil {
		return n, err
	}
	if err := f.Chmod(0o644); err != nil {
		return n, localErr(err)
	}
	if err := f.Sync(); err != nil {
		return n, localErr(err)
	}
	if err := f.Close(); err != nil {
		return n, localErr(err)
	}
	if err := os.Rename(tmp, local); err != nil {
		return n, localErr(err)
	}
	return n, nil
}
