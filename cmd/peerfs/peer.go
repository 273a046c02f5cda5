package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/metrics"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/shell"
	"github.com/peerfs/peerfs/tracker"
)

// defaultName derives a peer name from the host name.
func defaultName() string {
	h, err := os.Hostname()
	if err != nil {
		return "peer"
	}
	h, _, _ = strings.Cut(h, ".")
	b := []byte(h)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > peerproto.MaxPeerName {
		b = b[:peerproto.MaxPeerName]
	}
	if !peerproto.ValidPeerName(string(b)) {
		return "peer"
	}
	return string(b)
}

// servingPeer is the peer server part shared by `peer` and `mount`.
type servingPeer struct {
	srv  *export.Server
	ln   net.Listener
	port int
	errc chan error
}

// startServer serves opts.Export on listen; opts carries the export's
// settings, its Logger is set here.
func startServer(opts export.Options, listen string, log zerolog.Logger) (*servingPeer, error) {
	dir := opts.Export
	if dir == "" {
		return nil, usagef("--export DIR is required")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("export %s: not a directory", dir)
	}
	opts.Logger = log
	srv, err := export.NewServer(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		srv.Close()
		return nil, err
	}
	sp := &servingPeer{srv: srv, ln: ln, port: ln.Addr().(*net.TCPAddr).Port, errc: make(chan error, 1)}
	go func() { sp.errc <- srv.Serve(ln) }()
	log.Info().Str("export", dir).Str("listen", ln.Addr().String()).Bool("read_only", opts.ReadOnly).
		Bool("allow_setuid", opts.AllowSetuid).Bool("owners", opts.Owners).Bool("allow_devices", opts.AllowDevices).
		Bool("tls", opts.Secure != nil).Msg("serving export")
	return sp, nil
}

func (sp *servingPeer) close() {
	sp.srv.Close()
	<-sp.errc
}

// peerHandler is the tracker handler of a peer without a mount: its turns
// in SYNC rounds have nothing to do, and it tells the others it wrote
// nothing, since a peer without a mount never stores anything on others.
type peerHandler struct{ tracker.NopHandler }

// TakeWrote reports false: see peerHandler.
func (peerHandler) TakeWrote() bool { return false }

func runPeer(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cfg peerConfig
	rest, set, err := loadConfig("peer", "peer --export DIR [--listen HOST:PORT] [--tracker HOST:PORT] [--name NAME] [flags]", &cfg, args, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	if cfg.Name == "" {
		cfg.Name = defaultName()
	}
	if !peerproto.ValidPeerName(cfg.Name) {
		return set.bad("NAME", cfg.Name, fmt.Sprintf("use 1-%d letters, digits, '.', '_' or '-'", peerproto.MaxPeerName))
	}
	if cfg.Tracker != "" {
		if err := checkTrackerAddrs(context.Background(), cfg.Tracker, set); err != nil {
			return err
		}
	}
	tty := false
	if f, ok := stdin.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	var interactive bool
	switch cfg.Shell {
	case "auto":
		interactive = tty
	case "on":
		interactive = true
	case "off":
	default:
		return set.bad("SHELL", cfg.Shell, "want auto, on or off")
	}
	survivePipeClose()
	log, err := newLogger(cfg.LogConfig, set, stderr)
	if err != nil {
		return err
	}
	if interactive && cfg.LogLevel == "info" {
		// Keep the shell readable: only problems are logged.
		log = log.Level(zerolog.WarnLevel)
	}
	log = log.With().Str("self", cfg.Name).Logger()
	sec, err := loadSecurity("peer", cfg.SecurityConfig, set, log, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopMetrics, err := serveMetrics(cfg.MetricsListen, metrics.Options{Component: "peer"}, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	sp, err := startServer(cfg.options(cfg.Export, sec), cfg.Listen, log)
	if err != nil {
		return err
	}
	defer sp.close()
	copts := peer.ClientOptions{DialTimeout: cfg.Timeout, IOTimeout: cfg.Timeout, Secure: sec}

	if interactive {
		fmt.Fprintf(stdout, "peerfs %s: peer %q serving %s on port %d. Type help for commands.\n", versionString(), cfg.Name, cfg.Export, sp.port)
		err := shell.Run(ctx, shell.Options{
			In: stdin, Out: stdout, Err: stderr, TTY: tty,
			Name: cfg.Name, Port: sp.port, Client: copts, Logger: log, Tracker: firstTracker(cfg.Tracker),
		})
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}

	if cfg.Tracker != "" {
		tc := tracker.NewClient(tracker.ClientOptions{
			Addrs: trackerAddrs(cfg.Tracker), Name: cfg.Name, Port: sp.port, Secure: sec, Logger: log,
			Handler: peerHandler{},
		})
		done := make(chan struct{})
		go func() { defer close(done); tc.Run(ctx) }()
		defer func() { stop(); <-done }()
		if err := awaitRegistration(ctx, tc, cfg.Tracker, registerWait, set, cfg.SecurityConfig, log); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		log.Info().Msg("stopping peer")
		return nil
	case err := <-sp.errc:
		sp.errc <- err
		return err
	}
}
