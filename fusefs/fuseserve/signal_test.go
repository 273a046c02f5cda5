package fuseserve

import (
	"os"
	"strings"
	"testing"
)

func TestSigkillPending(t *testing.T) {
	status := func(sigpnd, shdpnd string) string {
		return "Name:\tcat\nState:\tS (sleeping)\nSigQ:\t1/63474\nSigPnd:\t" + sigpnd + "\nShdPnd:\t" + shdpnd +
			"\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n"
	}
	for _, tc := range []struct {
		name, text string
		want       bool
	}{
		{"nothing pending", status("0000000000000000", "0000000000000000"), false},
		{"SIGURG pending (a Go program's preemption)", status("0000000000800000", "0000000000000000"), false},
		{"SIGINT pending in the process only", status("0000000000000000", "0000000000000002"), false},
		{"SIGKILL pending on the thread (a fatal signal)", status("0000000000000100", "0000000000000002"), true},
		{"SIGKILL pending in the process", status("0000000000000000", "0000000000000100"), true},
		{"garbage", "SigPnd:\tzz\n", false},
		{"empty", "", false},
	} {
		if got := sigkillPending(strings.NewReader(tc.text)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if fatalSignalPending(uint32(os.Getpid())) {
		t.Error("this test process is being killed, says /proc")
	}
	if fatalSignalPending(0) {
		t.Error("pid 0 (a caller of another pid namespace)")
	}
}
