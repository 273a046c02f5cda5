package main

// Operability of a mount daemon: the control socket that `peerfs status`
// asks, the metrics server (--metrics-listen), and the observer that feeds
// it; plus the `peerfs status` command itself.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/metrics"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/remote"
)

// controlSocketName is the control socket's name in the cache directory.
const controlSocketName = "control.sock"

// healthInterval is how often the mount PINGs each peer for the report.
const healthInterval = 5 * time.Second

// systemCacheDir is where a root mount without $HOME (mount(8), fstab,
// systemd) keeps its cache: /var/cache/peerfs/NAME.
const systemCacheDir = "/var/cache/peerfs"

// cacheDirs returns the cache directories a mount named name may have
// chosen by default, in the order peerfs mount tries them: the user's
// ($XDG_CACHE_HOME or ~/.cache), and for root the system's.
func cacheDirs(name string) []string {
	var dirs []string
	if base, err := os.UserCacheDir(); err == nil {
		dirs = append(dirs, filepath.Join(base, "peerfs", name))
	}
	if os.Geteuid() == 0 {
		dirs = append(dirs, filepath.Join(systemCacheDir, name))
	}
	return dirs
}

// defaultCacheDir is the cache directory of the mount named name when
// none is given: the user's, or without $HOME the system's for root.
func defaultCacheDir(name string, set *settings) (string, error) {
	if dirs := cacheDirs(name); len(dirs) > 0 {
		return dirs[0], nil
	}
	return "", usagef("no cache directory: neither $XDG_CACHE_HOME nor $HOME is set; give %s", withPlaceholder(set.of("CACHE_DIR"), "DIR"))
}

// controlPath returns the control socket's path: control if set, else in
// the cache directory.
func controlPath(control, cacheDir string) string {
	if control != "" {
		return control
	}
	return filepath.Join(cacheDir, controlSocketName)
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	var cfg statusConfig
	rest, _, err := loadConfig("status", "status [--json] [--control PATH | --name NAME | --cache-dir DIR]", &cfg, args, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	path, err := findControl(cfg.Control, cfg.Name, cfg.CacheDir)
	if err != nil {
		return err
	}
	body, err := askDaemon(path, "/status", cfg.Timeout)
	if err != nil {
		return err
	}
	if cfg.JSON {
		_, err = stdout.Write(body)
		return err
	}
	var r remote.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("bad answer from %s: %w", path, err)
	}
	_, err = io.WriteString(stdout, r.Text())
	return err
}

// findControl returns the control socket of a mount daemon: control if
// set, else the one in cacheDir, else the first there is in the places
// peerfs mount chooses for the mount named name (default: the host name):
// the user's cache, and for root the system's.
func findControl(control, name, cacheDir string) (string, error) {
	switch {
	case control != "":
		return control, nil
	case cacheDir != "":
		return controlPath("", cacheDir), nil
	}
	if name == "" {
		name = defaultName()
	}
	dirs := cacheDirs(name)
	if len(dirs) == 0 {
		return "", usagef("no cache directory to look in: neither $XDG_CACHE_HOME nor $HOME is set; give --cache-dir DIR or --control PATH")
	}
	// The first socket there is; else the first place, for the message.
	for _, d := range dirs {
		if _, err := os.Stat(controlPath("", d)); err == nil {
			return controlPath("", d), nil
		}
	}
	return controlPath("", dirs[0]), nil
}

// askDaemon GETs what from the daemon's control socket at path.
func askDaemon(path, what string, timeout time.Duration) ([]byte, error) {
	return callDaemon(http.MethodGet, path, what, timeout)
}

// callDaemon sends a request with method for what to the daemon's control
// socket at path, and returns the body of a 200 answer.
func callDaemon(method, path, what string, timeout time.Duration) ([]byte, error) {
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://peerfs"+what, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("no mount daemon answers at %s (is `peerfs mount` running? give --name, --cache-dir or --control)", path)
		}
		return nil, fmt.Errorf("asking the mount daemon at %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("asking the mount daemon at %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the mount daemon at %s answered %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// mountOps is a mount daemon's operability: metrics (optional), the
// control socket and the health pinger. Its zero value is not usable; see
// newMountOps.
type mountOps struct {
	log     zerolog.Logger
	reg     *metrics.Registry // nil without --metrics-listen
	listen  string            // --metrics-listen
	control string            // socket path

	metricsSrv *metrics.Server
	controlSrv *http.Server
	controlLn  net.Listener
	controlErr chan error

	mu    sync.Mutex // protects the fields below
	store *remote.Store
	leave func(context.Context) error // peerfs leave; nil until set (setLeave)
}

// setLeave sets what POST /leave does: leave the cluster and stop.
func (o *mountOps) setLeave(fn func(context.Context) error) {
	o.mu.Lock()
	o.leave = fn
	o.mu.Unlock()
}

// newMountOps prepares a mount's operability; start starts it once the
// Store exists.
func newMountOps(cfg mountConfig, log zerolog.Logger) *mountOps {
	o := &mountOps{log: log, listen: cfg.MetricsListen, control: controlPath(cfg.Control, cfg.CacheDir)}
	if cfg.MetricsListen != "" {
		o.reg = metrics.New(metrics.Options{Component: "mount", Version: versionString(), Report: o.report})
	}
	return o
}

// report returns the Store's report, or an empty one before start.
func (o *mountOps) report() remote.Report {
	o.mu.Lock()
	s := o.store
	o.mu.Unlock()
	if s == nil {
		return remote.Report{}
	}
	return s.Report()
}

// observer is the Store's remote.Observer (nil without metrics).
func (o *mountOps) observer() remote.Observer {
	if o.reg == nil {
		return nil
	}
	return &roundMetrics{Registry: o.reg}
}

// roundMetrics is a mount's remote.Observer with metrics: the registry
// counts requests and bytes and times SYNC turns; a round is timed here,
// from when this mount first saw it (SYNC READ or its turn) to its end.
type roundMetrics struct {
	*metrics.Registry

	mu         sync.Mutex // protects the field below
	roundStart time.Time  // when this mount first saw the current round; zero outside one
}

var _ remote.RoundObserver = (*roundMetrics)(nil)

// SyncRoundSeen notes that a SYNC round is on.
func (m *roundMetrics) SyncRoundSeen() {
	m.mu.Lock()
	if m.roundStart.IsZero() {
		m.roundStart = time.Now()
	}
	m.mu.Unlock()
}

// SyncRoundEnded records the round's duration (-1 if this mount did not
// see it begin).
func (m *roundMetrics) SyncRoundEnded(uint64) {
	m.mu.Lock()
	start := m.roundStart
	m.roundStart = time.Time{}
	m.mu.Unlock()
	d := time.Duration(-1)
	if !start.IsZero() {
		d = time.Since(start)
	}
	m.SyncRound(d)
}

// fuseObserve is fusefs.Options.Observe (nil without metrics).
func (o *mountOps) fuseObserve() func(op string, d time.Duration, errno string) {
	if o.reg == nil {
		return nil
	}
	return o.reg.FUSEOp
}

// start sets the report's context, starts the health pinger, the control
// socket and the metrics server.
func (o *mountOps) start(s *remote.Store, info remote.ReportInfo) error {
	o.mu.Lock()
	o.store = s
	o.mu.Unlock()
	s.SetReportInfo(info)
	s.StartHealth(healthInterval)
	if err := o.startControl(s); err != nil {
		return err
	}
	if o.reg != nil {
		srv, err := o.reg.Serve(o.listen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		o.metricsSrv = srv
		o.log.Info().Str("listen", srv.Addr()).Msg("serving metrics at /metrics")
	}
	return nil
}

// startControl listens on the control socket: a unix socket readable by
// this user only (0600, in a 0700 directory), serving
//
//	GET /status         the report as JSON (remote.Report)
//	GET /status?text=1  the report as text
//	POST /sync          run a SYNC round; 200 or 500 with the error
//	POST /unsent/...    see registerUnsent
//	POST /forget?peer=NAME[&force=1]  forget a peer that is down (presence.go)
//	POST /leave         leave the cluster on purpose and stop (presence.go)
func (o *mountOps) startControl(s *remote.Store) error {
	dir := filepath.Dir(o.control)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		o.log.Warn().Str("dir", dir).Stringer("mode", fi.Mode().Perm()).Msg("the control socket's directory is open to other users; the socket itself is 0600")
	}
	// A socket left by a daemon that died; a live one holds the cache lock,
	// so this daemon could not have got this far.
	if err := os.Remove(o.control); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", o.control)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", o.control, err)
	}
	if err := os.Chmod(o.control, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, req *http.Request) {
		r := s.Report()
		if req.URL.Query().Get("text") != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, r.Text())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	})
	mux.HandleFunc("POST /sync", func(w http.ResponseWriter, req *http.Request) {
		if err := s.Sync(req.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "SYNC OK\n")
	})
	registerUnsent(mux, s)
	o.handlePresence(mux, s)
	o.controlLn = ln
	o.controlSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	o.controlErr = make(chan error, 1)
	go func() { o.controlErr <- o.controlSrv.Serve(ln) }()
	o.log.Info().Str("socket", o.control).Msg("control socket ready (peerfs status)")
	return nil
}

// close stops the servers and removes the socket.
func (o *mountOps) close() {
	if o.metricsSrv != nil {
		if err := o.metricsSrv.Close(); err != nil {
			o.log.Debug().Err(err).Msg("metrics server")
		}
	}
	if o.controlSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = o.controlSrv.Shutdown(ctx)
		cancel()
		<-o.controlErr
		_ = os.Remove(o.control)
	}
}

// serveMetrics serves the metrics of a tracker or peer (runtime and
// process metrics, and what opts adds) at addr until the returned stop is
// called; "" serves nothing.
func serveMetrics(addr string, opts metrics.Options, log zerolog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	opts.Version = versionString()
	reg := metrics.New(opts)
	srv, err := reg.Serve(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	log.Info().Str("listen", srv.Addr()).Msg("serving metrics at /metrics")
	return func() { _ = srv.Close() }, nil
}

// validMountName checks a mount's peer name: a valid peer name, and not
// the control folder's.
func validMountName(name string, set *settings) error {
	if !peerproto.ValidPeerName(name) {
		return set.bad("NAME", name, fmt.Sprintf("use 1-%d letters, digits, '.', '_' or '-'", peerproto.MaxPeerName))
	}
	if name == fusefs.ControlDir {
		return set.bad("NAME", name, "the name is reserved for the mount's control folder")
	}
	return nil
}
