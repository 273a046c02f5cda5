package main

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// mountFuse opens /dev/fuse and mounts it on dir with mount(2).
func mountFuse(dir string) (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	if err := unix.Mount("fuseuring", dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount: %w", err)
	}
	return fd, nil
}

// unmount unmounts dir, lazily if it is busy.
func unmount(dir string) error {
	var err error
	for i := 0; i < 5; i++ {
		err = unix.Unmount(dir, 0)
		if err == nil || err == unix.EINVAL || err == unix.ENOENT {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil && derr != unix.EINVAL {
		return errors.Join(err, derr)
	}
	return nil
}

// doInit reads the kernel's INIT from /dev/fuse and answers it. With
// wantURing, FUSE_OVER_IO_URING is set in flags2 if the kernel offers it;
// the result says whether it was.
func doInit(fd int, wantURing bool) (uring bool, kminor uint32, err error) {
	buf := make([]byte, maxWrite+4096)
	var n int
	for {
		n, err = unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		break
	}
	if err != nil {
		return false, 0, fmt.Errorf("read INIT: %w", err)
	}
	if n < inHeaderSize+16 || ne.Uint32(buf[4:]) != opInit {
		return false, 0, fmt.Errorf("first request is opcode %d (%d bytes), not INIT", ne.Uint32(buf[4:]), n)
	}
	unique := ne.Uint64(buf[8:])
	in := buf[inHeaderSize:n]
	major, minor := ne.Uint32(in[0:]), ne.Uint32(in[4:])
	readahead, flags := ne.Uint32(in[8:]), ne.Uint32(in[12:])
	var flags2 uint32
	if flags&initExt != 0 && len(in) >= 20 {
		flags2 = ne.Uint32(in[16:])
	}
	if major != 7 || minor < 36 {
		return false, minor, fmt.Errorf("kernel FUSE %d.%d: want 7.36+", major, minor)
	}
	out := make([]byte, outHeaderSize+64) // fuse_out_header + fuse_init_out
	ne.PutUint32(out[0:], uint32(len(out)))
	ne.PutUint64(out[8:], unique)
	o := out[outHeaderSize:]
	ne.PutUint32(o[0:], 7)
	ne.PutUint32(o[4:], min(minor, 42))
	ne.PutUint32(o[8:], readahead)
	ne.PutUint32(o[12:], (flags&initBigWrites)|initExt)
	ne.PutUint32(o[20:], maxWrite) // max_write
	ne.PutUint32(o[24:], 1)        // time_gran
	if wantURing && flags2&init2OverIOUring != 0 {
		ne.PutUint32(o[32:], init2OverIOUring) // flags2
		uring = true
	}
	if _, err := unix.Write(fd, out); err != nil {
		return false, minor, fmt.Errorf("write INIT reply: %w", err)
	}
	if wantURing && !uring {
		fmt.Fprintf(os.Stderr, "kernel did not offer FUSE_OVER_IO_URING (flags2 %#x; is enable_uring Y?)\n", flags2)
	}
	return uring, minor, nil
}

// devLoop serves requests from /dev/fuse with read(2) and write(2) until
// the connection goes away (ENODEV) or stop is set. It runs on a locked
// OS thread. count is incremented per request served.
func devLoop(fd int, count *atomic.Int64) error {
	buf := make([]byte, maxWrite+4096)
	reply := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		switch err {
		case nil:
		case unix.EINTR, unix.EAGAIN, unix.ENOENT:
			continue
		case unix.ENODEV:
			return nil
		default:
			return fmt.Errorf("read /dev/fuse: %w", err)
		}
		if n < inHeaderSize {
			return fmt.Errorf("short request: %d bytes", n)
		}
		count.Add(1)
		opcode := ne.Uint32(buf[4:])
		unique := ne.Uint64(buf[8:])
		nodeid := ne.Uint64(buf[16:])
		errno, out, noReply := handle(opcode, nodeid)
		if noReply {
			continue
		}
		l := outHeaderSize + len(out)
		ne.PutUint32(reply[0:], uint32(l))
		ne.PutUint32(reply[4:], uint32(errno))
		ne.PutUint64(reply[8:], unique)
		copy(reply[outHeaderSize:], out)
		for {
			_, err = unix.Write(fd, reply[:l])
			if err != unix.EINTR {
				break
			}
		}
		if err != nil && err != unix.ENOENT {
			if err == unix.ENODEV {
				return nil
			}
			return fmt.Errorf("write /dev/fuse: %w", err)
		}
	}
}

var _ = syscall.ENOENT
