package main

import (
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/secure"
)

// insecureWarning is printed at the start of every process run with
// --insecure, whatever the log level.
const insecureWarning = "peerfs %s: WARNING: --insecure: plaintext, unauthenticated: anyone who can reach this port can read and write the export (and join the cluster). Use it on a trusted network only; set PEERFS_SECRET instead.\n"

// loadSecurity returns the secure.Config of the cluster secret, or nil
// with --insecure (after warning on stderr and in the log). Without either
// it is a configuration error: secure is the default.
func loadSecurity(cmd string, c SecurityConfig, log zerolog.Logger, stderr io.Writer) (*secure.Config, error) {
	if c.Insecure {
		if c.Secret != "" || c.SecretFile != "" {
			return nil, usagef("--insecure and a cluster secret (PEERFS_SECRET or --secret-file) exclude each other")
		}
		fmt.Fprintf(stderr, insecureWarning, cmd)
		log.Warn().Msg("insecure mode: plaintext, unauthenticated: anyone who can reach this port can read and write the export")
		return nil, nil
	}
	var secret []byte
	switch {
	case c.Secret != "" && c.SecretFile != "":
		return nil, usagef("give the cluster secret once: PEERFS_SECRET or --secret-file, not both")
	case c.Secret != "":
		secret = []byte(c.Secret)
	case c.SecretFile != "":
		b, err := secure.ReadSecretFile(c.SecretFile)
		if err != nil {
			return nil, usagef("%v", err)
		}
		secret = b
	default:
		return nil, usagef("no cluster secret: set PEERFS_SECRET or --secret-file PATH (the same on every tracker, peer and mount; e.g. openssl rand -hex 32), or run with --insecure on a trusted network")
	}
	cfg, err := secure.New(secret)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return cfg, nil
}
