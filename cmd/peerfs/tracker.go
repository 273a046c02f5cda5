package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/peerfs/peerfs/metrics"
	"github.com/peerfs/peerfs/tracker"
)

func runTracker(args []string, stderr io.Writer) error {
	var cfg trackerConfig
	rest, set, err := loadConfig("tracker", "tracker [flags]", &cfg, args, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	if cfg.PeerTimeout < 2*tracker.DefaultPingInterval {
		return set.bad("PEER_TIMEOUT", cfg.PeerTimeout.String(), fmt.Sprintf("too short: peers ping every %v, so use at least %v", tracker.DefaultPingInterval, 2*tracker.DefaultPingInterval))
	}
	survivePipeClose()
	log, err := newLogger(cfg.LogConfig, set, stderr)
	if err != nil {
		return err
	}
	sec, err := loadSecurity("tracker", cfg.SecurityConfig, set, log, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := tracker.New(tracker.Options{Lease: cfg.Lease, IdleTimeout: cfg.PeerTimeout, Secure: sec, Logger: log})
	stopMetrics, err := serveMetrics(cfg.MetricsListen, metrics.Options{Component: "tracker", Tracker: t.Stats}, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info().Str("listen", ln.Addr().String()).Dur("lease", cfg.Lease).Bool("tls", sec != nil).Msg("tracker ready")
	errc := make(chan error, 1)
	go func() { errc <- t.Serve(ln) }()
	select {
	case <-ctx.Done():
		log.Info().Msg("stopping tracker")
		t.Close()
		<-errc
		return nil
	case err := <-errc:
		t.Close()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}
