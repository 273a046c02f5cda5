// Command peerfs shares directories between machines: a tracker keeps the
// list of peers and arbitrates the SYNC write token; every peer serves one
// exported directory; a mount shows every connected peer as a folder.
//
// Run `peerfs help` for the commands and `peerfs COMMAND --help` for each
// command's flags and PEERFS_* environment variables.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Exit codes, documented in README.md.
const (
	exitOK       = 0
	exitError    = 1 // runtime failure (cannot listen, mount failed...)
	exitUsage    = 2 // bad command line or configuration
	exitSignaled = 0 // stopped by SIGINT/SIGTERM after a clean shutdown
)

// version is set at build time with -ldflags "-X main.version=..."; it
// falls back to the module build info.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

const topUsage = `peerfs shares directories between machines, peer to peer.

Usage:
  peerfs tracker [flags]                 run the tracker (peer list and SYNC token)
  peerfs peer --export DIR [flags]       serve DIR to other peers; on a terminal,
                                         the interactive command shell
  peerfs mount --export DIR --tracker HOST:PORT [flags] MOUNTPOINT
                                         serve DIR and mount every connected peer
                                         as a folder under MOUNTPOINT
  peerfs unmount MOUNTPOINT              unmount (also a mount left by a crash)
  peerfs status [--json] [--name NAME | --control PATH]
                                         ask a running mount daemon how it is doing
  peerfs unsent [list | retry NAME... | drop NAME...]
                                         the files a mount could not store and kept
  peerfs forget [--force] [--name NAME | --control PATH] PEER
                                         remove the folder of a peer that is down
  peerfs leave [--name NAME | --control PATH]
                                         leave the cluster for good (the other mounts
                                         drop this peer's folder) and unmount
  peerfs mount-helper TRACKER_HOST:PORT MOUNTPOINT -o OPTIONS
                                         mount(8) helper: start the mount daemon in
                                         the background (mount -t fuse.peerfs)
  peerfs version                         print the version

Run 'peerfs COMMAND --help' for a command's flags and PEERFS_* variables.
`

func main() {
	tuneGC()
	args := os.Args[1:]
	if helperInvocation(os.Args[0], args) {
		args = append([]string{"mount-helper"}, args...)
	}
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "tracker":
		err = runTracker(rest, stderr)
	case "peer":
		err = runPeer(rest, stdin, stdout, stderr)
	case "mount":
		err = runMount(rest, stderr)
	case "unmount", "umount":
		err = runUnmount(rest, stderr)
	case "status":
		err = runStatus(rest, stdout, stderr)
	case "unsent":
		err = runUnsent(rest, stdout, stderr)
	case "forget":
		err = runForget(rest, stdout, stderr)
	case "leave":
		err = runLeave(rest, stdout, stderr)
	case "mount-helper":
		err = runMountHelper(rest, stdout, stderr)
	case "version", "--version", "-version", "-v":
		fmt.Fprintf(stdout, "peerfs %s\n", versionString())
		return exitOK
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, topUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "peerfs: unknown command %q\n\n%s", cmd, topUsage)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "peerfs %s: %v (see 'peerfs %s --help')\n", cmd, err, cmd)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "peerfs %s: %v\n", cmd, err)
		return exitError
	}
}

// usageError is a problem with the command line or configuration.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// newLogger builds the process logger: console format on a terminal, JSON
// otherwise (or as configured).
func newLogger(c LogConfig, set *settings, w io.Writer) (zerolog.Logger, error) {
	logFormatsOnce.Do(setLogFormats)
	level, err := zerolog.ParseLevel(strings.ToLower(c.LogLevel))
	if err != nil || c.LogLevel == "" {
		return zerolog.Nop(), set.bad("LOG_LEVEL", c.LogLevel, "want debug, info, warn or error")
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	console := false
	switch c.LogFormat {
	case "auto":
		console = tty
	case "console":
		console = true
	case "json":
	default:
		return zerolog.Nop(), set.bad("LOG_FORMAT", c.LogFormat, "want auto, console or json")
	}
	w = &pipeSafeWriter{w: w}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !tty}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

var logFormatsOnce sync.Once

// setLogFormats sets zerolog's formats, which are package variables: once,
// before the first logger exists. Timestamps keep their sub-second part
// (the console format shows milliseconds, which RFC 3339 without
// fractions would make all .000), and durations are written with their
// unit (lease=30s, not 30000).
func setLogFormats() {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
}

// pipeSafeWriter is a daemon's log destination that outlives its reader:
// once a write fails with EPIPE (`peerfs mount ... | head` has exited),
// the log is dropped instead of failing every later write. Together with
// ignoring SIGPIPE (survivePipeClose) a closed log does not stop a daemon.
type pipeSafeWriter struct {
	w    io.Writer
	gone atomic.Bool
}

func (p *pipeSafeWriter) Write(b []byte) (int, error) {
	if p.gone.Load() {
		return len(b), nil
	}
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		p.gone.Store(true)
		return len(b), nil
	}
	return n, err
}

// survivePipeClose makes writes to a closed stdout or stderr fail with
// EPIPE instead of killing the process: the Go runtime raises SIGPIPE for
// them unless the program handles or ignores it, and a daemon must not
// die (leaving a dead mount) because whoever read its log went away.
func survivePipeClose() { signal.Ignore(syscall.SIGPIPE) }
