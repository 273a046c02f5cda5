// Package testutil holds the helpers that tests of several packages share
// to run real components on 127.0.0.1: a tracker, a registered tracker
// client, bounded waits, whether a process they started has ended. It is imported by tests and by the harnesses
// they use (internal/etcdtest).
//
// The tracker and export packages' own in-package tests cannot import it
// (it imports them); they keep their helpers.
package testutil

import (
	"bytes"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/peerfs/peerfs/tracker"
)

// Wait bounds Eventually and Recv: no test waits longer for one thing.
const Wait = 10 * time.Second

// LogBuffer is a log destination (zerolog.New(&buf)) safe for the
// goroutines of the component under test to write to while the test
// reads it. Its zero value is ready.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Eventually polls cond until it holds, failing the test after Wait.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Recv receives from ch, failing the test after Wait.
func Recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// Server is what Serve runs: a tracker.Tracker or an export.Server.
type Server interface {
	Serve(net.Listener) error
	Close() error
}

// Serve runs srv on a loopback port until the test ends (closing it and
// waiting for Serve to return), and returns its address.
func Serve(t testing.TB, srv Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return ln.Addr().String()
}

// StartTracker runs a tracker with the given SYNC lease on a loopback port
// until the test ends, and returns it and its address.
func StartTracker(t testing.TB, lease time.Duration) (*tracker.Tracker, string) {
	t.Helper()
	tr := tracker.New(tracker.Options{Lease: lease, Logger: zerolog.Nop()})
	return tr, Serve(t, tr)
}

// RunTrackerClient runs tc until the test ends and waits (up to Wait) for
// it to register.
func RunTrackerClient(t testing.TB, tc *tracker.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	rctx, rcancel := context.WithTimeout(ctx, Wait)
	defer rcancel()
	if err := tc.WaitRegistered(rctx); err != nil {
		t.Fatalf("tracker client: register: %v", err)
	}
}

// ClosedAddr returns a 127.0.0.1 address nothing listens on (a port just
// released).
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ProcState returns the state letter of process pid from /proc (R, S, D,
// T, Z...), or "" if there is no such process.
func ProcState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// Ended reports whether process pid has ended: gone, or a zombie (a
// container's init may never reap an orphan).
func Ended(pid int) bool {
	s := ProcState(pid)
	return s == "" || s == "Z"
}
