package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	if os.Getenv("PEERFS_E2E_SYSCALLS") != "" {
		os.Exit(runSyscalls())
	}
}

// A syscall child runs single system calls on a mount, one per line of
// its standard input, from its working directory, and prints one line
// per call: "ok", "ok <detail>" or the errno's name (ENOENT, EIO...). It
// keeps descriptors open across calls, so a test can use a descriptor
// opened before a fault, and compare its lines with those of the same
// calls on a local directory (syscallPair).
//
//	open NAME PATH [FLAGS]  open PATH (flags: rdonly, wronly, rdwr, creat, excl, trunc, joined by |)
//	opendir NAME PATH       open PATH as a directory
//	close NAME              close it
//	pread NAME              read up to 64 bytes at offset 0; "ok <bytes read>"
//	write NAME TEXT         write TEXT at the current offset
//	getdents NAME           seek to 0, read every entry; "ok <count>" (without . and ..)
//	ls PATH                 open PATH, read every entry, close; "ok <names,...>"
//	stat PATH
//	mkdir PATH
//	rmdir PATH
//	unlink PATH
//	rename FROM TO
//	link FROM TO
//	symlink TARGET PATH
//	mknod PATH              a FIFO
//	getxattr PATH NAME      "ok <value>"
//
// A word "@N" stands for N bytes of "n" (a long name).
func runSyscalls() int {
	fds := map[string]int{}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i, w := range f {
			if n, ok := strings.CutPrefix(w, "@"); ok {
				var k int
				if _, err := fmt.Sscan(n, &k); err == nil {
					f[i] = strings.Repeat("n", k)
				}
			}
		}
		detail, err := syscallOne(fds, f)
		switch {
		case err == nil && detail == "":
			fmt.Println("ok")
		case err == nil:
			fmt.Println("ok " + detail)
		default:
			var errno syscall.Errno
			if errors.As(err, &errno) {
				fmt.Println(unix.ErrnoName(errno))
			} else {
				fmt.Println("ERROR " + err.Error())
			}
		}
	}
	for _, fd := range fds {
		syscall.Close(fd)
	}
	return 0
}

func syscallOne(fds map[string]int, f []string) (string, error) {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	switch arg(0) {
	case "open":
		flags := syscall.O_RDONLY
		for _, w := range strings.Split(arg(3), "|") {
			flags |= map[string]int{"wronly": syscall.O_WRONLY, "rdwr": syscall.O_RDWR, "creat": syscall.O_CREAT,
				"excl": syscall.O_EXCL, "trunc": syscall.O_TRUNC}[w]
		}
		fd, err := syscall.Open(arg(2), flags|syscall.O_CLOEXEC, 0o644)
		if err == nil {
			fds[arg(1)] = fd
		}
		return "", err
	case "opendir":
		fd, err := syscall.Open(arg(2), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err == nil {
			fds[arg(1)] = fd
		}
		return "", err
	case "close":
		fd, ok := fds[arg(1)]
		if !ok {
			return "", errors.New("no such descriptor")
		}
		delete(fds, arg(1))
		return "", syscall.Close(fd)
	case "pread":
		buf := make([]byte, 64)
		n, err := syscall.Pread(fds[arg(1)], buf, 0)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%q", buf[:n]), nil
	case "write":
		_, err := syscall.Write(fds[arg(1)], []byte(strings.Join(f[2:], " ")))
		return "", err
	case "getdents":
		fd := fds[arg(1)]
		if _, err := syscall.Seek(fd, 0, io.SeekStart); err != nil {
			return "", err
		}
		names, err := readDirents(fd)
		return fmt.Sprint(len(names)), err
	case "ls":
		fd, err := syscall.Open(arg(1), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer syscall.Close(fd)
		names, err := readDirents(fd)
		return strings.Join(names, ","), err
	case "stat":
		var st syscall.Stat_t
		return "", syscall.Stat(arg(1), &st)
	case "mkdir":
		return "", syscall.Mkdir(arg(1), 0o755)
	case "rmdir":
		return "", syscall.Rmdir(arg(1))
	case "unlink":
		return "", syscall.Unlink(arg(1))
	case "rename":
		return "", syscall.Rename(arg(1), arg(2))
	case "link":
		return "", syscall.Link(arg(1), arg(2))
	case "symlink":
		return "", syscall.Symlink(arg(1), arg(2))
	case "mknod":
		return "", syscall.Mknod(arg(1), syscall.S_IFIFO|0o644, 0)
	case "getxattr":
		buf := make([]byte, 1024)
		n, err := unix.Getxattr(arg(1), arg(2), buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unknown call %q", arg(0))
}

// readDirents reads every entry of the directory fd from its current
// offset; an error ends the reading (getdents, not glibc's readdir, which
// takes ENOENT for the end).
func readDirents(fd int) ([]string, error) {
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Getdents(fd, buf)
		if err != nil {
			return names, err
		}
		if n == 0 {
			return names, nil
		}
		_, _, more := syscall.ParseDirent(buf[:n], -1, nil)
		names = append(names, more...)
	}
}

// syscallChild is a running syscall child.
type syscallChild struct {
	t   *testing.T
	in  io.WriteCloser
	out *bufio.Reader
	cmd *exec.Cmd
}

// startSyscalls starts a syscall child in dir, stopped at the end of the
// test.
func startSyscalls(t *testing.T, dir string) *syscallChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PEERFS_E2E_SYSCALLS=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &syscallChild{t: t, in: in, out: bufio.NewReader(out), cmd: cmd}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return c
}

// do runs one call and returns its answer line.
func (c *syscallChild) do(call string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.in, call+"\n"); err != nil {
		c.t.Fatalf("%s: %v", call, err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := c.out.ReadString('\n')
		line <- strings.TrimSuffix(s, "\n")
	}()
	select {
	case s := <-line:
		return s
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		c.t.Fatalf("%s: no answer within 60s", call)
		return ""
	}
}

// syscallPair is a syscall child in a local directory (the reference)
// and one in a directory of a mount.
type syscallPair struct {
	t            *testing.T
	dir          string
	local, there *syscallChild
}

func newSyscallPair(t *testing.T, dir string) *syscallPair {
	t.Helper()
	return &syscallPair{t: t, dir: dir, local: startSyscalls(t, t.TempDir()), there: startSyscalls(t, dir)}
}

// same runs each call in both and reports every call whose answers differ.
func (p *syscallPair) same(calls ...string) {
	p.t.Helper()
	for _, call := range calls {
		want, got := p.local.do(call), p.there.do(call)
		if got != want {
			p.t.Errorf("%s in %s: %s; in a local directory: %s", call, p.dir, got, want)
		}
	}
}
