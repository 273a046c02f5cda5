package main

// Which peers a mount shows, by hand: `peerfs forget NAME` removes the
// folder of a peer that is down, `peerfs leave` makes this mount leave the
// cluster on purpose (the other mounts drop its folder) and stop. See
// remote/presence.go for the rules.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/peerfs/peerfs/remote"
)

// forgetConfig configures `peerfs forget`.
type forgetConfig struct {
	Control  string        `envconfig:"PEERFS_CONTROL" desc:"control socket of the mount daemon (default: <cache-dir>/control.sock)"`
	Name     string        `envconfig:"PEERFS_NAME" desc:"the mount's peer name, to find its cache directory (default: the host name)"`
	CacheDir string        `envconfig:"PEERFS_CACHE_DIR" desc:"the mount's cache directory (default: as peerfs mount chooses it for NAME)"`
	Force    bool          `envconfig:"PEERFS_FORCE" default:"false" desc:"forget the peer even if files written here wait for upload to it (they stay in the cache)"`
	Timeout  time.Duration `envconfig:"PEERFS_TIMEOUT" default:"5s" desc:"how long to wait for the daemon's answer"`
}

// leaveConfig configures `peerfs leave`.
type leaveConfig struct {
	Control  string        `envconfig:"PEERFS_CONTROL" desc:"control socket of the mount daemon (default: <cache-dir>/control.sock)"`
	Name     string        `envconfig:"PEERFS_NAME" desc:"the mount's peer name, to find its cache directory (default: the host name)"`
	CacheDir string        `envconfig:"PEERFS_CACHE_DIR" desc:"the mount's cache directory (default: as peerfs mount chooses it for NAME)"`
	Timeout  time.Duration `envconfig:"PEERFS_TIMEOUT" default:"10s" desc:"how long to wait for the tracker to take the leave"`
}

func runForget(args []string, stdout, stderr io.Writer) error {
	var cfg forgetConfig
	rest, _, err := loadConfig("forget", "forget [--force] [--control PATH | --name NAME | --cache-dir DIR] PEER", &cfg, args, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("want exactly one PEER, the name of the folder to remove")
	}
	path, err := findControl(cfg.Control, cfg.Name, cfg.CacheDir)
	if err != nil {
		return err
	}
	q := url.Values{"peer": {rest[0]}}
	if cfg.Force {
		q.Set("force", "1")
	}
	body, err := callDaemon(http.MethodPost, path, "/forget?"+q.Encode(), cfg.Timeout)
	if err != nil {
		return err
	}
	_, err = stdout.Write(body)
	return err
}

func runLeave(args []string, stdout, stderr io.Writer) error {
	var cfg leaveConfig
	rest, _, err := loadConfig("leave", "leave [--control PATH | --name NAME | --cache-dir DIR]", &cfg, args, stderr, nil)
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
	body, err := callDaemon(http.MethodPost, path, "/leave", cfg.Timeout)
	if err != nil {
		return err
	}
	_, err = stdout.Write(body)
	return err
}

// handlePresence serves POST /forget and POST /leave on the control
// socket.
func (o *mountOps) handlePresence(mux *http.ServeMux, s *remote.Store) {
	mux.HandleFunc("POST /forget", func(w http.ResponseWriter, req *http.Request) {
		name := req.URL.Query().Get("peer")
		if err := s.Forget(name, req.URL.Query().Get("force") != ""); err != nil {
			code := http.StatusConflict
			if errors.Is(err, remote.ErrUnknownPeer) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		_, _ = fmt.Fprintf(w, "forgot %s: its folder is gone (it reappears if the tracker lists it again)\n", name)
	})
	mux.HandleFunc("POST /leave", func(w http.ResponseWriter, req *http.Request) {
		o.mu.Lock()
		leave := o.leave
		o.mu.Unlock()
		if leave == nil {
			http.Error(w, "not ready to leave yet", http.StatusServiceUnavailable)
			return
		}
		if err := leave(req.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "left the cluster: the other mounts drop this peer's folder; uploading pending files and unmounting\n")
	})
}

// leaveAndStop returns the mount's leave: QUIT to the tracker (through
// leave), then stop, as on SIGTERM.
func leaveAndStop(leave func(context.Context) error, stop context.CancelFunc) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := leave(ctx); err != nil {
			return fmt.Errorf("could not leave (the tracker must take the QUIT; nothing changed): %w", err)
		}
		stop()
		return nil
	}
}
