package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/fusefs"
)

// fsType is the type of every peerfs mount in /proc/mounts.
const fsType = "fuse.peerfs"

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	id, mountpoint, fstype, source string
}

// mountAt returns the mount on top at mountpoint (an absolute, clean
// path), if any.
func mountAt(mountpoint string) (mountEntry, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false
	}
	defer f.Close()
	var top mountEntry
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeOctal(fields[4]) != mountpoint {
			continue
		}
		for i, fl := range fields {
			if fl == "-" && i+2 < len(fields) {
				// Later lines are mounted on top of earlier ones.
				top = mountEntry{id: fields[0], mountpoint: mountpoint, fstype: fields[i+1], source: unescapeOctal(fields[i+2])}
				found = true
				break
			}
		}
	}
	return top, found
}

// mountID returns the id of the peerfs mount on top at mountpoint, or "".
func mountID(mountpoint string) string {
	if m, ok := mountAt(mountpoint); ok && m.fstype == fsType {
		return m.id
	}
	return ""
}

// unescapeOctal undoes mountinfo's octal escapes (\040 for a space).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				n = n*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(n)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountPath makes path absolute with its symbolic links resolved, as
// mountinfo shows mountpoints. If path itself cannot be resolved (a mount
// whose daemon died fails every access), only its directory is.
func mountPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		abs = filepath.Join(dir, filepath.Base(abs))
	}
	return abs, nil
}

// prepareMountpoint checks that a mount can go on mountpoint: an existing
// directory on which nothing is mounted. A peerfs mount whose daemon died
// (a crash leaves one: every access fails with ENOTCONN) is unmounted.
func prepareMountpoint(mountpoint string) error {
	_, err := os.Stat(mountpoint)
	if errors.Is(err, syscall.ENOTCONN) {
		if uerr := fusefs.Unmount(mountpoint); uerr != nil {
			return fmt.Errorf("stale mount at %s: %w", mountpoint, uerr)
		}
		// Give the kernel a moment to drop the detached mount.
		for range 50 {
			if _, err = os.Stat(mountpoint); !errors.Is(err, syscall.ENOTCONN) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist: create the directory first", mountpoint)
	case err != nil:
		return fmt.Errorf("mountpoint: %w", err)
	}
	fi, err := os.Stat(mountpoint)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mountpoint)
	}
	if m, ok := mountAt(mountpoint); ok {
		if m.fstype == fsType {
			return fmt.Errorf("%s is already a peerfs mount (of %s); peerfs unmount %s first, or choose another directory", mountpoint, m.source, mountpoint)
		}
		return fmt.Errorf("%s already has a %s filesystem mounted on it; choose another directory", mountpoint, m.fstype)
	}
	return nil
}

// unmount unmounts the peerfs mount at path, and only a peerfs mount.
func unmount(path string) error {
	mountpoint, err := mountPath(path)
	if err != nil {
		return err
	}
	m, ok := mountAt(mountpoint)
	if !ok {
		if _, err := os.Lstat(mountpoint); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: no such directory", mountpoint)
		}
		return fmt.Errorf("%s is not mounted", mountpoint)
	}
	if m.fstype != fsType {
		return fmt.Errorf("%s is a %s mount, not peerfs: leaving it alone (unmount it with umount(8))", mountpoint, m.fstype)
	}
	if err := fusefs.Unmount(mountpoint); err != nil {
		return err
	}
	return nil
}
