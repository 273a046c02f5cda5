package tracker

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/peerproto"
)

// TestClientWritesOutsideItsLock: a tracker that stops reading blocks the
// Client's writes, never its lock: State still answers, with a Sync
// waiting, while that Sync's request cannot go out.
func TestClientWritesOutsideItsLock(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cli, srv := net.Pipe() // a write blocks until the other side reads
	c := NewClient(ClientOptions{
		Addr: "pipe", Name: "a", Port: 1, Logger: zerolog.Nop(),
		PingInterval: time.Hour, DialTimeout: time.Hour,
	})
	c.dial = func(context.Context, string) (net.Conn, error) { return cli, nil }
	// The tracker answers FEATURES and REGISTER, then reads nothing more.
	go func() {
		r := bufio.NewReader(srv)
		for _, answer := range []string{"FEATURES OK\n", "REGISTER OK\n"} {
			if _, err := peerproto.ReadLine(r); err != nil {
				return
			}
			if _, err := srv.Write([]byte(answer)); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	synced := make(chan error, 1)
	defer func() {
		cancel()
		srv.Close()
		<-ran
		<-synced
	}()
	wctx, wcancel := context.WithTimeout(ctx, replyTimeout)
	defer wcancel()
	if err := c.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}

	go func() { synced <- c.Sync(ctx) }()
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for c.State().Waiting != 1 {
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-answered:
	case <-time.After(replyTimeout):
		t.Fatal("State blocked behind a write to a tracker that does not read")
	}
}
