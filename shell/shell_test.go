package shell

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/peerfs/peerfs/export"
	"github.com/peerfs/peerfs/internal/testutil"
	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/tracker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		line    string
		want    []string
		wantErr bool
	}{
		{"put 1 a.txt", []string{"put", "1", "a.txt"}, false},
		{"  put\t1   a.txt  ", []string{"put", "1", "a.txt"}, false},
		{`put 1 "my file.txt"`, []string{"put", "1", "my file.txt"}, false},
		{`put 1 'it''s'`, []string{"put", "1", "its"}, false},
		{`put 1 'a\b'`, []string{"put", "1", `a\b`}, false},
		{`put 1 "a\"b"`, []string{"put", "1", `a"b`}, false},
		{`put 1 my\ file`, []string{"put", "1", "my file"}, false},
		{`get 1 x ""`, []string{"get", "1", "x", ""}, false},
		{`put 1 "open`, nil, true},
		{`put 1 x\`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.line)
		if (err != nil) != tt.wantErr {
			t.Errorf("splitArgs(%q) error = %v, want error %v", tt.line, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !slices.Equal(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("peer x: GET %q: %w", "a", &peerproto.FailError{Verb: "GET", Code: "notfound", Text: "no such file"}), "notfound no such file"},
		{&peerproto.FailError{Verb: "CONNECT", Code: "busy"}, "busy"},
		{errors.New("dial tcp: refused"), "dial tcp: refused"},
	}
	for _, tt := range tests {
		if got := reason(tt.err); got != tt.want {
			t.Errorf("reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestTransfers drives connect, put, get, ls, mkdir, mv, rm and conns
// against a real peer server.
func TestTransfers(t *testing.T) {
	addr, export := startPeer(t, export.Options{})
	local := t.TempDir()
	sh := startShell(t, "sh", testOptions())

	sh.run("connect "+hostPortArgs(t, addr), `^CONNECT OK 1 `+addr+`$`)
	sh.run("connect "+hostPortArgs(t, testutil.ClosedAddr(t)), `^CONNECT FAIL .*refused`)
	sh.run("conns", `^CONNS OK 1$`)
	sh.expect(`^  1 ` + addr + `$`)

	// put: remote name defaults to the base name.
	data := make([]byte, 300<<10)
	rand.Read(data)
	src := filepath.Join(local, "notes.txt")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sh.run("put 1 "+src, fmt.Sprintf(`^PUT OK notes.txt %d bytes$`, len(data)))
	if got, err := os.ReadFile(filepath.Join(export, "notes.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("export copy: %d bytes, err %v; want the %d bytes put", len(got), err, len(data))
	}

	// put under another name, one with a space in it.
	sh.run(fmt.Sprintf(`put 1 %s "copy of notes.txt"`, src), `^PUT OK "copy of notes.txt" \d+ bytes$`)
	if _, err := os.Stat(filepath.Join(export, "copy of notes.txt")); err != nil {
		t.Fatal(err)
	}

	// get round trip, to an explicit path and to a directory.
	dst := filepath.Join(local, "back.txt")
	sh.run("get 1 notes.txt "+dst, fmt.Sprintf(`^GET OK notes.txt %d bytes -> `, len(data)))
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded copy: %d bytes, err %v; want the %d bytes put", len(got), err, len(data))
	}
	sub := filepath.Join(local, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	sh.run("get 1 /notes.txt "+sub, `^GET OK notes.txt \d+ bytes -> `)
	if got, err := os.ReadFile(filepath.Join(sub, "notes.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded into dir: %d bytes, err %v", len(got), err)
	}

	// A missing file fails with the peer's code, leaves nothing behind, and
	// the connection stays usable.
	sh.run("get 1 missing.txt "+filepath.Join(sub, "missing.txt"), `^GET FAIL notfound`)
	assertDirNames(t, sub, "notes.txt")

	sh.run("mkdir 1 docs", `^MKDIR OK docs$`)
	sh.run("mv 1 notes.txt docs/notes.txt", `^MV OK notes.txt docs/notes.txt$`)
	sh.run("ls 1", `^LS OK 2 entries in /$`)
	sh.expect(`^  f +\d+ "copy of notes.txt"$`)
	sh.expect(`^  d +\d+ docs$`)
	sh.run("ls 1 docs", `^LS OK 1 entries in /docs$`)
	sh.expect(fmt.Sprintf(`^  f +%d notes.txt$`, len(data)))
	sh.run("get 1 docs", `^GET FAIL isdir`)
	sh.run("rm 1 docs/notes.txt", `^RM OK docs/notes.txt$`)
	sh.run("rm 1 docs", `^RM OK docs$`)
	sh.run("rm 1 docs", `^RM FAIL notfound`)
	sh.run("ls 1 ..", `^LS FAIL bad remote name`)

	sh.run("close 1", `^CLOSE OK 1 `)
	sh.run("conns", `^CONNS OK 0$`)
	sh.run("ls 1", `^LS FAIL no connection 1`)
	sh.quit()
}

// TestBadCommands checks that mistakes print usage and the shell goes on.
func TestBadCommands(t *testing.T) {
	sh := startShell(t, "sh", testOptions())
	sh.run("frobnicate 1 2", `^FAIL unknown command "frobnicate"; type help$`)
	sh.run("put", `^PUT FAIL usage: put <conn id> <local file> \[<remote name>\]$`)
	sh.run("get 1", `^GET FAIL usage: get <conn id>`)
	sh.run("connect 127.0.0.1", `^CONNECT FAIL usage: connect <ip> <port>$`)
	sh.run("connect 127.0.0.1 http", `^CONNECT FAIL bad port "http"`)
	sh.run("register 127.0.0.1 70000", `^REGISTER FAIL bad port "70000"`)
	sh.run("ls x", `^LS FAIL bad connection id "x"`)
	sh.run("put 7 a", `^PUT FAIL no connection 7; see conns$`)
	sh.run(`put 1 "oops`, `^FAIL unterminated " quote$`)
	sh.run("peers", `^PEERS FAIL not registered`)
	sh.run("sync", `^SYNC FAIL not registered`)
	sh.run("help", `^HELP OK commands:$`)
	commands, order := commandTable()
	for _, n := range order {
		sh.expect(`^  ` + regexpQuote(commands[n].usage) + ` `)
	}
	sh.run("help get", `^HELP OK$`)
	sh.expect(`^  get <conn id>`)
	sh.send("# a comment is ignored")
	sh.run("conns", `^CONNS OK 0$`)
	sh.run("EXIT", `^QUIT OK$`)
	if err := <-sh.done; err != nil {
		t.Errorf("Run after exit: %v", err)
	}
	sh.done <- nil
}

func regexpQuote(s string) string {
	r := strings.NewReplacer(`[`, `\[`, `]`, `\]`, `|`, `\|`, `?`, `\?`, `.`, `\.`)
	return r.Replace(s)
}

// TestConnectRefusedByPeer passes the peer's CONNECT FAIL reason through.
func TestConnectRefusedByPeer(t *testing.T) {
	addr, _ := startPeer(t, export.Options{MaxConns: 1})
	sh := startShell(t, "sh", testOptions())
	sh.run("connect "+hostPortArgs(t, addr), `^CONNECT OK 1 `)
	sh.run("connect "+hostPortArgs(t, addr), `^CONNECT FAIL busy`)
	sh.run("conns", `^CONNS OK 1$`)
	sh.quit()
}

// TestBrokenConnection checks that a connection whose peer died is dropped,
// and that later use says so.
func TestBrokenConnection(t *testing.T) {
	addr := fakePeer(t, func(r *bufio.Reader, w net.Conn) {
		// Read one request and die without answering.
		_, _ = peerproto.ReadLine(r)
	})
	sh := startShell(t, "sh", testOptions())
	sh.run("connect "+hostPortArgs(t, addr), `^CONNECT OK 1 `)
	sh.run("ls 1", `^LS FAIL .*\(connection 1 to `+addr+` dropped\)$`)
	sh.run("conns", `^CONNS OK 0$`)
	sh.run("ls 1", `^LS FAIL connection 1 was dropped: `)
	sh.quit()
}

// TestGetAtomic checks that a download cut short leaves nothing under the
// final name, nor a temporary file.
func TestGetAtomic(t *testing.T) {
	addr := fakePeer(t, func(r *bufio.Reader, w net.Conn) {
		if _, err := peerproto.ReadLine(r); err != nil { // STAT
			return
		}
		st := peerproto.StatOK{Entry: peerproto.Entry{Type: peerproto.TypeFile, Mode: 0o644, Size: 1000}}
		if err := peerproto.WriteMessage(w, st); err != nil {
			return
		}
		if _, err := peerproto.ReadLine(r); err != nil { // GET
			return
		}
		_ = peerproto.WriteMessage(w, peerproto.GetOK{Size: 1000})
		_, _ = w.Write(make([]byte, 100)) // then hang up
	})
	dir := t.TempDir()
	final := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(final+".keep", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sh := startShell(t, "sh", testOptions())
	sh.run("connect "+hostPortArgs(t, addr), `^CONNECT OK 1 `)
	sh.run("get 1 big.bin "+final, `^GET FAIL .*dropped\)$`)
	assertDirNames(t, dir, "big.bin.keep")
	sh.quit()
}

// TestGetLocalFailure: a local path that cannot be written fails the get
// without touching the connection.
func TestGetLocalFailure(t *testing.T) {
	addr, export := startPeer(t, export.Options{})
	if err := os.WriteFile(filepath.Join(export, "a.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh := startShell(t, "sh", testOptions())
	sh.run("connect "+hostPortArgs(t, addr), `^CONNECT OK 1 `)
	sh.run("get 1 a.txt "+filepath.Join(t.TempDir(), "no", "such", "dir", "a.txt"), `^GET FAIL local file: `)
	sh.run("get 1 a.txt "+filepath.Join(t.TempDir(), "a.txt"), `^GET OK a.txt 5 bytes`)
	sh.quit()
}

// TestRegisterAndSync runs two registered shells through a SYNC round.
func TestRegisterAndSync(t *testing.T) {
	_, trk := testutil.StartTracker(t, 10*time.Second)
	aAddr, _ := startPeer(t, export.Options{})
	bAddr, _ := startPeer(t, export.Options{})

	// a registers at start (Options.Tracker); b types register.
	aOpts := testOptions()
	aOpts.Name, aOpts.Port, aOpts.Tracker = "alice", portOf(t, aAddr), trk
	a := startShell(t, "alice", aOpts)
	a.expect(`^REGISTER OK ` + trk + `$`)
	a.expect(`^PEERS OK 1$`)
	a.expect(`^  alice +` + aAddr + ` \(this peer\)$`)

	bOpts := testOptions()
	bOpts.Name, bOpts.Port = "bob", portOf(t, bAddr)
	b := startShell(t, "bob", bOpts)
	b.run("register "+hostPortArgs(t, trk), `^REGISTER OK `+trk+`$`)
	b.expect(`^PEERS OK 2$`)
	a.expect(`^\* UPDATE alice@` + aAddr + ` bob@` + bAddr + `$`)
	b.run("peers", `^PEERS OK 2$`)
	b.expect(`^  alice +` + aAddr + `$`)
	b.expect(`^  bob +` + bAddr + ` \(this peer\)$`)

	// b connects to a by the address the UPDATE gave.
	b.run("connect "+hostPortArgs(t, aAddr), `^CONNECT OK 1 `+aAddr+`$`)

	a.run("sync", `^SYNC OK$`)
	// The command's own "SYNC FIN" and the round's "* SYNC END 1" race:
	// bob may finish his turn before alice's command prints.
	first := a.expect(`^(SYNC FIN|\* SYNC END 1)$`)[1]
	if first == "SYNC FIN" {
		a.expect(`^\* SYNC END 1$`)
	} else {
		a.expect(`^SYNC FIN$`)
	}
	b.expect(`^\* SYNC READ$`)
	b.expect(`^\* SYNC OK \(our turn in another peer's round\)$`)
	b.expect(`^\* SYNC FIN$`)
	b.expect(`^\* SYNC END 1$`)

	// Registering again replaces the registration without a name clash.
	b.run("register "+hostPortArgs(t, trk), `^REGISTER OK `+trk+`$`)
	b.expect(`^PEERS OK 2$`)

	b.quit()
	a.expect(`^\* UPDATE alice@` + aAddr + `$`)
	a.quit()
}

// TestRegisterFail reports an unreachable tracker and leaves no client
// running.
func TestRegisterFail(t *testing.T) {
	opts := testOptions()
	opts.Client.DialTimeout = 500 * time.Millisecond
	sh := startShell(t, "sh", opts)
	sh.run("register "+hostPortArgs(t, testutil.ClosedAddr(t)), `^REGISTER FAIL no REGISTER OK from .* within 500ms \(last error: .*refused\)$`)
	sh.run("sync", `^SYNC FAIL not registered`)
	sh.run("peers", `^PEERS FAIL not registered`)
	sh.quit()
}

// TestProgress shows a bar on Err for a large transfer on a terminal, and
// the prompt on Out.
func TestProgress(t *testing.T) {
	addr, _ := startPeer(t, export.Options{})
	big := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(big, make([]byte, 5<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(t.TempDir(), "small.bin")
	if err := os.WriteFile(small, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			opts := testOptions()
			opts.TTY = tty
			sh := startShell(t, "sh", opts)
			sh.send("connect " + hostPortArgs(t, addr))
			sh.expect(`CONNECT OK 1 `)
			sh.send("put 1 " + small)
			sh.expect(`PUT OK small.bin 1048576 bytes$`)
			if got := sh.errOut.String(); got != "" {
				t.Errorf("small put wrote %q to Err", got)
			}
			sh.send("put 1 " + big)
			sh.expect(`PUT OK big.bin 5242880 bytes$`)
			sh.send("get 1 big.bin " + filepath.Join(t.TempDir(), "big.bin"))
			sh.expect(`GET OK big.bin 5242880 bytes`)
			bar := sh.errOut.String()
			if tty != strings.Contains(bar, "big.bin") {
				t.Errorf("TTY %v: Err = %q", tty, bar)
			}
			if tty != strings.Contains(sh.out.String(), prompt) {
				t.Errorf("TTY %v: prompt shown = %v", tty, !tty)
			}
			sh.send("quit")
			sh.expect(`QUIT OK$`)
		})
	}
}

// TestScript feeds a whole script from a reader: Run returns nil at its
// end, having closed the connection it opened.
func TestScript(t *testing.T) {
	addr, export := startPeer(t, export.Options{})
	if err := os.WriteFile(filepath.Join(export, "x"), []byte("xyz"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "x")
	script := strings.Join([]string{
		"connect " + hostPortArgs(t, addr),
		"get 1 x " + dst,
		"bogus",
		"ls 1",
	}, "\n") // no final newline, no quit
	var out syncBuffer
	opts := testOptions()
	opts.In, opts.Out = strings.NewReader(script), &out
	if err := Run(context.Background(), opts); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{
		"CONNECT OK 1 " + addr,
		"GET OK x 3 bytes -> " + dst,
		`FAIL unknown command "bogus"; type help`,
		"LS OK 1 entries in /",
		"  f            3 x",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); !slices.Equal(got, want) {
		t.Errorf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCancel ends Run through its context, with a connection open.
func TestCancel(t *testing.T) {
	addr, _ := startPeer(t, export.Options{})
	pr, pw := io.Pipe()
	defer pw.Close()
	var out syncBuffer
	opts := testOptions()
	opts.In, opts.Out = pr, &out
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	if _, err := io.WriteString(pw, "connect "+hostPortArgs(t, addr)+"\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(out.String(), "CONNECT OK") {
		if time.Now().After(deadline) {
			t.Fatalf("no CONNECT OK: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
}

// assertDirNames fails unless dir holds exactly names.
func assertDirNames(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// leftWatcher is a tracker handler that hears how peers leave.
type leftWatcher func(name string, quit bool)

func (leftWatcher) SetPeers([]peerproto.PeerAddr)     {}
func (leftWatcher) SyncRead()                         {}
func (leftWatcher) SyncTurn(context.Context) error    { return nil }
func (leftWatcher) SyncEnd(peerproto.SyncEnd)         {}
func (w leftWatcher) PeerLeft(name string, quit bool) { w(name, quit) }

// TestQuitLeaves: typing quit leaves the cluster on purpose (the tracker
// reports LEFT <name> quit, and mounts drop the folder); the end of the
// input only stops the shell (the peer is dropped: mounts keep it).
func TestQuitLeaves(t *testing.T) {
	_, trk := testutil.StartTracker(t, 10*time.Second)
	type leave struct {
		name string
		quit bool
	}
	lefts := make(chan leave, 4)
	watcher := tracker.NewClient(tracker.ClientOptions{
		Addr: trk, Name: "watcher", Port: 1, Logger: zerolog.Nop(),
		Handler: leftWatcher(func(name string, quit bool) { lefts <- leave{name, quit} }),
	})
	testutil.RunTrackerClient(t, watcher)
	addr, _ := startPeer(t, export.Options{})

	opts := testOptions()
	opts.Name, opts.Port, opts.Tracker = "alice", portOf(t, addr), trk
	a := startShell(t, "alice", opts)
	a.expect(`^REGISTER OK ` + trk + `$`)
	a.quit()
	if got := testutil.Recv(t, "LEFT alice", lefts); got != (leave{"alice", true}) {
		t.Errorf("after quit: %+v, want alice quit", got)
	}

	opts.Name = "bob"
	b := startShell(t, "bob", opts)
	b.expect(`^REGISTER OK ` + trk + `$`)
	b.in.Close() // end of input
	if err := testutil.Recv(t, "bob's shell to end", b.done); err != nil {
		t.Errorf("bob: Run at the end of input: %v", err)
	}
	b.done <- nil // for the cleanup
	if got := testutil.Recv(t, "LEFT bob", lefts); got != (leave{"bob", false}) {
		t.Errorf("after the end of input: %+v, want bob dropped", got)
	}
}
