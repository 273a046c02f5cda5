// Package e2e holds end-to-end tests: they build the peerfs binary, start
// real trackers, peers and mounts as separate processes on 127.0.0.1, and
// drive them the way a person would: through the command shell, with nc-like
// raw connections, and with ordinary programs (ls, cp, mv, sed, git, tar)
// on real FUSE mounts.
package e2e
