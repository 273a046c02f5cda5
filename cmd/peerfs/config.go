package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/secure"
)

// envPrefix is the prefix of every environment variable: PEERFS_LISTEN...
//
// Every `envconfig` key below is the variable's full name, read with an
// empty prefix: envconfig falls back to the bare key when the prefixed
// variable is unset, so with a key of "SHELL" and the prefix PEERFS, a
// login shell's $SHELL would configure peerfs. With the full name as the
// key, the fallback looks up the same variable again.
const envPrefix = "PEERFS"

// LogConfig is shared by every command (exported so envconfig can set
// the fields of the embedded struct).
type LogConfig struct {
	LogLevel  string `envconfig:"PEERFS_LOG_LEVEL" default:"info" desc:"log level: debug, info, warn or error"`
	LogFormat string `envconfig:"PEERFS_LOG_FORMAT" default:"auto" desc:"log format: auto (console on a terminal, JSON otherwise), console or json"`
}

// SecurityConfig is shared by tracker, peer and mount: the cluster secret
// that authenticates and encrypts every connection, or the explicit choice
// of plaintext. The secret has no flag: a command line is visible to every
// user of the machine (ps).
type SecurityConfig struct {
	Secret     string `envconfig:"PEERFS_SECRET" flag:"-" desc:"cluster secret (at least 16 bytes; 32 random bytes recommended); environment only"`
	SecretFile string `envconfig:"PEERFS_SECRET_FILE" desc:"file holding the cluster secret (owner-only: mode 0600 or 0400)"`
	Insecure   bool   `envconfig:"PEERFS_INSECURE" default:"false" desc:"run without a secret: plaintext and unauthenticated (trusted networks only)"`
}

// trackerConfig configures `peerfs tracker`.
type trackerConfig struct {
	Listen        string        `envconfig:"PEERFS_LISTEN" default:":7070" desc:"address (host:port) the tracker listens on"`
	Lease         time.Duration `envconfig:"PEERFS_LEASE" default:"30s" desc:"how long a SYNC OK holder may keep the write token"`
	PeerTimeout   time.Duration `envconfig:"PEERFS_PEER_TIMEOUT" default:"15s" desc:"a registered peer silent this long is dropped (peers ping every 5s)"`
	MetricsListen string        `envconfig:"PEERFS_METRICS_LISTEN" desc:"serve Prometheus metrics at http://ADDR/metrics (host:port; off if empty)"`
	Etcd          string        `envconfig:"PEERFS_ETCD" desc:"etcd client URLs, comma-separated (http://host:2379,...): run as one of several tracker replicas that keep the peers and the SYNC rounds in etcd; off if empty (one self-contained tracker)"`
	EtcdPrefix    string        `envconfig:"PEERFS_ETCD_PREFIX" default:"/peerfs/" desc:"where in etcd the cluster's keys live (one prefix per peerfs cluster)"`
	EtcdTTL       time.Duration `envconfig:"PEERFS_ETCD_TTL" default:"10s" desc:"lease of a replica's session in etcd: a replica silent this long loses its peers (they register again with another) and the write token"`
	SecurityConfig
	LogConfig
}

// ServeConfig is what other peers may do to the export, shared by peer
// and mount (exported so envconfig can set the fields of the embedded
// struct).
type ServeConfig struct {
	ReadOnly     bool `envconfig:"PEERFS_READ_ONLY" default:"false" desc:"refuse every write other peers send"`
	AllowSetuid  bool `envconfig:"PEERFS_ALLOW_SETUID" default:"false" desc:"keep setuid/setgid bits other peers set (default: stripped, as on a nosuid export)"`
	Owners       bool `envconfig:"PEERFS_OWNERS" default:"false" desc:"store and report real owners: other peers may chown/chgrp here (trusted cluster, one uid space; default: refused, files show as the mounting user)"`
	AllowDevices bool `envconfig:"PEERFS_ALLOW_DEVICES" default:"false" desc:"let other peers create device nodes here (a device node is root on this machine; default: refused, FIFOs and sockets always allowed)"`
	MaxConns     int  `envconfig:"PEERFS_MAX_CONNS" default:"256" desc:"most simultaneous connections from other peers"`
}

// options are the export server's options for serving dir with c.
func (c ServeConfig) options(dir string, sec *secure.Config) export.Options {
	return export.Options{Export: dir, ReadOnly: c.ReadOnly, AllowSetuid: c.AllowSetuid, Owners: c.Owners,
		AllowDevices: c.AllowDevices, MaxConns: c.MaxConns, Secure: sec}
}

// peerConfig configures `peerfs peer`.
type peerConfig struct {
	Export  string `envconfig:"PEERFS_EXPORT" desc:"directory shared with the other peers (required)"`
	Listen  string `envconfig:"PEERFS_LISTEN" default:":7071" desc:"address (host:port) this peer serves on"`
	Tracker string `envconfig:"PEERFS_TRACKER" desc:"tracker host:port to register with (optional for peer); several, comma-separated, for tracker replicas on one etcd (tracker --etcd): the peer fails over between them"`
	Name    string `envconfig:"PEERFS_NAME" desc:"this peer's name, shown as its folder in mounts (default: the host name)"`
	ServeConfig
	Timeout       time.Duration `envconfig:"PEERFS_TIMEOUT" default:"5s" desc:"network timeout: a peer silent this long during a request counts as down"`
	Shell         string        `envconfig:"PEERFS_SHELL" default:"auto" desc:"interactive command shell on stdin: auto (when stdin is a terminal), on or off"`
	MetricsListen string        `envconfig:"PEERFS_METRICS_LISTEN" desc:"serve Prometheus metrics at http://ADDR/metrics (host:port; off if empty)"`
	SecurityConfig
	LogConfig
}

// mountConfig configures `peerfs mount`.
type mountConfig struct {
	Export  string `envconfig:"PEERFS_EXPORT" desc:"directory shared with the other peers (required)"`
	Listen  string `envconfig:"PEERFS_LISTEN" default:":7071" desc:"address (host:port) this peer serves on"`
	Tracker string `envconfig:"PEERFS_TRACKER" desc:"tracker host:port to register with (required); several, comma-separated, for tracker replicas on one etcd (tracker --etcd): the mount fails over between them"`
	Name    string `envconfig:"PEERFS_NAME" desc:"this peer's name, shown as its folder in other mounts (default: the host name)"`
	ServeConfig
	Timeout       time.Duration `envconfig:"PEERFS_TIMEOUT" default:"5s" desc:"network timeout: an operation on an unreachable peer fails with EIO after this"`
	CacheDir      string        `envconfig:"PEERFS_CACHE_DIR" desc:"local content cache (default: $XDG_CACHE_HOME/peerfs/<name>, or /var/cache/peerfs/<name> for root without $HOME)"`
	CacheSizeMB   int64         `envconfig:"PEERFS_CACHE_SIZE_MB" default:"1024" desc:"cache size bound in MiB; files not yet uploaded are never evicted"`
	AttrTimeout   time.Duration `envconfig:"PEERFS_ATTR_TIMEOUT" default:"1s" desc:"how long attributes and listings are cached"`
	WatchTimeout  time.Duration `envconfig:"PEERFS_WATCH_TIMEOUT" default:"30s" desc:"how long at most a listing of a directory its peer watches for this mount (it reports changes there as they happen) is trusted, rather than --attr-timeout; 0: no directory is watched"`
	AllowOther    bool          `envconfig:"PEERFS_ALLOW_OTHER" default:"false" desc:"let other users of this machine use the mount, with permissions checked by the kernel as on a local disk (a user other than root needs user_allow_other in /etc/fuse.conf)"`
	DrainTimeout  time.Duration `envconfig:"PEERFS_DRAIN_TIMEOUT" default:"10s" desc:"on SIGTERM, how long to keep uploading pending files before unmounting"`
	SyncNamespace bool          `envconfig:"PEERFS_SYNC_NAMESPACE" default:"false" desc:"make rm, rmdir, mv, mkdir and a directory's chmod and times wait for the peer's answer (default: acknowledged at once, journalled in the cache, carried out on the peer in the background in order; fsync, sync rounds and unmount wait for them)"`
	ForgetAfter   time.Duration `envconfig:"PEERFS_FORGET_AFTER" default:"168h" desc:"a peer neither listed by the tracker nor answering this long is forgotten: its folder goes (until then it stays, EIO while down)"`
	Control       string        `envconfig:"PEERFS_CONTROL" desc:"control socket for peerfs status (default: <cache-dir>/control.sock)"`
	MetricsListen string        `envconfig:"PEERFS_METRICS_LISTEN" desc:"serve Prometheus metrics at http://ADDR/metrics (host:port; off if empty)"`
	SecurityConfig
	LogConfig
}

// statusConfig configures `peerfs status`.
type statusConfig struct {
	Control  string        `envconfig:"PEERFS_CONTROL" desc:"control socket of the mount daemon (default: <cache-dir>/control.sock)"`
	Name     string        `envconfig:"PEERFS_NAME" desc:"the mount's peer name, to find its cache directory (default: the host name)"`
	CacheDir string        `envconfig:"PEERFS_CACHE_DIR" desc:"the mount's cache directory (default: as peerfs mount chooses it for NAME)"`
	JSON     bool          `envconfig:"PEERFS_JSON" default:"false" desc:"print the report as JSON"`
	Timeout  time.Duration `envconfig:"PEERFS_TIMEOUT" default:"5s" desc:"how long to wait for the daemon's answer"`
}

// settingKey is a setting's name without the prefix: LOG_LEVEL for
// PEERFS_LOG_LEVEL.
func settingKey(envName string) string { return strings.TrimPrefix(envName, envPrefix+"_") }

// flagName turns a setting key (LOG_LEVEL) into a flag name (log-level).
func flagName(key string) string { return strings.ReplaceAll(strings.ToLower(key), "_", "-") }

// origin is where a setting's value came from, named as the user gave
// it: an environment variable, a flag, or a mount(8) option.
type origin struct {
	name    string // PEERFS_TIMEOUT, --timeout or timeout
	kind    originKind
	boolean bool // a mount option that stands alone (insecure)
}

type originKind int

const (
	fromFlag originKind = iota
	fromEnv
	fromOption // mount -o ...,timeout=5s
	fromSource // mount's first argument, the tracker address
)

// String names the setting: PEERFS_TIMEOUT, --timeout, timeout=.
func (o origin) String() string {
	if o.kind == fromOption && !o.boolean {
		return o.name + "="
	}
	return o.name
}

// with shows the setting with a value, as it was given:
// PEERFS_TIMEOUT="bogus", --timeout "bogus", timeout=bogus.
func (o origin) with(val string) string {
	switch o.kind {
	case fromEnv:
		return fmt.Sprintf("%s=%q", o.name, val)
	case fromOption:
		return o.name + "=" + val
	default:
		return fmt.Sprintf("%s %q", o.name, val)
	}
}

// speller names a setting key in a command's own syntax.
type speller func(key string) origin

// flagSpelling is the command line's: --cache-dir.
func flagSpelling(key string) origin { return origin{name: "--" + flagName(key), kind: fromFlag} }

// settings says where each setting of a command came from, so that a
// message about one names it the way the user gave it.
type settings struct {
	spell   speller
	given   map[string]origin // by key, for the settings given
	envOnly map[string]bool   // keys without a flag (the secret)
}

// of names setting key: where its value came from if it was given, else
// as the command's syntax spells it.
func (s *settings) of(key string) origin {
	if o, ok := s.given[key]; ok {
		return o
	}
	if s.envOnly[key] {
		return origin{name: envPrefix + "_" + key, kind: fromEnv}
	}
	return s.spell(key)
}

// bad is the usage error for a bad value of setting key.
func (s *settings) bad(key, val, want string) error {
	return usagef("%s: %s", s.of(key).with(val), want)
}

// wantFor says, in the user's terms, what a setting of type t accepts.
func wantFor(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "want a duration with a unit, such as 500ms, 30s or 5m"
	case t.Kind() == reflect.Bool:
		return "want true or false"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "want a whole number"
	}
	return "not a valid " + t.String()
}

// setField parses s into the config field v, as envconfig would.
func setField(v reflect.Value, s string) error {
	switch p := v.Addr().Interface().(type) {
	case *string:
		*p = s
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*p = d
	default:
		panic(fmt.Sprintf("config field of unsupported type %T", p))
	}
	return nil
}

// fieldFlag is one config field as a flag.Value. A bad value is noted in
// *bad, so that the message says what the setting wants instead of the
// parser's internals.
type fieldFlag struct {
	v   reflect.Value
	key string
	bad *badFlag
}

type badFlag struct{ key, val string }

func (f *fieldFlag) String() string {
	if !f.v.IsValid() {
		return "" // the zero Value flag.isZeroValue makes
	}
	return fmt.Sprint(f.v.Interface())
}

func (f *fieldFlag) Set(s string) error {
	if err := setField(f.v, s); err != nil {
		*f.bad = badFlag{f.key, s}
		return err
	}
	return nil
}

func (f *fieldFlag) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }

// loadConfig fills cfg (a pointer to a config struct) from PEERFS_*
// variables and then from flags in args, which override them. It returns
// the remaining positional arguments and where each setting came from.
// spell names the settings in messages (nil: as flags).
func loadConfig(cmd, usage string, cfg any, args []string, out io.Writer, spell speller) ([]string, *settings, error) {
	if spell == nil {
		spell = flagSpelling
	}
	set := &settings{spell: spell, given: map[string]origin{}, envOnly: map[string]bool{}}
	if err := envconfig.Process("", cfg); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			key := settingKey(pe.KeyName)
			val := reflect.ValueOf(cfg).Elem()
			var want string
			forEachField(val, func(f reflect.StructField, v reflect.Value) {
				if f.Tag.Get("envconfig") == pe.KeyName {
					want = wantFor(f.Type)
				}
			})
			set.given[key] = origin{name: pe.KeyName, kind: fromEnv}
			return nil, nil, set.bad(key, pe.Value, want)
		}
		return nil, nil, usagef("environment: %v", err)
	}
	fset := flag.NewFlagSet("peerfs "+cmd, flag.ContinueOnError)
	// The flag package's own messages and usage would name flags with one
	// dash and its parsers' errors: ours are printed instead.
	fset.SetOutput(io.Discard)
	fset.Usage = func() {}
	var bad badFlag
	keyOf := map[string]string{} // flag name -> key
	type entry struct{ flag, env, def, desc string }
	var entries []entry
	forEachField(reflect.ValueOf(cfg).Elem(), func(f reflect.StructField, v reflect.Value) {
		env := f.Tag.Get("envconfig")
		key := settingKey(env)
		if _, ok := os.LookupEnv(env); ok {
			set.given[key] = origin{name: env, kind: fromEnv}
		}
		desc := f.Tag.Get("desc")
		if f.Tag.Get("flag") == "-" {
			// Environment only (a secret must not show in ps).
			set.envOnly[key] = true
			entries = append(entries, entry{"-", env, f.Tag.Get("default"), desc})
			return
		}
		name := flagName(key)
		keyOf[name] = key
		fset.Var(&fieldFlag{v: v, key: key, bad: &bad}, name, desc)
		entries = append(entries, entry{"--" + name, env, f.Tag.Get("default"), desc})
	})
	printUsage := func() {
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
		fmt.Fprintf(out, "Only the PEERFS_* variables above are read.\n")
	}
	if err := fset.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			printUsage()
			return nil, nil, err
		case bad.key != "":
			set.given[bad.key] = spell(bad.key)
			var want string
			forEachField(reflect.ValueOf(cfg).Elem(), func(f reflect.StructField, v reflect.Value) {
				if settingKey(f.Tag.Get("envconfig")) == bad.key {
					want = wantFor(f.Type)
				}
			})
			return nil, nil, set.bad(bad.key, bad.val, want)
		}
		return nil, nil, usagef("%s", flagError(err))
	}
	fset.Visit(func(f *flag.Flag) { set.given[keyOf[f.Name]] = spell(keyOf[f.Name]) })
	return fset.Args(), set, nil
}

// flagError rewords the flag package's errors with the dashes a user
// types.
func flagError(err error) string {
	msg := err.Error()
	for prefix, format := range map[string]string{
		"flag provided but not defined: -": "unknown flag --%s",
		"flag needs an argument: -":        "--%s needs a value",
	} {
		if name, ok := strings.CutPrefix(msg, prefix); ok {
			return fmt.Sprintf(format, strings.TrimLeft(name, "-"))
		}
	}
	return msg
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
