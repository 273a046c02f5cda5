package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoggerFormats: durations carry their unit, and timestamps their
// sub-second part, in both formats.
func TestLoggerFormats(t *testing.T) {
	set := &settings{spell: flagSpelling}
	var js bytes.Buffer
	log, err := newLogger(LogConfig{LogLevel: "info", LogFormat: "json"}, set, &js)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	log.Info().Dur("lease", 30*time.Second).Msg("tracker ready")
	var rec struct {
		Time  string `json:"time"`
		Lease string `json:"lease"`
	}
	if err := json.Unmarshal(js.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, js.String())
	}
	if rec.Lease != "30s" {
		t.Errorf("lease = %q, want 30s", rec.Lease)
	}
	stamp, err := time.Parse(time.RFC3339Nano, rec.Time)
	if err != nil || stamp.Before(before.Truncate(time.Microsecond)) || stamp.Sub(before) > time.Second {
		t.Errorf("time %q (%v): want the moment of logging with its fraction, %v", rec.Time, err, before)
	}

	var con bytes.Buffer
	log, err = newLogger(LogConfig{LogLevel: "info", LogFormat: "console"}, set, &con)
	if err != nil {
		t.Fatal(err)
	}
	before = time.Now()
	log.Info().Dur("lease", 1500*time.Millisecond).Msg("tracker ready")
	after := time.Now()
	line := con.String()
	if !strings.Contains(line, "lease=1.5s") {
		t.Errorf("console line %q lacks lease=1.5s", line)
	}
	clock, err := time.ParseInLocation("15:04:05.000", strings.Fields(line)[0], time.Local)
	if err != nil {
		t.Fatalf("console time in %q: %v", line, err)
	}
	y, m, d := before.Date()
	clock = clock.AddDate(y, int(m)-1, d-1)
	if before.Day() == after.Day() && (clock.Before(before.Truncate(time.Millisecond)) || clock.After(after)) {
		t.Errorf("console time %v is not between %v and %v (milliseconds lost?)", clock.Format("15:04:05.000"), before.Format("15:04:05.000"), after.Format("15:04:05.000"))
	}
}

// TestPipeSafeWriter: once its reader is gone, the log is dropped without
// an error; before, writes pass through.
func TestPipeSafeWriter(t *testing.T) {
	if os.Getenv("PEERFS_TEST_SIGPIPE") == "1" {
		// The child: its stderr is a pipe the parent has closed.
		survivePipeClose()
		w := &pipeSafeWriter{w: os.Stderr}
		for range 3 {
			if _, err := w.Write([]byte("a line nobody reads\n")); err != nil {
				os.Exit(3)
			}
		}
		os.Exit(0)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPipeSafeWriter$")
	cmd.Env = append(os.Environ(), "PEERFS_TEST_SIGPIPE=1")
	cmd.Stderr = w
	err = cmd.Run()
	w.Close()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Fatalf("the process died of %v writing to a closed pipe", ws.Signal())
			}
		}
		t.Fatalf("child: %v", err)
	}
}
