package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/peerfs/peerfs/cache"
	"github.com/peerfs/peerfs/fusefs"
	"github.com/peerfs/peerfs/peer"
	"github.com/peerfs/peerfs/remote"
	"github.com/peerfs/peerfs/secure"
	"github.com/peerfs/peerfs/tracker"
	"github.com/rs/zerolog"
)

func runMount(args []string, stderr io.Writer) error { return mountWith(args, stderr, nil) }

// mountWith is peerfs mount, naming settings in messages with spell (nil:
// as flags; the mount helper's daemon: as mount options).
func mountWith(args []string, stderr io.Writer, spell speller) error {
	cfg, mountpoint, set, err := loadMountConfig(args, stderr, spell)
	if err != nil {
		return err
	}
	survivePipeClose()
	log, err := newLogger(cfg.LogConfig, set, stderr)
	if err != nil {
		return err
	}
	log = log.With().Str("self", cfg.Name).Logger()
	sec, err := loadSecurity("mount", cfg.SecurityConfig, set, log, stderr)
	if err != nil {
		return err
	}
	if err := prepareMountpoint(mountpoint); err != nil {
		return err
	}
	if cfg.AllowOther {
		if err := checkAllowOther(os.Getuid(), fuseConf, set); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// peerfs leave ends the daemon as a signal does (ops.setLeave below).
	ctx, leaving := context.WithCancel(ctx)
	defer leaving()

	sp, err := startServer(cfg.options(cfg.Export, sec), cfg.Listen, log)
	if err != nil {
		return err
	}
	defer sp.close()
	ops := newMountOps(cfg, log)
	store, closeStore, err := openStore(cfg, sec, ops.observer(), log)
	if err != nil {
		return err
	}
	defer closeStore()
	defer ops.close() // the control socket goes before the store it reports on

	tc := tracker.NewClient(tracker.ClientOptions{
		Addrs: trackerAddrs(cfg.Tracker), Name: cfg.Name, Port: sp.port, Secure: sec, Logger: log,
		// The store follows the peer list and does this mount's part of
		// the SYNC rounds (remote/round.go).
		Handler: store,
	})
	store.SetSyncer(tc)
	ops.setLeave(leaveAndStop(tc.Leave, leaving))
	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan struct{})
	go func() { defer close(tdone); tc.Run(tctx) }()
	defer func() { tcancel(); <-tdone }()
	// Mounting an empty directory for a peer the tracker will never admit
	// helps nobody: a final refusal ends the command here.
	if err := awaitRegistration(ctx, tc, cfg.Tracker, registerWait, set, cfg.SecurityConfig, log); err != nil {
		return err
	}

	if err := ops.start(store, remote.ReportInfo{Version: versionString(), Mountpoint: mountpoint, Tracker: cfg.Tracker, PID: os.Getpid()}); err != nil {
		return err
	}
	return serveMount(ctx, cfg, mountpoint, store, ops, log)
}

// loadMountConfig reads peerfs mount's settings and its MOUNTPOINT, and
// checks them.
func loadMountConfig(args []string, stderr io.Writer, spell speller) (cfg mountConfig, mountpoint string, set *settings, err error) {
	rest, set, err := loadConfig("mount", "mount --export DIR --tracker HOST:PORT [--listen HOST:PORT] [--name NAME] [flags] MOUNTPOINT", &cfg, args, stderr, spell)
	if err != nil {
		return cfg, "", nil, err
	}
	if len(rest) != 1 {
		return cfg, "", nil, usagef("want exactly one MOUNTPOINT, got %d arguments", len(rest))
	}
	if mountpoint, err = mountPath(rest[0]); err != nil {
		return cfg, "", nil, err
	}
	if cfg.Tracker == "" {
		return cfg, "", nil, usagef("%s is required", withPlaceholder(set.of("TRACKER"), "HOST:PORT"))
	}
	if err := checkTrackerAddrs(context.Background(), cfg.Tracker, set); err != nil {
		return cfg, "", nil, err
	}
	if cfg.Name == "" {
		cfg.Name = defaultName()
	}
	if err := validMountName(cfg.Name, set); err != nil {
		return cfg, "", nil, err
	}
	if cfg.CacheDir == "" {
		if cfg.CacheDir, err = defaultCacheDir(cfg.Name, set); err != nil {
			return cfg, "", nil, err
		}
	}
	return cfg, mountpoint, set, nil
}

// openStore opens the mount's cache and its Store over it; closeStore
// closes both.
func openStore(cfg mountConfig, sec *secure.Config, obs remote.Observer, log zerolog.Logger) (store *remote.Store, closeStore func(), err error) {
	c, err := cache.Open(cache.Options{Dir: cfg.CacheDir, MaxBytes: cfg.CacheSizeMB << 20, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("cache: %w", err)
	}
	store, err = remote.New(remote.Options{
		Self:    cfg.Name,
		Cluster: clusterID(sec, cfg.Tracker),
		Client:  peer.ClientOptions{DialTimeout: cfg.Timeout, IOTimeout: cfg.Timeout, Secure: sec},
		Cache:   c,
		AttrTTL: cfg.AttrTimeout,
		Logger:  log,

		WatchTTL: watchTTL(cfg.WatchTimeout),

		SyncNamespace: cfg.SyncNamespace,

		ForgetAfter: cfg.ForgetAfter,
		// The folders of peers that are down show after a restart too
		// (of this cluster's: the file is tagged with Cluster).
		PeersFile: filepath.Join(cfg.CacheDir, "peers.json"),

		Observer: obs,
	})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return store, func() { store.Close(); c.Close() }, nil
}

// serveMount mounts the store on mountpoint and serves it until ctx is
// done or it is unmounted from outside; then it uploads what it can
// (drain) and unmounts.
func serveMount(ctx context.Context, cfg mountConfig, mountpoint string, store *remote.Store, ops *mountOps, log zerolog.Logger) error {
	m, err := fusefs.Mount(mountpoint, store, fusefs.Options{
		AttrTimeout: cfg.AttrTimeout, EntryTimeout: cfg.AttrTimeout, Logger: log,
		// The source in /proc/mounts is the tracker address as given: the
		// first field of an fstab line, so that mount -a finds the entry
		// mounted (it compares sources) instead of mounting it again.
		FSName: cfg.Tracker, Observe: ops.fuseObserve(), AllowOther: cfg.AllowOther,
	})
	if err != nil {
		return err
	}
	log.Info().Str("mountpoint", mountpoint).Str("tracker", cfg.Tracker).Str("cache", cfg.CacheDir).Msg("mounted; peers appear as folders")

	select {
	case <-ctx.Done():
		log.Info().Msg("stopping: uploading pending files, then unmounting (other mounts keep this peer's folder unless it left: peerfs leave)")
	case <-m.Done():
		log.Info().Msg("unmounted from outside; stopping")
	}
	if err := drain(store, cfg.DrainTimeout); err != nil {
		files, bytes := store.PendingInfo()
		log.Warn().Err(err).Int("files", files).Int64("bytes", bytes).Msg("some files are not uploaded yet; they stay in the cache and go out on the next start")
	}
	if err := m.Close(); err != nil {
		log.Warn().Err(err).Msg("unmount")
	}
	return m.Err()
}

// fuseConf is FUSE's configuration file, where user_allow_other lets a
// user other than root mount with allow_other.
const fuseConf = "/etc/fuse.conf"

// checkAllowOther refuses --allow-other for a user (uid) whom fusermount3
// would refuse it, with a message that says what to do, before anything
// is mounted or started: root may always; anyone else only if conf
// (/etc/fuse.conf) has a line user_allow_other.
func checkAllowOther(uid int, conf string, set *settings) error {
	if uid == 0 {
		return nil
	}
	data, err := os.ReadFile(conf)
	if err == nil {
		for line := range strings.Lines(string(data)) {
			if strings.TrimSpace(line) == "user_allow_other" {
				return nil
			}
		}
	}
	return fmt.Errorf("%s: only root may let other users into a FUSE mount unless %s has a line user_allow_other "+
		"(as root: echo user_allow_other >> %s); or mount without it", set.of("ALLOW_OTHER"), conf, conf)
}

// clusterID names the cluster a mount binds its pending data to: derived
// from the secret; for an insecure cluster, which has none, from the
// tracker's address as given.
func clusterID(sec *secure.Config, tracker string) string {
	if sec != nil {
		return sec.ClusterID()
	}
	sum := sha256.Sum256([]byte("peerfs insecure cluster\x00" + tracker))
	return "insecure-" + hex.EncodeToString(sum[:8])
}

func runUnmount(args []string, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(stderr, "Usage: peerfs unmount MOUNTPOINT\n\nUnmounts a peerfs mount, lazily if it is busy or its daemon died.\nRefuses anything that is not a peerfs mount.")
		return nil
	}
	if len(args) != 1 {
		return usagef("want exactly one MOUNTPOINT")
	}
	return unmount(args[0])
}

// drain uploads pending files (and FSYNCs their peers) until everything is
// stored or timeout passes, retrying: a peer that just came back may still
// be marked down for a moment.
func drain(store *remote.Store, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := store.FlushAll(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// watchTTL is remote.Options.WatchTTL for --watch-timeout d: 0 turns
// watching off.
func watchTTL(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
