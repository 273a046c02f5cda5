package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// tuneGC sets the daemon's GOGC unless the environment chose one.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	t.Setenv("GOGC", "150")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, tuneGC changed the GC percent to %d", got)
	}

	t.Setenv("GOGC", "") // restored after the test; unset for this part
	os.Unsetenv("GOGC")
	tuneGC()
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GC percent after tuneGC = %d, want %d", got, defaultGCPercent)
	}
}
