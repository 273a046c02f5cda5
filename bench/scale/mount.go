package main

// The root of a real mount with many peer folders: a mount registered
// with a tracker that lists mountPeers simulated peers, listed by ls in
// child processes.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func mountListing(cfg config, tmp string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return err
	}
	n := cfg.mountPeers
	tr, err := startTracker(cfg.bin)
	if err != nil {
		return err
	}
	defer tr.stop()
	progress("mount: %d peers", n)
	peers, err := joinAll(tr.addr, n, modeTurns, cfg.delay)
	if err != nil {
		return err
	}
	defer closeAll(peers)
	mnt, export, cache := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "export"), filepath.Join(tmp, "cache")
	for _, d := range []string{mnt, export, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cmd := exec.Command(cfg.bin, "mount", "--insecure", "--name", "lister", "--listen", "127.0.0.1:0",
		"--export", export, "--tracker", tr.addr, "--cache-dir", cache, "--log-level", "warn", mnt)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = exec.Command("fusermount3", "-uz", mnt).Run()
	}()
	// Until the root lists every peer.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := exec.Command("ls", mnt).Output()
		if strings.Count(string(out), "\n") >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the mount root lists %d of %d peers after a minute: %s", strings.Count(string(out), "\n"), n, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	timeIt := func(args ...string) (time.Duration, error) {
		var ds []time.Duration
		for range cfg.rounds {
			start := time.Now()
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				return 0, fmt.Errorf("%s: %v: %.200s", args, err, out)
			}
			ds = append(ds, time.Since(start))
		}
		return median(ds), nil
	}
	ls, err := timeIt("ls", mnt)
	if err != nil {
		return err
	}
	lsl, err := timeIt("ls", "-l", mnt)
	if err != nil {
		return err
	}
	fmt.Printf("# the root of a real mount with %d peer folders (peers that serve nothing: their folders are down)\n\n", n)
	fmt.Println("| listing | median of", cfg.rounds, "|")
	fmt.Println("|---|--:|")
	fmt.Printf("| `ls` (names) | %s |\n| `ls -l` (names and each folder's attributes) | %s |\n\n", ms(ls), ms(lsl))
	return nil
}
