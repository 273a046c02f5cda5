package main

// The mount helper: `mount -t fuse.peerfs TRACKER:PORT /mnt -o export=...`
// and /etc/fstab lines. mount(8) runs /sbin/mount.fuse.peerfs (a symlink
// to this binary, or contrib/mount.fuse.peerfs) as
//
//	mount.fuse.peerfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t fuse.peerfs]
//
// The helper starts `peerfs mount` in the background in its own session,
// with its log appended to a file, waits until the mountpoint is mounted
// (or the daemon fails), and exits 0 with the daemon left running.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"
)

// helperTimeout bounds how long the helper waits for the mount to appear.
const helperTimeout = 30 * time.Second

const helperUsage = `Usage: peerfs mount-helper TRACKER_HOST:PORT MOUNTPOINT [-sfnv] [-o OPTIONS]
       mount -t fuse.peerfs TRACKER_HOST:PORT MOUNTPOINT -o OPTIONS
       (with /sbin/mount.fuse.peerfs a symlink to peerfs)

Starts 'peerfs mount' in the background and returns once MOUNTPOINT is
mounted, or exits 1 with the daemon's complaint. OPTIONS are 'peerfs mount'
flags without the dashes, '_' or '-' alike:
  export=/srv/x,name=alice,secret_file=/etc/peerfs/secret,cache_dir=...
Boolean flags stand alone (insecure, read_only). Without cache_dir=, the
cache is ~/.cache/peerfs/NAME, or /var/cache/peerfs/NAME for root without
$HOME (as mount(8) and systemd run it). Also:
  log_file=PATH   the daemon's log (default /var/log/peerfs/NAME.log as
                  root, else in the user's cache directory)
Generic mount options (rw, defaults, auto, noauto, user, users, nofail,
_netdev, nodev, nosuid, noexec, noatime, x-*...) are accepted and ignored.
The cluster secret itself is never an option (fstab is world-readable):
use secret_file=, or PEERFS_SECRET in the environment.
-f prints the equivalent 'peerfs mount' command and does nothing; -v
prints it too, and mounts. --foreground runs the daemon in this process
(the background daemon is this command with --foreground).
In /proc/mounts the source is TRACKER_HOST:PORT as given and the type
fuse.peerfs, so 'mount -a' sees an fstab line that is mounted already.
`

// ignoredMountOptions are generic mount(8) options that mean nothing to
// peerfs (or that mount(8) already handled).
var ignoredMountOptions = map[string]bool{
	"rw": true, "defaults": true, "auto": true, "noauto": true, "user": true, "nouser": true,
	"users": true, "owner": true, "group": true, "nofail": true, "_netdev": true,
	"exec": true, "noexec": true, "suid": true, "nosuid": true, "dev": true, "nodev": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true, "strictatime": true,
	"diratime": true, "nodiratime": true, "async": true, "lazytime": true, "nolazytime": true,
}

// helperArgs is a parsed mount helper command line.
type helperArgs struct {
	source, mountpoint string
	fake, verbose      bool
	foreground         bool        // run the daemon here (the background helper's child)
	opts               []helperOpt // peerfs mount settings, in the order given
	logFile            string
	name               string
}

// helperOpt is one peerfs setting given as a mount option.
type helperOpt struct {
	typed  string // the option's name as typed: cache_dir, cache-dir
	key    string // the setting's key: CACHE_DIR
	val    string
	hasVal bool
}

// mountSettings describes the settings of peerfs mount that mount
// options may give, by key: whether each is a boolean (stands alone).
func mountSettings() map[string]bool {
	keys := map[string]bool{}
	forEachField(reflect.ValueOf(&mountConfig{}).Elem(), func(f reflect.StructField, v reflect.Value) {
		if f.Tag.Get("flag") != "-" {
			keys[settingKey(f.Tag.Get("envconfig"))] = f.Type.Kind() == reflect.Bool
		}
	})
	return keys
}

func parseHelperArgs(args []string) (helperArgs, error) {
	var h helperArgs
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "-t":
			if i+1 >= len(args) {
				return h, usagef("%s needs a value", a)
			}
			if a == "-o" {
				opts = append(opts, args[i+1])
			}
			i++
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, a[2:])
		case strings.HasPrefix(a, "-t"):
		case a == "-h" || a == "--help":
			return h, errHelperHelp
		case a == "--foreground":
			h.foreground = true
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for _, c := range a[1:] {
				switch c {
				case 'f':
					h.fake = true
				case 'v':
					h.verbose = true
				case 's', 'n':
				default:
					return h, usagef("unknown option -%c", c)
				}
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return h, usagef("want TRACKER_HOST:PORT MOUNTPOINT, got %d arguments", len(pos))
	}
	h.source, h.mountpoint = pos[0], pos[1]
	known := mountSettings()
	for _, o := range strings.Split(strings.Join(opts, ","), ",") {
		if o == "" {
			continue
		}
		typed, val, hasVal := strings.Cut(o, "=")
		key := strings.ToUpper(strings.ReplaceAll(typed, "-", "_"))
		switch {
		case ignoredMountOptions[typed] || strings.HasPrefix(typed, "x-") || typed == "comment" || typed == "helper":
			continue
		case typed == "ro":
			return h, usagef("option ro: a read-only mount is not supported yet")
		case key == "SECRET":
			return h, usagef("option %s: the secret must not be written in mount options (fstab is readable by every user); use secret_file=PATH", typed)
		case key == "LOG_FILE" || key == "LOG":
			h.logFile = val
			continue
		case key == "TRACKER":
			return h, usagef("option %s: the tracker is the mount's source, its first argument (TRACKER_HOST:PORT)", o)
		}
		boolean, ok := known[key]
		switch {
		case !ok:
			return h, usagef("unknown option %s", o)
		case !boolean && !hasVal:
			return h, usagef("option %s needs a value: %s=...", typed, typed)
		}
		if key == "NAME" {
			h.name = val
		}
		h.opts = append(h.opts, helperOpt{typed: typed, key: key, val: val, hasVal: hasVal})
	}
	return h, nil
}

// mountArgs returns the peerfs mount command line (without "mount") the
// options stand for.
func (h helperArgs) mountArgs(mountpoint string) []string {
	args := []string{"--tracker", h.source}
	for _, o := range h.opts {
		if o.hasVal {
			args = append(args, "--"+flagName(o.key)+"="+o.val)
		} else {
			args = append(args, "--"+flagName(o.key))
		}
	}
	return append(args, mountpoint)
}

// spelling names settings in messages as mount options, as the user
// typed them (cache_dir=, or cache-dir=), and the tracker as the source.
func (h helperArgs) spelling() speller {
	known := mountSettings()
	return func(key string) origin {
		if key == "TRACKER" {
			return origin{name: "source", kind: fromSource}
		}
		name := strings.ToLower(key)
		for _, o := range h.opts {
			if o.key == key {
				name = o.typed
			}
		}
		return origin{name: name, kind: fromOption, boolean: known[key]}
	}
}

// optionString is -o's value for the daemon: the peerfs options as typed.
func (h helperArgs) optionString() string {
	var opts []string
	for _, o := range h.opts {
		if o.hasVal {
			opts = append(opts, o.typed+"="+o.val)
		} else {
			opts = append(opts, o.typed)
		}
	}
	return strings.Join(opts, ",")
}

var errHelperHelp = errors.New("help")

func runMountHelper(args []string, stdout, stderr io.Writer) error {
	h, err := parseHelperArgs(args)
	if errors.Is(err, errHelperHelp) {
		fmt.Fprint(stdout, helperUsage)
		return nil
	}
	if err != nil {
		return err
	}
	mountpoint, err := mountPath(h.mountpoint)
	if err != nil {
		return err
	}
	if h.foreground {
		return mountWith(h.mountArgs(mountpoint), stderr, h.spelling())
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the peerfs binary: %w", err)
	}
	if h.verbose || h.fake {
		// What the daemon does, as one would type it.
		fmt.Fprintf(stdout, "%s mount %s\n", exe, strings.Join(h.mountArgs(mountpoint), " "))
	}
	if h.fake {
		return nil
	}
	logPath := h.logFile
	if logPath == "" {
		if logPath, err = defaultHelperLog(h.name, mountpoint); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	start, _ := logf.Seek(0, io.SeekEnd)
	before := mountID(mountpoint)

	// The daemon is this command again, in the foreground: it reads the
	// same options, so that its complaints name them as typed.
	cmd := exec.Command(exe, "mount-helper", "--foreground", h.source, mountpoint, "-o", h.optionString())
	cmd.Stdout, cmd.Stderr = logf, logf // stdin is /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = helperEnv(os.Environ())
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(helperTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			fmt.Fprintf(stderr, "peerfs mount-helper: the daemon exited (%v) before %s was mounted; its log (%s):\n", err, mountpoint, logPath)
			printTail(stderr, logPath, start)
			return fmt.Errorf("mount of %s failed", mountpoint)
		case <-deadline:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			printTail(stderr, logPath, start)
			return fmt.Errorf("%s not mounted after %v; stopped the daemon (log: %s)", mountpoint, helperTimeout, logPath)
		case <-tick.C:
		}
		if id := mountID(mountpoint); id != "" && id != before {
			if h.verbose {
				fmt.Fprintf(stdout, "mounted %s (daemon pid %d, log %s)\n", mountpoint, cmd.Process.Pid, logPath)
			}
			return nil // the daemon runs on in its own session
		}
	}
}

// systemPath is the PATH given to the daemon on top of the inherited one:
// mount(8) runs helpers with an empty PATH, and the daemon needs
// fusermount3.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// helperEnv is the daemon's environment: env with the system PATH
// appended and JSON logs unless a format is set.
func helperEnv(env []string) []string {
	out := make([]string, 0, len(env)+2)
	path, format := "", false
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "PATH="):
			path = strings.TrimPrefix(kv, "PATH=")
			continue
		case strings.HasPrefix(kv, envPrefix+"_LOG_FORMAT="):
			format = true
		}
		out = append(out, kv)
	}
	if path == "" {
		path = systemPath
	} else {
		path += ":" + systemPath
	}
	out = append(out, "PATH="+path)
	if !format {
		out = append(out, envPrefix+"_LOG_FORMAT=json")
	}
	return out
}

// defaultHelperLog is where a background daemon's log goes by default.
func defaultHelperLog(name, mountpoint string) (string, error) {
	if name == "" {
		name = strings.Trim(strings.ReplaceAll(mountpoint, "/", "-"), "-")
		if name == "" {
			name = "root"
		}
	}
	if os.Geteuid() == 0 {
		return filepath.Join("/var/log/peerfs", name+".log"), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no place for the log (give log_file=PATH): %w", err)
	}
	return filepath.Join(base, "peerfs", name+".log"), nil
}

// printTail copies the log written since offset (its last 4 KiB) to w.
func printTail(w io.Writer, path string, offset int64) {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return
	}
	b = b[offset:]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	_, _ = w.Write(b)
}

// helperInvocation reports whether this process was started as a mount
// helper: as /sbin/mount.fuse.peerfs (argv[0]), or by mount.fuse3, which
// runs "peerfs SOURCE MOUNTPOINT -o OPTIONS" for type fuse.peerfs.
func helperInvocation(argv0 string, args []string) bool {
	base := filepath.Base(argv0)
	if strings.HasPrefix(base, "mount.fuse.peerfs") || strings.HasPrefix(base, "mount.peerfs") {
		return true
	}
	if len(args) >= 2 && strings.Contains(args[0], ":") && !strings.HasPrefix(args[0], "-") {
		if fi, err := os.Stat(args[1]); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}
