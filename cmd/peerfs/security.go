package main

import (
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/secure"
)

// insecureRisk is what --insecure exposes, by command: a tracker has no
// export, only the cluster's membership and peer list.
var insecureRisk = map[string]string{
	"tracker": "anyone who can reach this port can join the cluster, read its peer list and run SYNC rounds",
	"peer":    "anyone who can reach this port can read and write the export (and join the cluster)",
	"mount":   "anyone who can reach this port can read and write the export (and join the cluster)",
}

// insecureWarning is printed at the start of every process run with
// --insecure, whatever the log level.
const insecureWarning = "peerfs %s: WARNING: %s: plaintext, unauthenticated: %s. Use it on a trusted network only; set PEERFS_SECRET instead.\n"

// loadSecurity returns the secure.Config of the cluster secret, or nil
// with --insecure (after warning on stderr and in the log). Without either
// it is a configuration error: secure is the default.
func loadSecurity(cmd string, c SecurityConfig, set *settings, log zerolog.Logger, stderr io.Writer) (*secure.Config, error) {
	secret, file, insecure := set.of("SECRET"), set.of("SECRET_FILE"), set.of("INSECURE")
	if c.Insecure {
		if c.Secret != "" || c.SecretFile != "" {
			given := secret
			if c.SecretFile != "" {
				given = file
			}
			return nil, usagef("%s and a cluster secret (%s) exclude each other", insecure, given)
		}
		fmt.Fprintf(stderr, insecureWarning, cmd, insecure, insecureRisk[cmd])
		log.Warn().Msg("insecure mode: plaintext, unauthenticated: " + insecureRisk[cmd])
		return nil, nil
	}
	if c.Secret != "" && c.SecretFile != "" && file.kind != fromEnv {
		// A secret file on the command line (or in mount options)
		// overrides the environment's secret, as flags override
		// variables: a root shell with PEERFS_SECRET exported may
		// mount an fstab line that names its secret_file=.
		c.Secret = ""
	}
	var key []byte
	switch {
	case c.Secret != "" && c.SecretFile != "":
		return nil, usagef("give the cluster secret once: %s or %s, not both", secret, file)
	case c.Secret != "":
		key = []byte(c.Secret)
	case c.SecretFile != "":
		b, err := secure.ReadSecretFile(c.SecretFile)
		if err != nil {
			return nil, usagef("%s: %v", file.with(c.SecretFile), err)
		}
		key = b
	default:
		return nil, usagef("no cluster secret: set %s or %s (the same on every tracker, peer and mount; e.g. openssl rand -hex 32), or run with %s on a trusted network",
			secret, withPlaceholder(file, "PATH"), insecure)
	}
	cfg, err := secure.New(key)
	if err != nil {
		if c.SecretFile != "" {
			return nil, usagef("%s: %v", file.with(c.SecretFile), err)
		}
		return nil, usagef("%s: %v", secret, err)
	}
	return cfg, nil
}

// withPlaceholder shows how to give setting o a value: --secret-file PATH,
// secret_file=PATH, PEERFS_SECRET_FILE=PATH.
func withPlaceholder(o origin, placeholder string) string {
	switch o.kind {
	case fromFlag, fromSource:
		return o.name + " " + placeholder
	default:
		return o.name + "=" + placeholder
	}
}
