package fusedev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MountOptions are what the mount itself takes (fusermount3's -o), as
// opposed to what INIT negotiates (Config).
type MountOptions struct {
	FSName  string // the source shown in /proc/mounts
	Subtype string // the type shown is "fuse." + Subtype
	// AllowOther lets other users in (fusermount3 needs
	// user_allow_other in /etc/fuse.conf when not run by root).
	AllowOther bool
	// DefaultPermissions makes the kernel check permissions against the
	// modes and owners the filesystem reports.
	DefaultPermissions bool
	// ReadOnly mounts read-only (ro).
	ReadOnly bool
}

// optionString is o as fusermount3's -o argument.
func (o MountOptions) optionString() string {
	var opts []string
	if o.FSName != "" {
		opts = append(opts, "fsname="+escapeOption(o.FSName))
	}
	if o.Subtype != "" {
		opts = append(opts, "subtype="+escapeOption(o.Subtype))
	}
	if o.AllowOther {
		opts = append(opts, "allow_other")
	}
	if o.DefaultPermissions {
		opts = append(opts, "default_permissions")
	}
	if o.ReadOnly {
		opts = append(opts, "ro")
	}
	return strings.Join(opts, ",")
}

// escapeOption escapes the characters fusermount3 splits options on.
func escapeOption(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// mountTimeout bounds fusermount3's run: a mount point on a filesystem
// that does not answer (a stale FUSE or network mount) can hold it in
// stat(2) forever, and the mount must fail rather than hang. A variable
// so that tests can shorten it.
var mountTimeout = 30 * time.Second

// mountDevice mounts a FUSE filesystem on dir through fusermount3 and
// returns the device it is served on. fusermount3 opens /dev/fuse, mounts
// it and passes the descriptor back over a socket (_FUSE_COMMFD), which
// is what lets an unprivileged user mount.
func mountDevice(dir string, o MountOptions) (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[0]), "fusermount3-socket")
	ours := fds[1]
	defer unix.Close(ours)

	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), mountTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "fusermount3", "-o", o.optionString(), "--", dir)
	cmd.Env = append(os.Environ(), "_FUSE_COMMFD=3")
	cmd.ExtraFiles = []*os.File{theirs} // descriptor 3 in the child
	cmd.Stderr = &stderr
	// Killed at the deadline; Run then waits this long more for its
	// output, which a child it left behind could hold open.
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	theirs.Close()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("fusermount3 not found (install fuse3): %w", err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fusermount3 did not finish within %v: is %s on a filesystem that does not answer? (%w)", mountTimeout, dir, err)
		}
		if msg == "" {
			return nil, fmt.Errorf("fusermount3: %w", err)
		}
		return nil, fmt.Errorf("fusermount3: %s: %w", msg, err)
	}
	return receiveFD(ours)
}

// receiveFD reads the one descriptor fusermount3 sends over socket fd.
func receiveFD(fd int) (*os.File, error) {
	buf := make([]byte, 8)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive the FUSE device from fusermount3: %w", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("receive the FUSE device from fusermount3: %w", err)
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err != nil || len(got) == 0 {
				continue
			}
			for _, extra := range got[1:] {
				unix.Close(extra)
			}
			return os.NewFile(uintptr(got[0]), "/dev/fuse"), nil
		}
		return nil, errors.New("receive the FUSE device from fusermount3: no descriptor in its message")
	}
}
