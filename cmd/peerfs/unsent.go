package main

// `peerfs unsent`: the copies a mount set aside because their peer
// refused them for good, or because they were written for a peer of the
// same name that is not the one answering now (remote.Store.Unsent).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peerfs/peerfs/remote"
)

const unsentUsage = `unsent [--name NAME | --control PATH] [list | retry NAME... | retry --all | drop NAME...]

  list          the copies set aside, their size and why (the default)
  retry NAME    try to store NAME again where it was to go, now (after
                removing the cause: recreating its folder, ...); a copy
                written for another peer of that name is stored there only
                as a new file (else beside it, as a conflict copy)
  retry --all   the same for every copy
  drop NAME     delete the copy

NAME is as listed: <peer>/<path>. The copies can also be read (and
removed with rm) under MOUNTPOINT/.peerfs/unsent/.`

func runUnsent(args []string, stdout, stderr io.Writer) error {
	var cfg statusConfig
	rest, _, err := loadConfig("unsent", unsentUsage, &cfg, args, stderr, nil)
	if err != nil {
		return err
	}
	path, err := findControl(cfg.Control, cfg.Name, cfg.CacheDir)
	if err != nil {
		return err
	}
	verb := "list"
	if len(rest) > 0 {
		verb, rest = rest[0], rest[1:]
	}
	list := func() ([]remote.Unsent, error) {
		body, err := askDaemon(path, "/status", cfg.Timeout)
		if err != nil {
			return nil, err
		}
		var r remote.Report
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("bad answer from %s: %w", path, err)
		}
		return r.Unsent, nil
	}
	switch verb {
	case "list":
		if len(rest) > 0 {
			return usagef("unsent list takes no arguments")
		}
		us, err := list()
		if err != nil {
			return err
		}
		if cfg.JSON {
			return json.NewEncoder(stdout).Encode(us)
		}
		if len(us) == 0 {
			fmt.Fprintln(stdout, "no unsent copies")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSIZE\tWRITTEN\tWHY NOT STORED")
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", u.As, u.Size, u.Since.Local().Format(time.DateTime), u.Reason)
		}
		return tw.Flush()
	case "retry", "drop":
		names := rest
		if verb == "retry" && len(rest) == 1 && rest[0] == "--all" {
			us, err := list()
			if err != nil {
				return err
			}
			names = nil
			for _, u := range us {
				names = append(names, u.As)
			}
		}
		if len(names) == 0 && (verb == "drop" || len(rest) == 0) {
			return usagef("unsent %s: name the copies (as `peerfs unsent` lists them)", verb)
		}
		failed := 0
		for _, n := range names {
			msg, err := postDaemon(path, "/unsent/"+verb, url.Values{"as": {n}}, cfg.Timeout+time.Minute)
			if err != nil {
				failed++
				fmt.Fprintf(stderr, "peerfs unsent %s %s: %v\n", verb, n, err)
				continue
			}
			fmt.Fprintf(stdout, "%s: %s\n", n, strings.TrimSpace(msg))
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d failed", failed, len(names))
		}
		return nil
	}
	return usagef("unsent: unknown action %q (want list, retry or drop)", verb)
}

// registerUnsent adds the unsent actions to the control socket:
//
//	POST /unsent/retry  as=NAME: store the copy again; 200, or 409 with the error
//	POST /unsent/drop   as=NAME: delete the copy
func registerUnsent(mux *http.ServeMux, s *remote.Store) {
	mux.HandleFunc("POST /unsent/retry", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), time.Minute)
		defer cancel()
		if err := s.RetryUnsent(ctx, req.FormValue("as")); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		_, _ = io.WriteString(w, "stored\n")
	})
	mux.HandleFunc("POST /unsent/drop", func(w http.ResponseWriter, req *http.Request) {
		if err := s.DropUnsent(req.FormValue("as")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, "dropped\n")
	})
}

// postDaemon POSTs form to what on the daemon's control socket at path
// and returns the answer's body.
func postDaemon(path, what string, form url.Values, timeout time.Duration) (string, error) {
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
	resp, err := client.PostForm("http://peerfs"+what, form)
	if err != nil {
		return "", fmt.Errorf("asking the mount daemon at %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	return string(body), nil
}
