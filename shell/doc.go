// Package shell is peerfs's interactive command shell, the user interface
// of the seed design: a person (or a script) types register, connect, put,
// get, sync and the like, one command a line, and reads one outcome line per
// command ("PUT OK notes.txt 1234 bytes", "GET FAIL notfound ...").
//
// The package owns the session state a shell user builds up: the numbered
// connections to other peers (peer.Conn) and the current registration with
// a tracker (a tracker.Client run on a goroutine of the shell). Events
// the tracker sends on its own (UPDATE, SYNC READ, SYNC END, a turn in
// another peer's SYNC round) are printed as they happen, as notices starting
// with "* ". All output goes through one mutex, so lines never interleave.
//
// The shell speaks only through packages peer and tracker; it never opens
// a socket itself. Run returns once the user quits, the input ends or its
// context is done, and closes every connection and tracker client it
// opened.
package shell
