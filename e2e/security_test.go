package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerfs/peerfs/secure"
)

// waitListening waits until addr accepts TCP connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, 10*time.Second, addr+" listening", func() bool {
		c, err := dialQuiet(addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestSecretRequired: without a secret and without --insecure, every
// daemon refuses to start, saying what to do.
func TestSecretRequired(t *testing.T) {
	for _, args := range [][]string{
		{"tracker", "--listen", "127.0.0.1:0"},
		{"peer", "--shell", "off", "--export", t.TempDir(), "--listen", "127.0.0.1:0"},
		{"mount", "--export", t.TempDir(), "--tracker", "127.0.0.1:1", t.TempDir()},
	} {
		cmd := exec.Command(bin, args...)
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "PEERFS_") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "no cluster secret: set PEERFS_SECRET or --secret-file PATH") {
			t.Errorf("peerfs %s without a secret: %v\n%s", args[0], err, out)
		}
	}
}

// TestOutsidersRefused: against a tracker and a peer run with the cluster
// secret, a client with another secret and a plaintext client (nc) are
// refused before reading or writing anything, and an --insecure peer
// cannot join; members read the export.
func TestOutsidersRefused(t *testing.T) {
	trackerAddr := freeAddr(t)
	tr := start(t, "tracker", nil, nil, "tracker", "--listen", trackerAddr, "--log-level", "debug")
	export := t.TempDir()
	writeFile(t, filepath.Join(export, "secret.txt"), []byte("the plans"))
	peerAddr := freeAddr(t)
	start(t, "bob", nil, nil, "peer", "--shell", "off", "--name", "bob", "--export", export,
		"--listen", peerAddr, "--tracker", trackerAddr)
	waitListening(t, trackerAddr)
	waitListening(t, peerAddr)

	// Plaintext, as with nc.
	p := dialPlain(t, peerAddr)
	p.send("GET secret.txt\n")
	if got := p.line(); !strings.HasPrefix(got, "CONNECT FAIL denied") {
		t.Fatalf("plaintext GET: %q", got)
	}
	pt := dialPlain(t, trackerAddr)
	pt.send("REGISTER mallory 7071\n")
	if got := pt.line(); !strings.HasPrefix(got, "REGISTER FAIL denied") {
		t.Fatalf("plaintext REGISTER: %q", got)
	}

	// Another cluster's secret.
	wrong, err := secure.New([]byte("not-the-cluster-secret-at-all"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ addr, want string }{
		{peerAddr, "CONNECT FAIL denied not a member of this cluster"},
		{trackerAddr, "REGISTER FAIL denied not a member of this cluster"},
	} {
		nc, err := net.DialTimeout("tcp", tc.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, err = wrong.Client(nc, 5*time.Second)
		var re *secure.RefusedError
		if !errors.As(err, &re) || re.Line != tc.want {
			t.Fatalf("wrong secret to %s: %v, want %q", tc.addr, err, tc.want)
		}
	}

	// An --insecure peer cannot register.
	mallory := start(t, "mallory", nil, nil, "peer", "--shell", "off", "--insecure", "--name", "mallory",
		"--export", t.TempDir(), "--listen", "127.0.0.1:0", "--tracker", trackerAddr)
	waitFor(t, 10*time.Second, "mallory's warning", func() bool {
		return strings.Contains(mallory.log.String(), "plaintext, unauthenticated: anyone who can reach this port can read and write the export")
	})
	// The tracker logs the first refusal (the plaintext REGISTER) and
	// counts the others (the wrong secret, mallory's) for a summary line.
	waitFor(t, 10*time.Second, "the tracker refusing mallory", func() bool {
		return strings.Contains(tr.log.String(), "refused connection") &&
			strings.Contains(mallory.log.String(), "REGISTER FAIL denied this tracker speaks TLS only")
	})

	// A member sees bob (once he has registered), never mallory.
	obs := dialLine(t, trackerAddr)
	obs.send("REGISTER\n")
	obs.expect("REGISTER OK")
	for {
		got := obs.line()
		if strings.Contains(got, "mallory") {
			t.Fatalf("member's UPDATE lists mallory: %q", got)
		}
		if strings.Contains(got, "bob@") {
			break
		}
	}
	m := dialLine(t, peerAddr)
	m.expect("CONNECT OK")
	m.send("GET secret.txt\n")
	m.expect("GET OK 9")
	if b, _ := os.ReadFile(filepath.Join(export, "secret.txt")); string(b) != "the plans" {
		t.Fatalf("export changed: %q", b)
	}
}

// TestInsecureTranscript: with --insecure the protocol is the plain text a
// person types with nc (README, docs/PROTOCOL.md §8).
func TestInsecureTranscript(t *testing.T) {
	trackerAddr := freeAddr(t)
	tr := start(t, "tracker", nil, nil, "tracker", "--insecure", "--listen", trackerAddr)
	export := t.TempDir()
	peerAddr := freeAddr(t)
	start(t, "bob", nil, nil, "peer", "--insecure", "--shell", "off", "--name", "bob", "--export", export,
		"--listen", peerAddr, "--tracker", trackerAddr)
	waitListening(t, trackerAddr)
	waitListening(t, peerAddr)
	if !strings.Contains(tr.log.String(), "WARNING: --insecure: plaintext, unauthenticated") {
		t.Errorf("tracker --insecure printed no warning:\n%s", tr.log.String())
	}
	// A tracker has no export to warn about.
	if strings.Contains(tr.log.String(), "export") || !strings.Contains(tr.log.String(), "join the cluster") {
		t.Errorf("the tracker's warning should speak of the cluster, not of an export:\n%s", tr.log.String())
	}

	c := dialPlain(t, peerAddr)
	c.expect("CONNECT OK")
	c.send("PUT hello.txt 6\n")
	c.expect("PUT OK")
	c.send("hello\n")
	if got := c.line(); !strings.HasPrefix(got, "PUT DONE 6 ") {
		t.Fatalf("PUT: %q", got)
	}
	c.send("GET hello.txt 2 4\n")
	c.expect("GET OK 4")
	c.expect("llo")
	c.send("QUIT\n")

	o := dialPlain(t, trackerAddr)
	o.send("PING\n")
	o.expect("PONG")
	o.send("register alice 7071\n")
	o.expect("REGISTER OK")
	waitFor(t, 10*time.Second, "UPDATE listing bob and alice", func() bool {
		line := o.line()
		return strings.Contains(line, "bob@") && strings.Contains(line, "alice@127.0.0.1:7071")
	})
	o.send("QUIT\n")
}

// TestReadOnlyPeerEROFS: a writer in the folder of a peer exported with
// --read-only gets EROFS ("Read-only file system"); reading works.
func TestReadOnlyPeerEROFS(t *testing.T) {
	c := newCluster(t)
	alice := c.mount("alice", "--read-only")
	bob := c.mount("bob")
	writeFile(t, filepath.Join(alice.export, "a.txt"), []byte("alice's"))
	bob.sees(alice)
	if out, err := runCmd(t, 30*time.Second, "", "cat", filepath.Join(bob.dir(alice), "a.txt")); err != nil || out != "alice's" {
		t.Fatalf("cat: %q, %v", out, err)
	}
	for _, args := range [][]string{
		{"touch", filepath.Join(bob.dir(alice), "new.txt")},
		{"mkdir", filepath.Join(bob.dir(alice), "d")},
		{"rm", filepath.Join(bob.dir(alice), "a.txt")},
	} {
		out, err := runCmd(t, 30*time.Second, "", args[0], args[1:]...)
		if err == nil || !strings.Contains(out, "Read-only file system") {
			t.Errorf("%s in a read-only peer's folder: %v, %q; want Read-only file system", strings.Join(args, " "), err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(alice.export, "new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new.txt reached alice's export: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(alice.export, "a.txt")); string(b) != "alice's" {
		t.Errorf("a.txt changed: %q", b)
	}
}

// TestAllowSetuid: a peer strips the setuid and setgid bits a client asks
// for, unless started with --allow-setuid (peer and mount alike).
func TestAllowSetuid(t *testing.T) {
	c := newCluster(t)
	alice := c.mount("alice", "--allow-setuid")
	type server struct{ name, export, addr string }
	servers := []server{{"alice (mount --allow-setuid)", alice.export, alice.listen}}
	for i, args := range [][]string{nil, {"--allow-setuid"}} {
		s := server{"peer " + strings.Join(args, " "), t.TempDir(), freeAddr(t)}
		// Each its own name: the tracker refuses a second peer of the
		// same (host) name, and that ends peerfs peer.
		start(t, s.name, nil, nil, append([]string{"peer", "--shell", "off", "--name", fmt.Sprintf("peer%d", i), "--export", s.export,
			"--listen", s.addr, "--tracker", c.tracker}, args...)...)
		waitListening(t, s.addr)
		servers = append(servers, s)
	}
	for _, s := range servers {
		writeFile(t, filepath.Join(s.export, "prog"), []byte("#!/bin/sh\nid\n"))
		m := dialLine(t, s.addr)
		m.expect("CONNECT OK")
		m.send("SETATTR prog mode=04755\n")
		got := m.line()
		want, wantMode := "SETATTR OK f 0755 ", os.FileMode(0o755)
		if strings.Contains(s.name, "--allow-setuid") {
			want, wantMode = "SETATTR OK f 04755 ", 0o755|os.ModeSetuid
		}
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want %q...", s.name, got, want)
		}
		if fi, err := os.Stat(filepath.Join(s.export, "prog")); err != nil || fi.Mode() != wantMode {
			t.Errorf("%s: mode %v (%v), want %v", s.name, fi.Mode(), err, wantMode)
		}
	}
}
