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
	"time"

	"github.com/peerfs/peerfs/metrics"
	"github.com/peerfs/peerfs/tracker"
	"github.com/peerfs/peerfs/tracker/etcdstate"
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
	opts := tracker.Options{Lease: cfg.Lease, IdleTimeout: cfg.PeerTimeout, Secure: sec, Logger: log}
	if cfg.Etcd != "" {
		endpoints := splitList(cfg.Etcd)
		if len(endpoints) == 0 {
			return set.bad("ETCD", cfg.Etcd, "want etcd client URLs such as http://127.0.0.1:2379, separated by commas")
		}
		if cfg.EtcdTTL < 2*time.Second {
			return set.bad("ETCD_TTL", cfg.EtcdTTL.String(), "at least 2s (etcd counts leases in seconds)")
		}
		store, err := etcdstate.New(etcdstate.Options{Endpoints: endpoints, Prefix: cfg.EtcdPrefix, TTL: cfg.EtcdTTL})
		if err != nil {
			return err
		}
		defer store.Close()
		opts.Shared = store
		log.Info().Strs("etcd", endpoints).Str("prefix", cfg.EtcdPrefix).Dur("ttl", cfg.EtcdTTL).Msg("a tracker replica: peers and SYNC rounds live in etcd")
	}
	t := tracker.New(opts)
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
