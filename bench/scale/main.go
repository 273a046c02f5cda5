// Command scale is peerfs's scale harness (make bench-scale): a tracker,
// single or as a replica on etcd, with N simulated peers speaking the
// real protocol, each answering its turn after an injected delay. It
// prints, for each N, what joining costs each peer (lines and bytes),
// the tracker's CPU per join and memory per peer, the latency of one
// writer's fsync round among N-1 idle peers next to a round in which
// every peer takes a turn (the design before turns, measured in the same
// run), many writers' fsync latencies, and the lines a leave costs; and
// how long the root of a real mount with 1,000 peer folders takes to
// list. Progress goes to stderr, the tables to stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerfs/peerfs/internal/etcdtest"
)

type config struct {
	bin          string
	sizes        []int
	backends     []string
	delay        time.Duration
	rounds       int
	writers      int
	fullRoundMax int // the every-peer round is measured up to this N
	seedJoinMax  int // the seed's full UPDATEs are measured up to this N
	mountPeers   int // peer folders for the mount listing; 0: skip
}

func main() {
	var cfg config
	var sizes, backends string
	flag.StringVar(&cfg.bin, "bin", "", "peerfs binary (default: go build ./cmd/peerfs into a temporary directory)")
	flag.StringVar(&sizes, "n", "10,100,1000,10000", "numbers of simulated peers")
	flag.StringVar(&backends, "backends", "single,etcd", "trackers to run: single, etcd (a replica on an embedded one-member etcd)")
	flag.DurationVar(&cfg.delay, "delay", 20*time.Millisecond, "injected delay of each turn (a WAN round trip)")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds measured per setting (the median is shown)")
	flag.IntVar(&cfg.writers, "writers", 10, "concurrent writers for the many-writer rounds")
	flag.IntVar(&cfg.fullRoundMax, "full-round-max", 1000, "measure the every-peer round (the design before turns) up to this N")
	flag.IntVar(&cfg.seedJoinMax, "seed-join-max", 100, "measure joins with the seed's full UPDATEs up to this N (their bytes grow as N^3)")
	flag.IntVar(&cfg.mountPeers, "mount-peers", 1000, "peer folders in the mount whose root is listed (0: skip; needs root and /dev/fuse)")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fatalf("-n: %q is not a number of peers of at least 2", s)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	cfg.backends = strings.Split(backends, ",")
	if err := run(cfg); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
	os.Exit(1)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// result is one backend and N's measurements.
type result struct {
	backend            string
	n                  int
	joinLines          float64 // per peer
	joinBytes          float64 // per peer
	joinTime           time.Duration
	cpuPerJoin         time.Duration
	rssPerPeer         float64       // bytes
	round              time.Duration // one writer, the others idle (median)
	fullRound          time.Duration // every peer takes a turn; 0: not measured
	fsyncP50, fsyncP99 time.Duration // many writers: SYNC to own SYNC FIN
	roundsPerSec       float64
	leaveLines         float64 // per remaining peer, per leave
	cpuRounds          time.Duration
	seedLines          float64 // joins with the seed's UPDATEs; 0: not measured
	seedBytes          float64
}

func run(cfg config) error {
	tmp, err := os.MkdirTemp("", "peerfs-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if cfg.bin == "" {
		cfg.bin = filepath.Join(tmp, "peerfs")
		progress("building %s", cfg.bin)
		if out, err := exec.Command("go", "build", "-o", cfg.bin, "./cmd/peerfs").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v: %s", err, out)
		}
	}
	printHeader(cfg)
	for _, backend := range cfg.backends {
		var extra []string
		switch backend {
		case "single":
		case "etcd":
			ms, err := etcdtest.Plan(1, filepath.Join(tmp, "etcd"))
			if err != nil {
				return err
			}
			ms[0].Durable = true
			e, err := etcdtest.StartMember(ms[0])
			if err != nil {
				return err
			}
			defer e.Close()
			extra = []string{"--etcd", ms[0].ClientURL()}
		default:
			return fmt.Errorf("unknown backend %q", backend)
		}
		for _, n := range cfg.sizes {
			if backend == "etcd" {
				// A fresh prefix per run: nothing left of the last one.
				extra = append(extra[:2], "--etcd-prefix", fmt.Sprintf("/scale-%d/", n))
			}
			r, err := measure(cfg, backend, n, extra)
			if err != nil {
				return fmt.Errorf("%s, N=%d: %w", backend, n, err)
			}
			if n <= cfg.seedJoinMax {
				if r.seedLines, r.seedBytes, err = seedJoins(cfg, n, extra); err != nil {
					return fmt.Errorf("%s, N=%d, seed joins: %w", backend, n, err)
				}
			}
			printRow(cfg, r)
		}
	}
	fmt.Println()
	if cfg.mountPeers > 0 {
		if err := mountListing(cfg, tmp); err != nil {
			progress("mount listing skipped: %v", err)
		}
	}
	return nil
}

// joinAll registers n simulated peers with the tracker at addr, 32 at a
// time.
func joinAll(addr string, n int, mode simMode, delay time.Duration) ([]*simPeer, error) {
	peers := make([]*simPeer, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range min(32, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				p, err := dialSim(addr, fmt.Sprintf("sim-%05d", i), 10000+i%50000, mode, delay)
				if err != nil {
					errs <- err
					return
				}
				peers[i] = p
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		closeAll(peers)
		return nil, err
	default:
	}
	return peers, nil
}

func closeAll(peers []*simPeer) {
	for _, p := range peers {
		if p != nil {
			p.nc.Close()
		}
	}
	for _, p := range peers {
		if p != nil {
			<-p.done
		}
	}
}

// totalLines sums what peers received.
func totalLines(peers []*simPeer) (lines, bytes int64) {
	for _, p := range peers {
		lines += p.lines.Load()
		bytes += p.bytes.Load()
	}
	return lines, bytes
}

// settle waits until the peers' received line count reaches want, or
// stops growing for a second.
func settle(peers []*simPeer, want int64) {
	last, still := int64(-1), 0
	for {
		got, _ := totalLines(peers)
		if want > 0 && got >= want {
			return
		}
		if got == last {
			if still++; still >= 20 {
				return
			}
		} else {
			still = 0
		}
		last = got
		time.Sleep(50 * time.Millisecond)
	}
}

func measure(cfg config, backend string, n int, extra []string) (result, error) {
	r := result{backend: backend, n: n}
	tr, err := startTracker(cfg.bin, extra...)
	if err != nil {
		return r, err
	}
	defer tr.stop()
	cpu0, rss0 := tr.cpu(), tr.rss()

	progress("%s N=%d: joining", backend, n)
	start := time.Now()
	peers, err := joinAll(tr.addr, n, modeTurns, cfg.delay)
	if err != nil {
		return r, err
	}
	defer closeAll(peers)
	// Each peer gets PEERS and n JOINED lines in all.
	settle(peers, int64(n)*int64(n+1))
	r.joinTime = time.Since(start)
	lines, bytes := totalLines(peers)
	r.joinLines, r.joinBytes = float64(lines)/float64(n), float64(bytes)/float64(n)
	cpu1 := tr.cpu()
	r.cpuPerJoin = (cpu1 - cpu0) / time.Duration(n)
	r.rssPerPeer = float64(tr.rss()-rss0) / float64(n)

	progress("%s N=%d: one writer's rounds", backend, n)
	w := peers[0]
	var samples []time.Duration
	for range cfg.rounds {
		d, err := oneRound(w, peers)
		if err != nil {
			return r, err
		}
		samples = append(samples, d)
	}
	r.round = median(samples)

	if n <= cfg.fullRoundMax {
		progress("%s N=%d: a round in which every peer takes a turn", backend, n)
		for _, p := range peers {
			p.send("WRITES held")
		}
		settle(peers, 0)
		if r.fullRound, err = oneRound(w, peers); err != nil {
			return r, err
		}
	}

	progress("%s N=%d: %d writers", backend, n, min(cfg.writers, n))
	cpu2 := tr.cpu()
	r.fsyncP50, r.fsyncP99, r.roundsPerSec, err = manyWriters(peers[:min(cfg.writers, n)], cfg.rounds)
	if err != nil {
		return r, err
	}
	r.cpuRounds = tr.cpu() - cpu2

	progress("%s N=%d: leaves", backend, n)
	leavers := min(max(n/10, 1), 100)
	stay := peers[:n-leavers]
	before, _ := totalLines(stay)
	for _, p := range peers[n-leavers:] {
		p.close(true)
	}
	settle(stay, before+int64(len(stay))*int64(leavers))
	after, _ := totalLines(stay)
	r.leaveLines = float64(after-before) / float64(len(stay)) / float64(leavers)
	peers = stay
	return r, nil
}

// oneRound has w ask for a round and returns how long it took to end.
func oneRound(w *simPeer, peers []*simPeer) (time.Duration, error) {
	for _, p := range peers {
		p.drain()
	}
	start := time.Now()
	w.send("SYNC")
	select {
	case end := <-w.ends:
		return end.Sub(start), nil
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("the round did not end")
	}
}

// manyWriters has each writer fsync k times in a row (SYNC, then the
// turn's SYNC FIN, then wait for the round's end before the next) and
// returns the median and 99th percentile of SYNC to own SYNC FIN (what
// an fsync waits for), and the rounds per second.
func manyWriters(ws []*simPeer, k int) (p50, p99 time.Duration, perSec float64, err error) {
	for _, p := range ws {
		p.drain()
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, w := range ws {
		wg.Go(func() {
			for range k {
				t0 := time.Now()
				w.send("SYNC")
				select {
				case fin := <-w.fins:
					mu.Lock()
					lat = append(lat, fin.Sub(t0))
					mu.Unlock()
				case <-ctx.Done():
					return
				}
				select {
				case <-w.ends:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return 0, 0, 0, fmt.Errorf("writers did not finish")
	}
	slices.Sort(lat)
	elapsed := time.Since(start)
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], float64(len(lat)) / elapsed.Seconds(), nil
}

// seedJoins measures n joins of peers that speak only the seed's lines
// (a full UPDATE on every join): lines and bytes per peer.
func seedJoins(cfg config, n int, extra []string) (lines, bytes float64, err error) {
	if len(extra) > 0 {
		extra = append(extra[:2], "--etcd-prefix", fmt.Sprintf("/scale-seed-%d/", n))
	}
	tr, err := startTracker(cfg.bin, extra...)
	if err != nil {
		return 0, 0, err
	}
	defer tr.stop()
	progress("N=%d: joins with the seed's UPDATEs", n)
	peers, err := joinAll(tr.addr, n, modeSeed, cfg.delay)
	if err != nil {
		return 0, 0, err
	}
	defer closeAll(peers)
	settle(peers, 0)
	l, b := totalLines(peers)
	return float64(l) / float64(n), float64(b) / float64(n), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// printHeader prints the table's head; printRow each row as it is
// measured, so that a long run shows what it has.
func printHeader(cfg config) {
	fmt.Printf("# peerfs scale: %d-core machine, turn delay %v, medians of %d rounds\n\n", cpus(), cfg.delay, cfg.rounds)
	fmt.Println("| tracker | N | join: lines/peer | join: KiB/peer | seed UPDATEs: lines/peer, KiB/peer | all joins took | tracker CPU/join | tracker RSS/peer | fsync round, 1 writer | round with every peer's turn (before) | ratio | " +
		fmt.Sprintf("%d writers: fsync p50 / p99", cfg.writers) + " | rounds/s | tracker CPU, those rounds | leave: lines/peer |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
}

func printRow(cfg config, r result) {
	{
		seed, full, ratio := "—", "—", "—"
		if r.seedLines > 0 {
			seed = fmt.Sprintf("%.0f, %.1f", r.seedLines, r.seedBytes/1024)
		}
		if r.fullRound > 0 {
			full = ms(r.fullRound)
			ratio = fmt.Sprintf("%.0fx", float64(r.fullRound)/float64(r.round))
		} else {
			full = fmt.Sprintf("≈%s (N × delay)", ms(time.Duration(r.n)*cfg.delay))
		}
		fmt.Printf("| %s | %d | %.0f | %.1f | %s | %s | %s | %.1f KiB | %s | %s | %s | %s / %s | %.1f | %s | %.2f |\n",
			r.backend, r.n, r.joinLines, r.joinBytes/1024, seed, ms(r.joinTime), us(r.cpuPerJoin), r.rssPerPeer/1024,
			ms(r.round), full, ratio, ms(r.fsyncP50), ms(r.fsyncP99), r.roundsPerSec, ms(r.cpuRounds), r.leaveLines)
	}
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func cpus() int { return runtime.NumCPU() }
