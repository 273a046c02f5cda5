package peer_test

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerfs/peerfs/peer"
)

// TestPoolNoRetry: a request on an idle connection the peer closed
// meanwhile is sent again on a new one, unless its context says it must
// not go twice (peer.NoRetry): a RENAME's connection may have died after
// the peer carried it out.
func TestPoolNoRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				// One PING answered, then the connection is closed,
				// as a peer closes one that sat idle.
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				nc.Write([]byte("CONNECT OK\n"))
				r := bufio.NewReader(nc)
				if line, err := r.ReadString('\n'); err == nil && line == "PING\n" {
					nc.Write([]byte("PONG\n"))
				}
			}()
		}
	}()
	p := peer.NewPool(ln.Addr().String(), peer.ClientOptions{DialTimeout: 2 * time.Second, IOTimeout: 5 * time.Second}, 4)
	defer p.Close()
	ctx := context.Background()
	ping := func(c *peer.Conn) error { return c.Ping(ctx) }
	if err := p.Do(ctx, ping); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the server has closed the idle connection
	if err := p.Do(peer.NoRetry(ctx), ping); err == nil {
		t.Fatal("a request marked NoRetry succeeded on a closed connection: it was sent again")
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections after a NoRetry request failed, want 1 (no second attempt)", n)
	}
	if err := p.Do(ctx, ping); err != nil {
		t.Fatalf("a plain request after that: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // that one's connection closed too
	if err := p.Do(ctx, ping); err != nil {
		t.Fatalf("a plain request on a closed idle connection was not sent again: %v", err)
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}
