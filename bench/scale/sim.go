package main

// Simulated peers: goroutines that speak the real tracker protocol over
// TCP, each answering its SYNC OK with SYNC FIN after an injected delay
// (a network round trip: tc netem does not work here).

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// simPeer is one simulated peer's tracker connection.
type simPeer struct {
	name  string
	nc    net.Conn
	delay time.Duration // before each SYNC FIN

	wmu sync.Mutex // serialises writes

	lines, bytes atomic.Int64 // received after registration
	turns        atomic.Int64
	fins         chan time.Time // when each SYNC FIN was sent (buffered)
	ends         chan time.Time // when each SYNC END came (buffered)
	done         chan struct{}  // closed when the reader returns
}

// simMode is how a simulated peer speaks.
type simMode int

const (
	modeTurns  simMode = iota // deltas and turns, holding no writes: today's peerfs mount, idle
	modeHolder                // deltas and turns, always holding writes: a turn in every round, as every peer had before
	modeSeed                  // the seed's lines only: full UPDATEs, a turn in every round
)

const simTimeout = 60 * time.Second

// dialSim registers a simulated peer named name with the tracker at
// addr and starts its reader.
func dialSim(addr, name string, port int, mode simMode, delay time.Duration) (*simPeer, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	p := &simPeer{name: name, nc: nc, delay: delay,
		fins: make(chan time.Time, 64), ends: make(chan time.Time, 64), done: make(chan struct{})}
	r := bufio.NewReaderSize(nc, 16<<10)
	_ = nc.SetDeadline(time.Now().Add(simTimeout))
	ask := func(line, want string) error {
		if _, err := io.WriteString(nc, line+"\n"); err != nil {
			return err
		}
		got, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(got, want) {
			return fmt.Errorf("%s: %q answered %q", name, line, got)
		}
		return nil
	}
	switch mode {
	case modeTurns, modeHolder:
		held := map[simMode]string{modeTurns: "none", modeHolder: "held"}[mode]
		if err = ask("FEATURES deltas turns", "FEATURES OK deltas turns"); err == nil {
			err = ask("WRITES "+held, "WRITES OK")
		}
	}
	if err == nil {
		err = ask(fmt.Sprintf("REGISTER %s %d", name, port), "REGISTER OK")
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	go p.read(r)
	return p, nil
}

// send writes one line.
func (p *simPeer) send(line string) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.nc.SetWriteDeadline(time.Now().Add(simTimeout))
	_, _ = io.WriteString(p.nc, line+"\n")
}

// read counts every line and acts on SYNC OK and SYNC END.
func (p *simPeer) read(r *bufio.Reader) {
	defer close(p.done)
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long UPDATE: count its bytes, and the line once.
			p.bytes.Add(int64(len(line)))
			for err == bufio.ErrBufferFull {
				line, err = r.ReadSlice('\n')
				p.bytes.Add(int64(len(line)))
			}
			if err != nil {
				return
			}
			p.lines.Add(1)
			continue
		}
		if err != nil {
			return
		}
		p.lines.Add(1)
		p.bytes.Add(int64(len(line)))
		switch {
		case bytes.HasPrefix(line, []byte("SYNC OK")):
			p.turns.Add(1)
			time.AfterFunc(p.delay, func() {
				p.send("SYNC FIN clean")
				nonblock(p.fins, time.Now())
			})
		case bytes.HasPrefix(line, []byte("SYNC END")):
			nonblock(p.ends, time.Now())
		}
	}
}

func nonblock(ch chan time.Time, t time.Time) {
	select {
	case ch <- t:
	default:
	}
}

// close ends the connection (quit: politely) and waits for the reader.
func (p *simPeer) close(quit bool) {
	if quit {
		p.send("QUIT")
	}
	p.nc.Close()
	<-p.done
}

// drain empties the peer's event channels.
func (p *simPeer) drain() {
	for {
		select {
		case <-p.fins:
		case <-p.ends:
		default:
			return
		}
	}
}
