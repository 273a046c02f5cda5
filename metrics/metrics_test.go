package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/remote"
	"github.com/peerfs/peerfs/tracker"
)

// value returns the value of the sample of name whose labels include
// labels ("k=v"), summed.
func value(t *testing.T, r *Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			ok := true
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				ok = ok && have[k] == v
			}
			if !ok {
				continue
			}
			sum += sampleValue(m)
		}
	}
	return sum
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestRegistry(t *testing.T) {
	rep := remote.Report{
		Tracker: remote.TrackerReport{Registered: true},
		Peers: []remote.PeerReport{
			{Name: "bob", State: "up", RTT: 1.5},
			{Name: "carol", State: "down"},
		},
		Pending: remote.PendingReport{Files: 2, Bytes: 300, OldestAge: 4},
		Cache:   remote.CacheReport{Hits: 5, Misses: 2, Evictions: 1, MaxBytes: 1 << 30},
	}
	r := New(Options{Component: "mount", Version: "v1", Report: func() remote.Report { return rep }})
	r.FUSEOp("lookup", time.Millisecond, "")
	r.FUSEOp("lookup", time.Millisecond, "ENOENT")    // an answer: no such name
	r.FUSEOp("getxattr", time.Millisecond, "ENODATA") // an answer: no such attribute
	r.FUSEOp("setxattr", time.Millisecond, "EOPNOTSUPP")
	r.FUSEOp("open", time.Millisecond, "ENOENT") // gone since the lookup: an error
	r.FUSEOp("rmdir", time.Millisecond, "ENOTEMPTY")
	r.PeerRequest("bob", "GET", 3*time.Millisecond, nil)
	r.PeerRequest("bob", "STAT", time.Millisecond, &peerproto.FailError{Verb: "STAT"})
	r.PeerRequest("bob", "STAT", time.Millisecond, &peerproto.FailError{Verb: "STAT", Code: peerproto.CodeNotFound})
	r.PeerRequest("bob", "LIST", time.Millisecond, fmt.Errorf("dial: %w", os.ErrDeadlineExceeded))
	r.PeerRequest("bob", "LIST", time.Millisecond, errors.New("connection refused"))
	r.PeerRequest("bob", "LIST", time.Millisecond, context.Canceled)
	r.PeerBytes("bob", 100, 0)
	r.PeerBytes("bob", 0, 7)
	r.SyncTurn(time.Second, nil)
	r.SyncRound(2 * time.Second)
	r.SyncRound(-1)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"peerfs_fuse_ops_total", []string{"op=lookup", "result=ok"}, 1},
		{"peerfs_fuse_ops_total", []string{"op=lookup", "result=ENOENT"}, 1},
		{"peerfs_fuse_op_duration_seconds", []string{"op=lookup"}, 2},
		{"peerfs_fuse_ops_total", []string{"op=getxattr", "result=ENODATA"}, 1},
		{"peerfs_peer_requests_total", []string{"verb=STAT", "result=notfound"}, 1},
		{"peerfs_peer_requests_total", []string{"peer=bob", "verb=GET", "result=ok"}, 1},
		{"peerfs_peer_requests_total", []string{"verb=STAT", "result=refused"}, 1},
		{"peerfs_peer_requests_total", []string{"verb=LIST", "result=timeout"}, 1},
		{"peerfs_peer_requests_total", []string{"verb=LIST", "result=unreachable"}, 1},
		{"peerfs_peer_requests_total", []string{"verb=LIST", "result=canceled"}, 1},
		{"peerfs_errors_total", []string{"source=fuse", "kind=ENOENT"}, 1}, // the open's
		{"peerfs_errors_total", []string{"source=fuse", "kind=ENODATA"}, 0},
		{"peerfs_errors_total", []string{"source=fuse", "kind=EOPNOTSUPP"}, 0},
		{"peerfs_errors_total", []string{"source=fuse", "kind=ENOTEMPTY"}, 1},
		{"peerfs_errors_total", []string{"source=peer"}, 3},
		{"peerfs_peer_bytes_total", []string{"peer=bob", "direction=in"}, 100},
		{"peerfs_peer_bytes_total", []string{"peer=bob", "direction=out"}, 7},
		{"peerfs_sync_turns_total", []string{"result=ok"}, 1},
		{"peerfs_sync_rounds_total", nil, 2},
		{"peerfs_sync_round_duration_seconds", nil, 1},
		{"peerfs_peers", []string{"state=up"}, 1},
		{"peerfs_peers", []string{"state=down"}, 1},
		{"peerfs_peer_up", []string{"peer=carol"}, 0},
		{"peerfs_peer_rtt_seconds", []string{"peer=bob"}, 0.0015},
		{"peerfs_tracker_registered", nil, 1},
		{"peerfs_uploads_pending_files", nil, 2},
		{"peerfs_uploads_oldest_pending_seconds", nil, 4},
		{"peerfs_cache_hits_total", nil, 5},
		{"peerfs_cache_evictions_total", nil, 1},
		{"peerfs_build_info", []string{"version=v1", "component=mount"}, 1},
	} {
		if got := value(t, r, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestServe(t *testing.T) {
	r := New(Options{Component: "tracker", Version: "v1"})
	srv, err := r.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `peerfs_build_info{component="tracker",version="v1"} 1`) || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("/metrics:\n%s", body)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTrackerCollector: a tracker's registry reads its Stats at scrape
// time.
func TestTrackerCollector(t *testing.T) {
	st := tracker.Stats{Peers: 3, RoundsInProgress: 1, Rounds: 7}
	r := New(Options{Component: "tracker", Version: "v1", Tracker: func() tracker.Stats { return st }})
	for name, want := range map[string]float64{
		"peerfs_tracker_peers":                   3,
		"peerfs_tracker_sync_rounds_in_progress": 1,
		"peerfs_tracker_sync_rounds_total":       7,
	} {
		if got := value(t, r, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	st = tracker.Stats{Peers: 2}
	if got := value(t, r, "peerfs_tracker_peers"); got != 2 {
		t.Errorf("peerfs_tracker_peers after a change = %v, want 2", got)
	}
}
