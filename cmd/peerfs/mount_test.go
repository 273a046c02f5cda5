package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckAllowOther: --allow-other is root's, or anyone's where
// /etc/fuse.conf has user_allow_other; otherwise the mount stops before
// it starts, saying what to do, in the words the user gave (a flag, or
// the mount helper's allow_other).
func TestCheckAllowOther(t *testing.T) {
	dir := t.TempDir()
	without := filepath.Join(dir, "without.conf")
	with := filepath.Join(dir, "with.conf")
	if err := os.WriteFile(without, []byte("# user_allow_other\nmount_max = 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(with, []byte("# the default\n  user_allow_other  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg mountConfig
	_, set, err := loadConfig("mount", "mount", &cfg, []string{"--allow-other"}, &bytes.Buffer{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AllowOther {
		t.Fatal("--allow-other did not set AllowOther")
	}
	for _, tc := range []struct {
		uid  int
		conf string
		ok   bool
	}{
		{0, without, true},
		{1000, with, true},
		{1000, without, false},
		{1000, filepath.Join(dir, "missing.conf"), false},
	} {
		err := checkAllowOther(tc.uid, tc.conf, set)
		switch {
		case tc.ok && err != nil:
			t.Errorf("uid %d, %s: %v", tc.uid, filepath.Base(tc.conf), err)
		case !tc.ok && err == nil:
			t.Errorf("uid %d, %s: allowed", tc.uid, filepath.Base(tc.conf))
		case !tc.ok && (!strings.Contains(err.Error(), "--allow-other") || !strings.Contains(err.Error(), tc.conf+" has a line user_allow_other")):
			t.Errorf("uid %d, %s: %q does not say which setting and what to do", tc.uid, filepath.Base(tc.conf), err)
		}
	}

	// The mount helper's option names the setting as an option.
	h, err := parseHelperArgs([]string{"tracker:7070", "/mnt", "-o", "export=/srv,allow_other"})
	if err != nil {
		t.Fatal(err)
	}
	if args := h.mountArgs("/mnt"); !strings.Contains(strings.Join(args, " "), "--allow-other") {
		t.Errorf("mount helper -o allow_other: peerfs mount %q", args)
	}
	var hcfg mountConfig
	_, hset, err := loadConfig("mount", "mount", &hcfg, h.mountArgs("/mnt"), &bytes.Buffer{}, h.spelling())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkAllowOther(1000, without, hset); err == nil || !strings.HasPrefix(err.Error(), "allow_other:") {
		t.Errorf("as a mount option: %v, want it named allow_other", err)
	}
}
