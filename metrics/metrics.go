package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerfs/peerfs/peerproto"
	"github.com/peerfs/peerfs/remote"
	"github.com/peerfs/peerfs/tracker"
)

// Options configures a Registry.
type Options struct {
	// Component labels peerfs_build_info: "mount", "peer" or "tracker".
	Component string
	// Version labels peerfs_build_info.
	Version string
	// Report, if set, is read at every scrape for the cache, upload, peer
	// and tracker gauges (a mount's remote.Store.Report).
	Report func() remote.Report
	// Tracker, if set, is read at every scrape for a tracker's gauges of
	// registered peers and SYNC rounds (tracker.Tracker.Stats).
	Tracker func() tracker.Stats
}

// Registry holds the metrics of one process, in a private Prometheus
// registry (no global state). Its methods are safe for concurrent use.
type Registry struct {
	reg *prometheus.Registry

	fuseOps     *prometheus.CounterVec
	fuseLatency *prometheus.HistogramVec
	peerReqs    *prometheus.CounterVec
	peerLatency *prometheus.HistogramVec
	peerBytes   *prometheus.CounterVec
	syncRounds  prometheus.Counter
	roundTime   prometheus.Histogram
	syncTurns   *prometheus.CounterVec
	turnTime    prometheus.Histogram
	errs        *prometheus.CounterVec
}

// latencyBuckets span 50µs (a cached lookup) to 30s (a large upload).
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New returns a Registry with the Go runtime and process collectors and
// every peerfs metric registered.
func New(opts Options) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.fuseOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerfs_fuse_ops_total", Help: "FUSE requests answered, by operation and result (ok or the errno's name).",
	}, []string{"op", "result"})
	r.fuseLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "peerfs_fuse_op_duration_seconds", Help: "Time from a FUSE request's arrival to its answer.", Buckets: latencyBuckets,
	}, []string{"op"})
	r.peerReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerfs_peer_requests_total", Help: "Requests to other peers, by peer, protocol verb and result (ok, notfound, refused, timeout, unreachable, canceled).",
	}, []string{"peer", "verb", "result"})
	r.peerLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "peerfs_peer_request_duration_seconds", Help: "Duration of requests to other peers, by protocol verb (including connecting and retries).", Buckets: latencyBuckets,
	}, []string{"verb"})
	r.peerBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerfs_peer_bytes_total", Help: "File content moved, by peer and direction (in: received, out: sent).",
	}, []string{"peer", "direction"})
	r.syncRounds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "peerfs_sync_rounds_total", Help: "SYNC rounds this client saw end (SYNC END).",
	})
	r.roundTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "peerfs_sync_round_duration_seconds", Help: "SYNC round duration as this client saw it: from its first sign (SYNC READ or SYNC OK) to SYNC END.", Buckets: latencyBuckets,
	})
	r.syncTurns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerfs_sync_turns_total", Help: "This client's SYNC OK turns, by result (ok or error).",
	}, []string{"result"})
	r.turnTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "peerfs_sync_turn_duration_seconds", Help: "Duration of this client's SYNC OK turns (uploading every pending file).", Buckets: latencyBuckets,
	})
	r.errs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerfs_errors_total", Help: "Errors by source (fuse, peer, sync) and kind (an errno's name, or refused/timeout/unreachable); ordinary answers (a lookup's ENOENT, an xattr's ENODATA, a peer's notfound) are not errors.",
	}, []string{"source", "kind"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "peerfs_build_info", Help: "Always 1; labelled with the version and the running command.",
	}, []string{"version", "component"})
	build.WithLabelValues(opts.Version, opts.Component).Set(1)
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.fuseOps, r.fuseLatency, r.peerReqs, r.peerLatency, r.peerBytes,
		r.syncRounds, r.roundTime, r.syncTurns, r.turnTime, r.errs, build,
	)
	if opts.Report != nil {
		r.reg.MustRegister(&reportCollector{report: opts.Report})
	}
	if opts.Tracker != nil {
		r.reg.MustRegister(&trackerCollector{stats: opts.Tracker})
	}
	return r
}

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Gatherer returns the registry, for tests.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// FUSEOp records one answered FUSE request; it fits fusefs.Options.Observe.
// An expected answer (see expectedAnswer) is counted by its result but
// not as an error.
func (r *Registry) FUSEOp(op string, d time.Duration, errno string) {
	result := "ok"
	if errno != "" {
		result = errno
		if !expectedAnswer(op, errno) {
			r.errs.WithLabelValues("fuse", errno).Inc()
		}
	}
	r.fuseOps.WithLabelValues(op, result).Inc()
	r.fuseLatency.WithLabelValues(op).Observe(d.Seconds())
}

// expectedAnswer reports whether a FUSE request answered with errno is a
// working filesystem's ordinary answer rather than a failure: a lookup of
// a name that does not exist (every create and cp looks first), an
// extended attribute a file does not have (ENODATA: cp, ls -l and
// desktop tools probe for ACLs and labels), one this filesystem does not
// support (system.* ACLs, which cp -a tries to copy), or a size probe's
// buffer too small (ERANGE). peerfs_errors_total is for alerting: these
// would drown the failures.
func expectedAnswer(op, errno string) bool {
	switch op {
	case "lookup":
		return errno == "ENOENT"
	case "getxattr", "listxattr":
		return errno == "ENODATA" || errno == "ERANGE" || errno == "EOPNOTSUPP" || errno == "ENOTSUP"
	case "setxattr", "removexattr":
		return errno == "EOPNOTSUPP" || errno == "ENOTSUP"
	}
	return false
}

// PeerRequest implements remote.Observer. A peer's "not found" answers a
// question (is there such a name?) and is not counted as an error.
func (r *Registry) PeerRequest(peer, verb string, d time.Duration, err error) {
	kind := ErrorKind(err)
	r.peerReqs.WithLabelValues(peer, verb, kind).Inc()
	r.peerLatency.WithLabelValues(verb).Observe(d.Seconds())
	if kind != "ok" && kind != "canceled" && kind != "notfound" {
		r.errs.WithLabelValues("peer", kind).Inc()
	}
}

// PeerBytes implements remote.Observer.
func (r *Registry) PeerBytes(peer string, in, out int64) {
	if in > 0 {
		r.peerBytes.WithLabelValues(peer, "in").Add(float64(in))
	}
	if out > 0 {
		r.peerBytes.WithLabelValues(peer, "out").Add(float64(out))
	}
}

// SyncTurn records one of this client's SYNC OK turns.
func (r *Registry) SyncTurn(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
		r.errs.WithLabelValues("sync", ErrorKind(err)).Inc()
	}
	r.syncTurns.WithLabelValues(result).Inc()
	r.turnTime.Observe(d.Seconds())
}

// SyncRound records the end of a SYNC round that this client saw start d
// ago (d < 0: its start was not seen).
func (r *Registry) SyncRound(d time.Duration) {
	r.syncRounds.Inc()
	if d >= 0 {
		r.roundTime.Observe(d.Seconds())
	}
}

// ErrorKind classifies a request's error for labels: ok, canceled,
// notfound (the peer answered FAIL notfound), refused (any other FAIL),
// timeout, or unreachable.
func ErrorKind(err error) string {
	var fe *peerproto.FailError
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &fe) && fe.Code == peerproto.CodeNotFound:
		return "notfound"
	case errors.As(err, &fe):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "unreachable"
	}
}

// reportCollector turns a status report into gauges at scrape time.
type reportCollector struct {
	report func() remote.Report
}

var (
	descPeers      = prometheus.NewDesc("peerfs_peers", "Known peers by state (up, down, unknown), from the health pinger and the last requests.", []string{"state"}, nil)
	descPeerUp     = prometheus.NewDesc("peerfs_peer_up", "1 if the peer answered its last request or PING, else 0.", []string{"peer"}, nil)
	descPeerRTT    = prometheus.NewDesc("peerfs_peer_rtt_seconds", "Round-trip time of the last PING to the peer.", []string{"peer"}, nil)
	descRegistered = prometheus.NewDesc("peerfs_tracker_registered", "1 while registered with the tracker.", nil, nil)
	descInRound    = prometheus.NewDesc("peerfs_sync_in_round", "1 while a SYNC round is in progress.", nil, nil)
	descLastRound  = prometheus.NewDesc("peerfs_sync_last_round", "Number of the last SYNC round that ended.", nil, nil)
	descWaiting    = prometheus.NewDesc("peerfs_sync_waiting", "fsync callers waiting for a SYNC turn.", nil, nil)
	descPendFiles  = prometheus.NewDesc("peerfs_uploads_pending_files", "Files with local changes not yet stored on their peer.", nil, nil)
	descPendBytes  = prometheus.NewDesc("peerfs_uploads_pending_bytes", "Size of the files not yet stored on their peer.", nil, nil)
	descPendAge    = prometheus.NewDesc("peerfs_uploads_oldest_pending_seconds", "Age of the oldest change not yet stored (0 if none).", nil, nil)
	descCacheBytes = prometheus.NewDesc("peerfs_cache_bytes", "Bytes in the local cache.", nil, nil)
	descCacheMax   = prometheus.NewDesc("peerfs_cache_max_bytes", "The cache's size bound.", nil, nil)
	descCacheFiles = prometheus.NewDesc("peerfs_cache_entries", "Files in the local cache.", nil, nil)
	descCacheDirty = prometheus.NewDesc("peerfs_cache_dirty_bytes", "Bytes of dirty (unuploaded) copies in the cache.", nil, nil)
	descCacheHits  = prometheus.NewDesc("peerfs_cache_hits_total", "Cache lookups that found a valid copy.", nil, nil)
	descCacheMiss  = prometheus.NewDesc("peerfs_cache_misses_total", "Cache lookups that did not.", nil, nil)
	descCacheEvict = prometheus.NewDesc("peerfs_cache_evictions_total", "Copies evicted to stay within the bound.", nil, nil)
	descWatched    = prometheus.NewDesc("peerfs_peer_watched_directories", "Directories the peer watches for this mount now (it reports their changes).", []string{"peer"}, nil)
	descForeign    = prometheus.NewDesc("peerfs_peer_foreign_changes_total", "Changes another writer made on the peer that it reported, each having the kernel drop what it held of the name.", []string{"peer"}, nil)
)

// Describe implements prometheus.Collector.
func (c *reportCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descPeerUp, descPeerRTT, descRegistered, descInRound, descLastRound, descWaiting,
		descPendFiles, descPendBytes, descPendAge, descCacheBytes, descCacheMax, descCacheFiles, descCacheDirty, descCacheHits, descCacheMiss, descCacheEvict, descWatched, descForeign} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *reportCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.report()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	states := map[string]int{"up": 0, "down": 0, "unknown": 0}
	for _, p := range r.Peers {
		states[p.State]++
		up := 0.0
		if p.State == "up" {
			up = 1
		}
		gauge(descPeerUp, up, p.Name)
		gauge(descWatched, float64(p.Watched), p.Name)
		counter(descForeign, float64(p.Foreign), p.Name)
		if p.RTT > 0 {
			gauge(descPeerRTT, p.RTT/1000, p.Name)
		}
	}
	for state, n := range states {
		gauge(descPeers, float64(n), state)
	}
	gauge(descRegistered, b2f(r.Tracker.Registered))
	gauge(descInRound, b2f(r.Sync.InRound))
	gauge(descLastRound, float64(r.Sync.LastRound))
	gauge(descWaiting, float64(r.Sync.Waiting))
	gauge(descPendFiles, float64(r.Pending.Files))
	gauge(descPendBytes, float64(r.Pending.Bytes))
	gauge(descPendAge, r.Pending.OldestAge)
	gauge(descCacheBytes, float64(r.Cache.Bytes))
	gauge(descCacheMax, float64(r.Cache.MaxBytes))
	gauge(descCacheFiles, float64(r.Cache.Entries))
	gauge(descCacheDirty, float64(r.Cache.DirtyBytes))
	counter(descCacheHits, float64(r.Cache.Hits))
	counter(descCacheMiss, float64(r.Cache.Misses))
	counter(descCacheEvict, float64(r.Cache.Evictions))
}

// trackerCollector turns a tracker's Stats into metrics at scrape time.
type trackerCollector struct {
	stats func() tracker.Stats
}

var (
	descTrackerPeers  = prometheus.NewDesc("peerfs_tracker_peers", "Peers registered with this tracker (anonymous registrations included).", nil, nil)
	descTrackerInSync = prometheus.NewDesc("peerfs_tracker_sync_rounds_in_progress", "SYNC rounds in progress: 0 or 1 (rounds do not overlap).", nil, nil)
	descTrackerRounds = prometheus.NewDesc("peerfs_tracker_sync_rounds_total", "SYNC rounds started since the tracker started.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *trackerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTrackerPeers
	ch <- descTrackerInSync
	ch <- descTrackerRounds
}

// Collect implements prometheus.Collector.
func (c *trackerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(descTrackerPeers, prometheus.GaugeValue, float64(st.Peers))
	ch <- prometheus.MustNewConstMetric(descTrackerInSync, prometheus.GaugeValue, float64(st.RoundsInProgress))
	ch <- prometheus.MustNewConstMetric(descTrackerRounds, prometheus.CounterValue, float64(st.Rounds))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Server serves /metrics on a TCP address until Close.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error

	closeOnce sync.Once
	closeErr  error
}

// Serve listens on addr (host:port) and serves the registry at /metrics
// (and a short index at /).
func (r *Registry) Serve(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.Handler())
	// Go profiles on the same private address (opt-in with it): heap,
	// goroutine, CPU (/debug/pprof/profile?seconds=N, N below the 30 s
	// WriteTimeout), trace.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("peerfs metrics: see /metrics (and /debug/pprof/)\n"))
	})
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and waits for it. Calling it again returns the
// first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.closeErr = s.srv.Shutdown(ctx)
		if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && s.closeErr == nil {
			s.closeErr = serr
		}
	})
	return s.closeErr
}
