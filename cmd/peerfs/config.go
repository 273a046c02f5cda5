package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// envPrefix is the prefix of every environment variable: PEERFS_LISTEN...
const envPrefix = "PEERFS"

// LogConfig is shared by every command (exported so envconfig can set
// the fields of the embedded struct).
type LogConfig struct {
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"log level: debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"auto" desc:"log format: auto (console on a terminal, JSON otherwise), console or json"`
}

// SecurityConfig is shared by tracker, peer and mount: the cluster secret
// that authenticates and encrypts every connection, or the explicit choice
// of plaintext. The secret has no flag: a command line is visible to every
// user of the machine (ps).
type SecurityConfig struct {
	Secret     string `envconfig:"SECRET" flag:"-" desc:"cluster secret (at least 16 bytes; 32 random bytes recommended); environment only"`
	SecretFile string `envconfig:"SECRET_FILE" desc:"file holding the cluster secret (owner-only: mode 0600 or 0400)"`
	Insecure   bool   `envconfig:"INSECURE" default:"false" desc:"run without a secret: plaintext and unauthenticated (trusted networks only)"`
}

// trackerConfig configures `peerfs tracker`.
type trackerConfig struct {
	Listen        string        `envconfig:"LISTEN" default:":7070" desc:"address (host:port) the tracker listens on"`
	Lease         time.Duration `envconfig:"LEASE" default:"30s" desc:"how long a SYNC OK holder may keep the write token"`
	PeerTimeout   time.Duration `envconfig:"PEER_TIMEOUT" default:"15s" desc:"a registered peer silent this long is dropped (peers ping every 5s)"`
	MetricsListen string        `envconfig:"METRICS_LISTEN" desc:"serve Prometheus metrics at http://ADDR/metrics (host:port; off if empty)"`
	SecurityConfig
	LogConfig
}

// peerConfig configures `peerfs peer`.
type peerConfig struct {
	Export        string        `envconfig:"EXPORT" desc:"directory shared with the other peers (required)"`
	Listen        string        `envconfig:"LISTEN" default:":7071" desc:"address (host:port) this peer serves on"`
	Tracker       string        `envconfig:"TRACKER" desc:"tracker host:port to register with (optional for peer)"`
	Name          string        `envconfig:"NAME" desc:"this peer's name, shown as its folder in mounts (default: the host name)"`
	ReadOnly      bool          `envconfig:"READ_ONLY" default:"false" desc:"refuse every write other peers send"`
	AllowSetuid   bool          `envconfig:"ALLOW_SETUID" default:"false" desc:"keep setuid/setgid bits other peers set (default: stripped, as on a nosuid export)"`
	MaxConns      int           `envconfig:"MAX_CONNS" default:"256" desc:"most simultaneous connections from other peers"`
	Timeout       time.Duration `envconfig:"TIMEOUT" default:"5s" desc:"network timeout: a peer silent this long during a request counts as down"`
	Shell         string        `envconfig:"SHELL" default:"auto" desc:"interactive command shell on stdin: auto (when stdin is a terminal), on or off"`
	MetricsListen string        `envconfig:"METRICS_LISTEN" desc:"serve Prometheus metrics at http://ADDR/metrics (host:port; off if empty)"`
	SecurityConfig
	LogConfig
}

// mountConfig configures `peerfs mount`.
type mountConfig struct {
	Export        string        `envconfig:"EXPORT" desc:"directory shared with the other peers (required)"`
	Listen        string        `envconfig:"LISTEN" default:":7071" desc:"address (host:port) this peer serves on"`
	Tracker       string        `envconfig:"TRACKER" desc:"tracker host:port to register with (required)"`
	Name          string        `envconfig:"NAME" desc:"this peer's name, shown as its folder in other mounts (default: the host name)"`
	ReadOnly      bool          `envconfig:"READ_ONLY" default:"false" desc:"refuse every write other peers send"`
	AllowSetuid   bool          `envconfig:"ALLOW_SETUID" default:"false" desc:"keep setuid/setgid bits other peers set (default: stripped, as on a nosuid export)"`
	MaxConns      int           `envconfig:"MAX_CONNS" default:"256" desc:"most simultaneous connections from other peers"`
	Timeout       time.Duration `envconfig:"TIMEOUT" default:"5s" desc:"network timeout: an operation on an unreachable peer fails with EIO after this"`
	CacheDir      string        `envconfig:"CACHE_DIR" desc:"local content cache (default: $XDG_CACHE_HOME/peerfs/<name>)"`
	CacheSizeMB   int64         `envconfig:"CACHE_SIZE_MB" default:"1024" desc:"cache size bound in MiB; files not yet uploaded are never evicted"`
	AttrTimeout   time.Duration `envconfig:"ATTR_TIMEOUT" default:"1s" desc:"how long attributes and listings are cached"`
	DrainTimeout  time.Duration `envconfig:"DRAIN_TIMEOUT" default:"10s" desc:"on SIGTERM, how long to keep uploading pending files before unmounting"`
	ForgetAfter   time.Duration `envconfig:"FORGET_AFTER" default:"168h" desc:"a peer neither listed by the tracker nor answering this long is forgotten: its folder goes (until then it stays, EIO while down)"`
	Control       string        `envconfig:"CONTROL" desc:"control socket for peerfs status (default: <cache-dir>/control.sock)"`
	MetricsListen string        `envconfig:"METRICS_LISTEN" desc:"serve Prometheus metrics at http://ADDR/metrics (host:port; off if empty)"`
	SecurityConfig
	LogConfig
}

// flagName turns an envconfig key (LOG_LEVEL) into a flag name (log-level).
func flagName(key string) string { return strings.ReplaceAll(strings.ToLower(key), "_", "-") }

// loadConfig fills cfg (a pointer to a config struct) from PEERFS_*
// variables and then from flags in args, which override them. It returns
// the remaining positional arguments.
func loadConfig(cmd, usage string, cfg any, args []string, out io.Writer) ([]string, error) {
	if err := envconfig.Process(envPrefix, cfg); err != nil {
		return nil, usagef("%v", err)
	}
	fset := flag.NewFlagSet("peerfs "+cmd, flag.ContinueOnError)
	fset.SetOutput(out)
	type entry struct{ flag, env, def, desc string }
	var entries []entry
	forEachField(reflect.ValueOf(cfg).Elem(), func(f reflect.StructField, v reflect.Value) {
		key := f.Tag.Get("envconfig")
		name := flagName(key)
		desc := f.Tag.Get("desc")
		if f.Tag.Get("flag") == "-" {
			// Environment only (a secret must not show in ps).
			entries = append(entries, entry{"-", envPrefix + "_" + key, f.Tag.Get("default"), desc})
			return
		}
		switch p := v.Addr().Interface().(type) {
		case *string:
			fset.StringVar(p, name, *p, desc)
		case *bool:
			fset.BoolVar(p, name, *p, desc)
		case *int:
			fset.IntVar(p, name, *p, desc)
		case *int64:
			fset.Int64Var(p, name, *p, desc)
		case *time.Duration:
			fset.DurationVar(p, name, *p, desc)
		default:
			panic(fmt.Sprintf("config field %s: unsupported type %T", f.Name, p))
		}
		entries = append(entries, entry{"--" + name, envPrefix + "_" + key, f.Tag.Get("default"), desc})
	})
	fset.Usage = func() {
		fmt.Fprintf(out, "Usage: peerfs %s\n\n", usage)
		tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  FLAG\tENVIRONMENT\tDEFAULT\tMEANING")
		for _, e := range entries {
			def := e.def
			if def == "" {
				def = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", e.flag, e.env, def, e.desc)
		}
		tw.Flush()
		fmt.Fprintln(out, "\nFlags override environment variables, which override defaults.")
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err) // exit code 2, as documented
	}
	return fset.Args(), nil
}

// forEachField calls fn for each envconfig-tagged field, descending into
// embedded structs.
func forEachField(v reflect.Value, fn func(reflect.StructField, reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			forEachField(v.Field(i), fn)
			continue
		}
		if f.Tag.Get("envconfig") != "" {
			fn(f, v.Field(i))
		}
	}
}
