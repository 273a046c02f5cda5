package e2e

// Tracker replicas on a three-member etcd cluster, each member a process
// of its own (this test binary, re-executed), so that kill -9 hits one.

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerfs/peerfs/internal/etcdtest"
)

// fsyncResult is one fsync of the loop.
type fsyncResult struct {
	took time.Duration
	err  error
}

// TestEtcdReplicasSurviveKills: two tracker replicas on a three-member
// etcd cluster; alice registers with one, bob with the other, and alice
// fsyncs files in bob's folder in a loop. kill -9 of alice's replica,
// then of an etcd member: no fsync fails or returns without its round
// (the mount never falls back to uploading without one), none takes
// longer than the lease plus the replica's etcd TTL plus 10 s of
// reconnecting, no peer folder disappears from either mount, and alice
// registers again through the surviving replica.
func TestEtcdReplicasSurviveKills(t *testing.T) {
	needFUSE(t)
	etcds := etcdtest.StartProcesses(t, 3)
	urls := etcdtest.ClientURLs(etcds)
	const lease, ttl = 5 * time.Second, 3 * time.Second
	replica := func(name string) (*proc, string) {
		addr := freeAddr(t)
		return start(t, name, nil, nil, "tracker", "--listen", addr, "--log-level", "debug",
			"--etcd", strings.Join(urls, ","), "--etcd-ttl", ttl.String(), "--lease", lease.String()), addr
	}
	trA, addrA := replica("tracker-a")
	trB, addrB := replica("tracker-b")

	c := &cluster{t: t, tracker: addrA + "," + addrB}
	a := c.mount("alice")
	c.tracker = addrB + "," + addrA // bob starts with the other replica
	b := c.mount("bob")
	a.sees(b)
	b.sees(a)
	// alice asks tracker-a first, but takes tracker-b if tracker-a has
	// no session with etcd yet: the kill is for the one she is with.
	waitFor(t, 15*time.Second, "alice and bob registered", func() bool {
		return (trA.joined("alice") || trB.joined("alice")) && (trA.joined("bob") || trB.joined("bob"))
	})
	victim, survivor := trA, trB
	if !trA.joined("alice") {
		victim, survivor = trB, trA
	}

	// Neither mount's root ever lacks a folder.
	stopWatch := make(chan struct{})
	var watched sync.WaitGroup
	var missing []string
	var mu sync.Mutex
	for _, n := range []*node{a, b} {
		other := b
		if n == b {
			other = a
		}
		watched.Go(func() {
			for {
				select {
				case <-stopWatch:
					return
				case <-time.After(100 * time.Millisecond):
				}
				names, err := readDirNames(n.mnt)
				if err == nil && !slices.Contains(names, other.name) {
					mu.Lock()
					missing = append(missing, fmt.Sprintf("%s's root listed %q", n.name, names))
					mu.Unlock()
				}
			}
		})
	}

	// alice fsyncs in bob's folder until told to stop.
	stopLoop := make(chan struct{})
	results := make(chan fsyncResult, 1000)
	var looped sync.WaitGroup
	looped.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopLoop:
				return
			default:
			}
			took, err := fsyncWrite(t, filepath.Join(a.dir(b), fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("fsync %d\n", i)))
			results <- fsyncResult{took, err}
		}
	})
	count := func() int { return len(results) }
	waitFor(t, 20*time.Second, "fsyncs before the kills", func() bool { return count() >= 3 })

	victim.kill()
	before := count()
	waitFor(t, 30*time.Second, "fsyncs after alice's tracker was killed", func() bool { return count() >= before+3 })
	waitFor(t, 15*time.Second, "alice registered with the surviving tracker", func() bool { return survivor.joined("alice") })

	if err := etcds[0].Kill(); err != nil {
		t.Fatal(err)
	}
	before = count()
	waitFor(t, 30*time.Second, "fsyncs after an etcd member was killed", func() bool { return count() >= before+3 })

	close(stopLoop)
	looped.Wait()
	close(stopWatch)
	watched.Wait()
	close(results)
	bound := lease + ttl + 10*time.Second
	n, longest := 0, time.Duration(0)
	for r := range results {
		n++
		longest = max(longest, r.took)
		if r.err != nil {
			t.Errorf("fsync %d: %v", n, r.err)
		} else if r.took > bound {
			t.Errorf("fsync %d took %v, more than the bound %v", n, r.took, bound)
		}
	}
	for _, m := range missing {
		t.Error("a peer folder disappeared:", m)
	}
	if strings.Contains(a.p.log.String(), "no SYNC round possible") {
		t.Error("alice fsynced without a round (uploading directly)")
	}
	sameFile(t, filepath.Join(b.export, "f000"), []byte("fsync 0\n"))
	t.Logf("%d fsyncs through a tracker kill and an etcd member kill, the longest %v", n, longest)
}
