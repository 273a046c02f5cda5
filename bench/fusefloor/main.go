// Command fusefloor measures what one FUSE round trip costs on this
// machine through peerfs's own FUSE code, with no file system behind it:
// the floor under every metadata-bound workload in docs/PERFORMANCE.md.
//
// It mounts a trivial file system (every name is missing) twice, with
// fusefs/fusedev (the device codec peerfs mounts with), served
//
//   - "server": by fusefs/fuseserve's Server, as peerfs serves its mount
//     (each quick request answered on the goroutine that read it, under a
//     hand-off timer), and
//   - "inline": by a bare loop on fusedev's Conn that answers each
//     request on the goroutine that read it, nothing else,
//
// and times a perl loop of stat(2) calls on missing names in each (one
// LOOKUP round trip per call: the kernel caches no negative entry here),
// interleaved over -rounds rounds. It prints lookups per second and the
// mean round trip per mode: "server" less "inline" is what the server's
// bookkeeping costs a request. Needs root (or fusermount3) and perl.
//
//	go run ./bench/fusefloor -rounds 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
	"github.com/peerfs/peerfs/fusefs/fusedev"
	"github.com/peerfs/peerfs/fusefs/fuseserve"
)

func main() {
	rounds := flag.Int("rounds", 3, "interleaved rounds per mode")
	n := flag.Int("n", 20000, "stat calls per round")
	flag.Parse()
	res := map[string][]float64{}
	modes := []string{"server", "inline"}
	for r := 0; r < *rounds; r++ {
		for _, mode := range modes {
			rate, err := measure(mode, *n)
			if err != nil {
				fmt.Fprintf(os.Stderr, "fusefloor: %s: %v\n", mode, err)
				os.Exit(1)
			}
			res[mode] = append(res[mode], rate)
		}
	}
	for _, mode := range modes {
		v := res[mode]
		sort.Float64s(v)
		med := v[len(v)/2]
		fmt.Printf("%-7s median %8.0f lookups/s  (%.1f us per round trip)  runs %v\n", mode, med, 1e6/med, rounded(v))
	}
	fmt.Printf("server - inline: %.1f us per request\n", 1e6/median(res["server"])-1e6/median(res["inline"]))
}

func median(v []float64) float64 { return v[len(v)/2] }

func rounded(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// measure mounts the trivial file system served in mode, runs the stat
// loop in it and returns lookups per second.
func measure(mode string, n int) (float64, error) {
	dir, err := os.MkdirTemp("", "fusefloor-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(dir)
	conn, err := fusedev.Mount(dir, fusedev.Config{MountOptions: fusedev.MountOptions{FSName: "fusefloor", Subtype: "fusefloor"}})
	if err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	if mode == "server" {
		srv, err := fuseserve.New(conn, emptyFS{}, fuseserve.Options{Errno: errno})
		if err != nil {
			unmount(dir)
			conn.Close()
			return 0, err
		}
		go func() { done <- srv.Serve() }()
	} else {
		go func() { done <- serveInline(conn) }()
	}
	defer func() {
		unmount(dir)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		conn.Close()
	}()
	// perl, like fsbench.sh: a separate process, as a real program is.
	script := `use Time::HiRes qw(time); my ($d, $n) = @ARGV; my $t = time;
		for my $i (1 .. $n) { stat("$d/missing" . ($i % 2000)) } printf "%.6f\n", time - $t;`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "perl", "-e", script, dir, strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("stat loop: %w", err)
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || secs <= 0 {
		return 0, fmt.Errorf("stat loop printed %q", out)
	}
	return float64(n) / secs, nil
}

// emptyFS is a file system whose root directory is empty.
type emptyFS struct{}

func (emptyFS) Root() (fs.Node, error) { return emptyDir{}, nil }

type emptyDir struct{}

func (emptyDir) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Inode = 1
	a.Mode = os.ModeDir | 0o755
	a.Valid = time.Minute
	return nil
}

func (emptyDir) Lookup(ctx context.Context, name string) (fs.Node, error) {
	return nil, syscall.ENOENT
}

// errno maps the emptyFS's errors for the server: they are all errnos.
func errno(err error) fuse.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return fuse.Errno(e)
	}
	return fuse.Errno(syscall.EIO)
}

// unmount unmounts dir, lazily if it is busy or the unmount does not end
// within 10 s (each fusermount3 bounded so).
func unmount(dir string) {
	run := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, "fusermount3", args...).Run()
	}
	if run("-u", dir) != nil {
		if err := run("-u", "-z", dir); err != nil {
			fmt.Fprintf(os.Stderr, "fusefloor: cannot unmount %s: %v\n", dir, err)
		}
	}
}

// serveInline answers every request on the goroutine that read it: the
// root's attributes, ENOENT for every lookup, ENOSYS for the rest.
func serveInline(conn *fusedev.Conn) error {
	root := fuse.Attr{Inode: 1, Mode: os.ModeDir | 0o755, Valid: time.Minute}
	for {
		req, err := conn.ReadRequest()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ENODEV) {
				return nil
			}
			return err
		}
		switch req.(type) {
		case *fuse.GetattrRequest:
			err = conn.Reply(req, &fuse.GetattrResponse{Attr: root})
		case *fuse.LookupRequest:
			err = conn.ReplyError(req, fuse.Errno(syscall.ENOENT))
		case *fuse.StatfsRequest:
			err = conn.Reply(req, &fuse.StatfsResponse{})
		case *fuse.DestroyRequest, *fuse.ForgetRequest, *fuse.BatchForgetRequest:
			err = conn.Reply(req, nil)
		default:
			err = conn.ReplyError(req, fuse.Errno(syscall.ENOSYS))
		}
		if err != nil {
			return err
		}
	}
}
