package e2e

// Behaviours of special files (issue #12, item 3): FIFOs and sockets are
// made on the peer and work on the mounting machine; devices need the
// peer owner's permission.

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mknod(t testing.TB, path string, mode uint32, dev int) error {
	t.Helper()
	var err error
	withUmask(0, func() { err = again(func() error { return unix.Mknod(path, mode, dev) }) })
	return err
}

func specialBehaviours() []behaviour {
	return []behaviour{
		{name: "fifo/mkfifo", check: func(t testing.TB, dir string) {
			p := join(dir, "p")
			withUmask(0, func() { okDo(t, again(func() error { return unix.Mkfifo(p, 0o640) }), "mkfifo p") })
			if st := lstatOf(t, p); kindOf(st) != "p" || permOf(st) != 0o640 {
				t.Fatalf("mkfifo: type %s mode %04o, want a FIFO of 0640", kindOf(st), permOf(st))
			}
			// The FIFO works on the mounting machine, the kernel's pipe:
			// a byte written is read.
			var r, w int
			okDo(t, again(func() error {
				var err error
				r, err = unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				return err
			}), "open the FIFO to read")
			defer unix.Close(r)
			okDo(t, again(func() error {
				var err error
				w, err = unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				return err
			}), "open the FIFO to write")
			defer unix.Close(w)
			if _, err := unix.Write(w, []byte("x")); err != nil {
				t.Fatalf("write to the FIFO: %v", err)
			}
			buf := make([]byte, 4)
			if n, err := unix.Read(r, buf); err != nil || string(buf[:n]) != "x" {
				t.Errorf("read from the FIFO: %q %v", buf[:n], err)
			}
		}},
		{name: "fifo/mknod", check: func(t testing.TB, dir string) {
			okDo(t, mknod(t, join(dir, "p"), unix.S_IFIFO|0o600, 0), "mknod S_IFIFO")
			if st := lstatOf(t, join(dir, "p")); kindOf(st) != "p" || permOf(st) != 0o600 {
				t.Errorf("mknod S_IFIFO: type %s mode %04o", kindOf(st), permOf(st))
			}
		}},
		{name: "fifo/unlink-rename", check: func(t testing.TB, dir string) {
			okDo(t, mknod(t, join(dir, "p"), unix.S_IFIFO|0o644, 0), "mknod S_IFIFO")
			okDo(t, renameErr(join(dir, "p"), join(dir, "q")), "rename the FIFO")
			if st := lstatOf(t, join(dir, "q")); kindOf(st) != "p" {
				t.Errorf("renamed FIFO: type %s", kindOf(st))
			}
			okDo(t, os.Remove(join(dir, "q")), "unlink the FIFO")
			if got := entryTypes(t, dir); got != "" {
				t.Errorf("listing after unlink: %q", got)
			}
		}},
		{name: "socket/mknod", check: func(t testing.TB, dir string) {
			okDo(t, mknod(t, join(dir, "s"), unix.S_IFSOCK|0o600, 0), "mknod S_IFSOCK")
			if st := lstatOf(t, join(dir, "s")); kindOf(st) != "s" || permOf(st) != 0o600 {
				t.Errorf("mknod S_IFSOCK: type %s mode %04o", kindOf(st), permOf(st))
			}
		}},
		{name: "socket/bind", check: func(t testing.TB, dir string) {
			path := join(dir, "s")
			if len(path) > 100 {
				t.Skipf("skipping: %s is too long for a socket address", path)
			}
			ln, err := net.Listen("unix", path)
			okDo(t, err, "bind a UNIX socket")
			defer ln.Close()
			if st := lstatOf(t, path); kindOf(st) != "s" {
				t.Errorf("bound socket: type %s", kindOf(st))
			}
			// The socket is the mounting kernel's: a client connects.
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Write([]byte("hi"))
					c.Close()
				}
			}()
			c, err := net.DialTimeout("unix", path, 5*time.Second)
			okDo(t, err, "connect to the socket")
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2)
			if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
				t.Errorf("through the socket: %q %v", buf, err)
			}
		}},
		{name: "special/listing-types", check: func(t testing.TB, dir string) {
			okDo(t, mknod(t, join(dir, "p"), unix.S_IFIFO|0o644, 0), "mknod S_IFIFO")
			okDo(t, mknod(t, join(dir, "s"), unix.S_IFSOCK|0o644, 0), "mknod S_IFSOCK")
			putFile(t, join(dir, "f"), "x")
			if got, want := entryTypes(t, dir), "f:f p:p s:s"; got != want {
				t.Errorf("listing: %q, want %q", got, want)
			}
		}},
		{name: "devices/mknod", trusted: true, check: func(t testing.TB, dir string) {
			needRoot(t)
			for _, d := range []struct {
				name, kind string
				mode       uint32
				dev        uint64
			}{{"null", "c", unix.S_IFCHR, unix.Mkdev(1, 3)}, {"loop", "b", unix.S_IFBLK, unix.Mkdev(7, 0)}} {
				okDo(t, mknod(t, join(dir, d.name), d.mode|0o600, int(d.dev)), "mknod "+d.name)
				if st := lstatOf(t, join(dir, d.name)); kindOf(st) != d.kind || st.Rdev != d.dev {
					t.Errorf("%s: type %s rdev %d,%d", d.name, kindOf(st), unix.Major(st.Rdev), unix.Minor(st.Rdev))
				}
			}
		}},
	}
}

// devicesRefused is devices/mknod on a peer that does not allow devices:
// EPERM, nothing made.
func devicesRefused(t testing.TB, dir string) {
	wantErr(t, mknod(t, join(dir, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))), unix.EPERM, "mknod of a character device")
	wantErr(t, mknod(t, join(dir, "loop"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))), unix.EPERM, "mknod of a block device")
	if got := entryTypes(t, dir); got != "" {
		t.Errorf("listing after refused mknods: %q", got)
	}
}
