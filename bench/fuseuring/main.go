// Command fuseuring measures the round trip of a trivial FUSE server
// answering LOOKUPs (ENOENT) over the classic /dev/fuse read/write loop
// against FUSE-over-io_uring (Linux 6.14+). Run as root.
//
//	go run ./bench/fuseuring -rounds 5 -n 100000 -modes classic,classic-pc,uring,uring-dt,uring-pc
//
// It sets the fuse module's enable_uring parameter for the run (a
// machine-wide setting) and puts its old value back at exit, on error
// and on SIGINT or SIGTERM. docs/PERFORMANCE.md (the twenty-third
// session) has what it measured and what the kernel requires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const paramPath = "/sys/module/fuse/parameters/enable_uring"

var (
	rounds   = flag.Int("rounds", 3, "interleaved rounds per mode")
	nStat    = flag.Int("n", 200000, "stat calls per round")
	modesArg = flag.String("modes", "classic,uring", "modes: classic, classic-pc (a pinned reader thread per CPU), uring (one ring, one thread, all queues), uring-pc (a ring and a thread per queue, pinned), uring-dt (one ring, SINGLE_ISSUER|DEFER_TASKRUN)")
	perQueue = flag.Int("depth", 2, "ring entries per queue")
	pinPerl  = flag.Int("perlcpu", -1, "pin the stat loop to this CPU (-1: not pinned)")
	srvCPU   = flag.Int("srvcpu", -1, "pin the classic loop's thread, and the uring/uring-dt ring thread, to this CPU (-1: not pinned)")
)

func main() {
	flag.Parse()
	old, err := os.ReadFile(paramPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuseuring:", err)
		os.Exit(1)
	}
	// Put back what the machine had, whatever happens.
	restore := func() {
		if err := os.WriteFile(paramPath, []byte(strings.TrimSpace(string(old))), 0); err != nil {
			fmt.Fprintln(os.Stderr, "fuseuring: restoring enable_uring:", err)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cleanupMounts()
		restore()
		os.Exit(2)
	}()
	fmt.Printf("kernel %s, %d CPUs, enable_uring was %s", kernel(), runtime.NumCPU(), old)
	if err := os.WriteFile(paramPath, []byte("Y"), 0); err != nil {
		fmt.Fprintln(os.Stderr, "fuseuring: enabling uring:", err)
		os.Exit(1)
	}
	code := 0
	if err := experiment(); err != nil {
		fmt.Fprintln(os.Stderr, "fuseuring:", err)
		code = 1
	}
	cleanupMounts()
	restore()
	now, _ := os.ReadFile(paramPath)
	fmt.Printf("enable_uring restored to %s", now)
	os.Exit(code)
}

func kernel() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

var mounted = map[string]bool{}

func cleanupMounts() {
	for d := range mounted {
		unix.Unmount(d, unix.MNT_DETACH)
		os.Remove(d)
	}
}

type result struct {
	rate            float64
	viaRing, viaDev int64
}

func experiment() error {
	modes := strings.Split(*modesArg, ",")
	res := map[string][]result{}
	for r := 0; r < *rounds; r++ {
		for _, m := range modes {
			x, err := measure(m, *nStat)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, m, err)
			}
			fmt.Printf("round %d %-9s %8.0f lookups/s  %6.2f us/round trip  (via ring %d, via /dev/fuse %d)\n",
				r+1, m, x.rate, 1e6/x.rate, x.viaRing, x.viaDev)
			res[m] = append(res[m], x)
		}
	}
	fmt.Println()
	base := 0.0
	for _, m := range modes {
		var rates []float64
		sum := 0.0
		for _, x := range res[m] {
			rates = append(rates, x.rate)
			sum += 1e6 / x.rate
		}
		sort.Float64s(rates)
		med := rates[len(rates)/2]
		mean := sum / float64(len(rates))
		if base == 0 {
			base = mean
		}
		fmt.Printf("%-9s median %8.0f lookups/s  mean %6.2f us/round trip  (%+.1f%% vs %s)\n", m, med, mean, 100*(mean-base)/base, modes[0])
	}
	return nil
}

// measure mounts the file system served in mode, runs the stat loop and
// returns lookups per second.
func measure(mode string, n int) (result, error) {
	var out result
	dir, err := os.MkdirTemp("", "fuseuring-")
	if err != nil {
		return out, err
	}
	fd, err := mountFuse(dir)
	if err != nil {
		os.Remove(dir)
		return out, err
	}
	mounted[dir] = true
	var devCount atomic.Int64
	var servers []*uringServer
	devDone := make(chan error, 64)
	nDev := 0
	umounted := false
	finish := func() error {
		var errs []error
		if !umounted {
			if err := unmount(dir); err != nil {
				errs = append(errs, fmt.Errorf("unmount: %w", err))
			}
			umounted = true
		}
		for _, s := range servers {
			s.stop.Store(true)
		}
		for _, s := range servers {
			select {
			case err := <-s.done:
				if err != nil {
					errs = append(errs, fmt.Errorf("uring server: %w", err))
				}
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("uring server did not stop"))
			}
		}
		for i := 0; i < nDev; i++ {
			select {
			case err := <-devDone:
				if err != nil {
					errs = append(errs, err)
				}
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("/dev/fuse loop did not stop"))
			}
		}
		unix.Close(fd)
		os.Remove(dir)
		delete(mounted, dir)
		return errors.Join(errs...)
	}

	wantURing := strings.HasPrefix(mode, "uring")
	gotURing, _, err := doInit(fd, wantURing)
	if err != nil {
		return out, errors.Join(err, finish())
	}
	// The /dev/fuse readers: the server in the classic modes; in the uring
	// modes they get only FORGET/INTERRUPT (and anything, should the ring
	// never become ready).
	devCPUs := []int{-1}
	switch {
	case mode == "classic-pc":
		devCPUs = nil
		for c := 0; c < possibleCPUs(); c++ {
			devCPUs = append(devCPUs, c)
		}
	case !wantURing:
		devCPUs = []int{*srvCPU}
	}
	nDev = len(devCPUs)
	for _, cpu := range devCPUs {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			if cpu >= 0 {
				var set unix.CPUSet
				set.Set(cpu)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					devDone <- err
					return
				}
			}
			devDone <- devLoop(fd, &devCount)
		}()
	}
	if wantURing {
		if !gotURing {
			return out, errors.Join(errors.New("FUSE_OVER_IO_URING not negotiated"), finish())
		}
		ncpu := possibleCPUs()
		var qids []uint16
		for q := 0; q < ncpu; q++ {
			qids = append(qids, uint16(q))
		}
		switch mode {
		case "uring":
			servers = []*uringServer{{devfd: fd, qids: qids, perQueue: *perQueue, cpu: *srvCPU}}
		case "uring-dt":
			servers = []*uringServer{{devfd: fd, qids: qids, perQueue: *perQueue, cpu: *srvCPU, flags: ioringSetupSingleIssuer | ioringSetupDeferTaskrun}}
		case "uring-pc":
			for _, q := range qids {
				servers = append(servers, &uringServer{devfd: fd, qids: []uint16{q}, perQueue: *perQueue, cpu: int(q)})
			}
		default:
			return out, errors.Join(fmt.Errorf("unknown mode %q", mode), finish())
		}
		ready := make(chan error, len(servers))
		for _, s := range servers {
			s.start(ready)
		}
		for range servers {
			select {
			case err := <-ready:
				if err != nil {
					return out, errors.Join(err, finish())
				}
			case <-time.After(5 * time.Second):
				return out, errors.Join(errors.New("ring registration did not finish in 5s"), finish())
			}
		}
	}
	// Warm up (and check the mount answers) with a short run, then time.
	if _, err := statLoop(dir, 2000); err != nil {
		return out, errors.Join(err, finish())
	}
	secs, err := statLoop(dir, n)
	if err != nil {
		return out, errors.Join(err, finish())
	}
	out.rate = float64(n) / secs
	if err := finish(); err != nil {
		return out, err
	}
	out.viaDev = devCount.Load()
	for _, s := range servers {
		out.viaRing += s.served.Load()
	}
	return out, nil
}

// statLoop runs n stat(2) calls on missing names in dir in a perl
// process and returns the seconds they took.
func statLoop(dir string, n int) (float64, error) {
	script := `use Time::HiRes qw(time); my ($d, $n) = @ARGV; my $t = time;
		for my $i (1 .. $n) { stat("$d/x$i") } printf "%.6f\n", time - $t;`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"perl", "-e", script, dir, strconv.Itoa(n)}
	if *pinPerl >= 0 {
		args = append([]string{"taskset", "-c", strconv.Itoa(*pinPerl)}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = time.Second
	b, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("stat loop: %w", err)
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || secs <= 0 {
		return 0, fmt.Errorf("stat loop printed %q", b)
	}
	return secs, nil
}

// possibleCPUs is num_possible_cpus(): the kernel's number of queues.
func possibleCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return runtime.NumCPU()
	}
	s := strings.TrimSpace(string(b))
	max := 0
	for _, part := range strings.Split(s, ",") {
		lohi := strings.Split(part, "-")
		v, _ := strconv.Atoi(lohi[len(lohi)-1])
		if v > max {
			max = v
		}
	}
	return max + 1
}
