package main

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// configs are a fresh value of every command's config struct.
func configs() map[string]func() any {
	return map[string]func() any{
		"tracker": func() any { return &trackerConfig{} },
		"peer":    func() any { return &peerConfig{} },
		"mount":   func() any { return &mountConfig{} },
		"status":  func() any { return &statusConfig{} },
		"forget":  func() any { return &forgetConfig{} },
		"leave":   func() any { return &leaveConfig{} },
	}
}

// settingKeys returns the keys (LOG_LEVEL...) of cfg's settings and a
// value of each that differs from any default.
func settingKeys(cfg any) map[string]string {
	keys := map[string]string{}
	forEachField(reflect.ValueOf(cfg).Elem(), func(f reflect.StructField, v reflect.Value) {
		poison := "/poison"
		switch {
		case f.Type == reflect.TypeFor[time.Duration]():
			poison = "7m"
		case f.Type.Kind() == reflect.Bool:
			poison = "true"
		case f.Type.Kind() == reflect.Int || f.Type.Kind() == reflect.Int64:
			poison = "7"
		}
		keys[settingKey(f.Tag.Get("envconfig"))] = poison
	})
	return keys
}

// unsetenv unsets name for the rest of the test.
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "")
	os.Unsetenv(name)
}

// TestConfigReadsOnlyPrefixedVariables: the bare names of the settings
// (SHELL, SECRET, INSECURE, NAME, TRACKER...) configure nothing; the
// PEERFS_* ones do.
func TestConfigReadsOnlyPrefixedVariables(t *testing.T) {
	all := map[string]string{}
	for _, mk := range configs() {
		for k, v := range settingKeys(mk()) {
			all[k] = v
		}
	}
	if len(all) < 21 {
		t.Fatalf("only %d settings found: %v", len(all), all)
	}
	for k := range all {
		unsetenv(t, k)
		unsetenv(t, envPrefix+"_"+k)
	}
	load := func(mk func() any) any {
		t.Helper()
		cfg := mk()
		if _, _, err := loadConfig("test", "test", cfg, nil, &bytes.Buffer{}, nil); err != nil {
			t.Fatalf("loadConfig: %v", err)
		}
		return cfg
	}
	clean := map[string]any{}
	for cmd, mk := range configs() {
		clean[cmd] = load(mk)
	}
	for k, v := range all {
		t.Setenv(k, v)
	}
	for cmd, mk := range configs() {
		if got := load(mk); !reflect.DeepEqual(got, clean[cmd]) {
			t.Errorf("%s: bare variables changed the config:\n got %+v\nwant %+v", cmd, got, clean[cmd])
		}
	}
	// Each PEERFS_* variable does reach its setting.
	for cmd, mk := range configs() {
		for k, v := range settingKeys(mk()) {
			t.Run(cmd+"/"+k, func(t *testing.T) {
				t.Setenv(envPrefix+"_"+k, v)
				if got := load(mk); reflect.DeepEqual(got, clean[cmd]) {
					t.Errorf("%s_%s=%s changed nothing", envPrefix, k, v)
				}
			})
		}
	}
}

// TestConfigErrorsNameTheSource: a bad value is reported as the user gave
// it (a variable or a flag), saying what is wanted, without the config
// library's or the parsers' internals.
func TestConfigErrorsNameTheSource(t *testing.T) {
	for _, k := range []string{"TIMEOUT", "INSECURE", "SHELL", "MAX_CONNS", "LOG_LEVEL", "SECRET", "SECRET_FILE"} {
		unsetenv(t, envPrefix+"_"+k)
	}
	export := t.TempDir()
	for _, tc := range []struct {
		env  string // NAME=value, or ""
		args []string
		want string
	}{
		{"PEERFS_TIMEOUT=bogus", nil, `PEERFS_TIMEOUT="bogus": want a duration with a unit, such as 500ms, 30s or 5m`},
		{"", []string{"--timeout", "bogus"}, `--timeout "bogus": want a duration`},
		{"", []string{"--timeout=5"}, `--timeout "5": want a duration`},
		{"PEERFS_INSECURE=maybe", nil, `PEERFS_INSECURE="maybe": want true or false`},
		{"", []string{"--insecure=maybe"}, `--insecure "maybe": want true or false`},
		{"PEERFS_MAX_CONNS=lots", nil, `PEERFS_MAX_CONNS="lots": want a whole number`},
		{"PEERFS_SHELL=/bin/bash", nil, `PEERFS_SHELL="/bin/bash": want auto, on or off`},
		{"", []string{"--shell", "sometimes"}, `--shell "sometimes": want auto, on or off`},
		{"PEERFS_LOG_LEVEL=loud", nil, `PEERFS_LOG_LEVEL="loud": want debug, info, warn or error`},
		{"", []string{"--no-such-flag"}, "unknown flag --no-such-flag"},
		{"", []string{"--timeout"}, "--timeout needs a value"},
		{"PEERFS_SECRET=short", []string{"--shell", "off"}, "PEERFS_SECRET: "},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if name, val, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(name, val)
			}
			var stdout, stderr bytes.Buffer
			args := append([]string{"peer", "--export", export, "--listen", "127.0.0.1:0"}, tc.args...)
			code := run(args, strings.NewReader(""), &stdout, &stderr)
			msg := stderr.String()
			if code != exitUsage || !strings.Contains(msg, tc.want) {
				t.Errorf("peerfs %v with %s: exit %d, %q; want exit %d and %q", args, tc.env, code, msg, exitUsage, tc.want)
			}
			for _, internal := range []string{"envconfig", "strconv", "Parse", "assigning", "time: ", " -timeout", "flag provided"} {
				if strings.Contains(msg, internal) {
					t.Errorf("message shows internals (%q): %q", internal, msg)
				}
			}
		})
	}
}

// TestSecretFileOverridesEnvironment: --secret-file (or secret_file=)
// wins over PEERFS_SECRET, as flags win over variables; both from the
// environment is a conflict.
func TestSecretFileOverridesEnvironment(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/secret"
	if err := os.WriteFile(file, []byte("the-file-secret-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"SECRET", "SECRET_FILE", "INSECURE"} {
		unsetenv(t, envPrefix+"_"+k)
	}
	t.Setenv("PEERFS_SECRET", "the-environment-secret-0123")
	var stderr bytes.Buffer
	load := func(args ...string) error {
		var cfg peerConfig
		_, set, err := loadConfig("peer", "peer", &cfg, args, &stderr, nil)
		if err != nil {
			return err
		}
		_, err = loadSecurity("peer", cfg.SecurityConfig, set, zerolog.Nop(), &stderr)
		return err
	}
	if err := load("--secret-file", file); err != nil {
		t.Errorf("--secret-file with PEERFS_SECRET set: %v", err)
	}
	t.Setenv("PEERFS_SECRET_FILE", file)
	if err := load(); err == nil || !strings.Contains(err.Error(), "give the cluster secret once: PEERFS_SECRET or PEERFS_SECRET_FILE") {
		t.Errorf("PEERFS_SECRET and PEERFS_SECRET_FILE: %v", err)
	}
}
