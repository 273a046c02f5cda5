package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestTrackerAddrs: the tracker setting is one address or several
// separated by commas; each must be HOST:PORT, and an empty list is a
// usage error naming the setting.
func TestTrackerAddrs(t *testing.T) {
	set := &settings{spell: flagSpelling}
	for _, tt := range []struct {
		setting string
		want    []string
		bad     string // part of the error; "" for none
	}{
		{"127.0.0.1:7070", []string{"127.0.0.1:7070"}, ""},
		{"127.0.0.1:7070,127.0.0.2:7070", []string{"127.0.0.1:7070", "127.0.0.2:7070"}, ""},
		{" 127.0.0.1:7070 , [::1]:7071,", []string{"127.0.0.1:7070", "[::1]:7071"}, ""},
		{",", nil, "several separated by commas"},
		{"127.0.0.1:7070,127.0.0.1", []string{"127.0.0.1:7070", "127.0.0.1"}, "want HOST:PORT"},
		{"127.0.0.1:7070,127.0.0.1:0", []string{"127.0.0.1:7070", "127.0.0.1:0"}, "port must be a number"},
	} {
		if got := trackerAddrs(tt.setting); !slices.Equal(got, tt.want) {
			t.Errorf("trackerAddrs(%q) = %q, want %q", tt.setting, got, tt.want)
		}
		err := checkTrackerAddrs(context.Background(), tt.setting, set)
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("checkTrackerAddrs(%q): %v", tt.setting, err)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad) || !strings.Contains(err.Error(), "--tracker")):
			t.Errorf("checkTrackerAddrs(%q) = %v, want an error about --tracker saying %q", tt.setting, err, tt.bad)
		}
	}
	if got := firstTracker(""); got != "" {
		t.Errorf("firstTracker(\"\") = %q", got)
	}
}

// TestTrackerEtcdSettings: --etcd wants URLs and --etcd-ttl whole
// seconds of at least 2; both are usage errors naming the flag.
func TestTrackerEtcdSettings(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--insecure", "--listen", "127.0.0.1:0", "--etcd", " , "}, "--etcd"},
		{[]string{"--insecure", "--listen", "127.0.0.1:0", "--etcd", "http://127.0.0.1:1", "--etcd-ttl", "1s"}, "--etcd-ttl"},
	} {
		err := runTracker(tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("tracker %q: %v, want an error naming %s", tt.args, err, tt.want)
		}
	}
}
