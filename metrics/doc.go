// Package metrics owns the daemon's Prometheus metrics: the collectors,
// a private registry, and the HTTP server for /metrics (--metrics-listen).
//
// The other packages stay free of Prometheus: fusefs reports each FUSE
// request through fusefs.Options.Observe, remote each request to a peer
// through remote.Observer, and the tracker client's callbacks in cmd feed
// the SYNC round metrics; cache, upload and peer gauges are read from a
// remote.Report at scrape time.
package metrics
