// Package bench holds peerfs's benchmarks that span packages: GET and PUT
// over loopback through the real peer server and client, next to a plain
// TCP transfer of the same bytes, so results read as ratios
// (loopback_test.go). It has no non-test code.
//
// The filesystem benchmark against sshfs, bindfs and the local disk is
// run.sh (`make bench`, `make bench-quick`); `make benchstat` runs the Go
// benchmarks of this package, peerproto and cache and formats them with
// benchstat.
package bench
