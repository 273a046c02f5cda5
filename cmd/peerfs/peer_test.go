package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/peerfs/peerfs/peer"
	"github.com/rs/zerolog"
)

// TestServeFlagsReachTheServer: --owners and --allow-devices, on peer and
// on mount, are what the export server then says it allows; without them
// it allows neither.
func TestServeFlagsReachTheServer(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		cfg  interface{ serve() ServeConfig }
		args []string
		want bool
	}{
		{"peer", &peerConfig{}, nil, false},
		{"peer", &peerConfig{}, []string{"--owners", "--allow-devices"}, true},
		{"mount", &mountConfig{}, []string{"--owners", "--allow-devices"}, true},
		{"mount", &mountConfig{}, []string{"--owners=false"}, false},
	} {
		unsetenv(t, "PEERFS_OWNERS")
		unsetenv(t, "PEERFS_ALLOW_DEVICES")
		if _, _, err := loadConfig(tc.cmd, tc.cmd, tc.cfg, tc.args, &bytes.Buffer{}, nil); err != nil {
			t.Fatalf("%s %q: %v", tc.cmd, tc.args, err)
		}
		sp, err := startServer(tc.cfg.serve().options(t.TempDir(), nil), "127.0.0.1:0", zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		c, err := peer.Dial(context.Background(), sp.ln.Addr().String(), peer.ClientOptions{Posix: true})
		if err != nil {
			sp.close()
			t.Fatal(err)
		}
		if !c.Posix() || c.Owners() != tc.want || c.Devices() != tc.want {
			t.Errorf("%s %q: posix %v owners %v devices %v, want owners and devices %v", tc.cmd, tc.args, c.Posix(), c.Owners(), c.Devices(), tc.want)
		}
		c.Close()
		sp.close()
	}
}

func (c *peerConfig) serve() ServeConfig  { return c.ServeConfig }
func (c *mountConfig) serve() ServeConfig { return c.ServeConfig }
