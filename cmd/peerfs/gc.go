package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the garbage collector's growth target (GOGC) of
// every peerfs process unless GOGC is set in the environment.
//
// Go's default, 100, suits a program with a large live heap; a mount
// daemon's is a few MiB, while every FUSE read allocates its size inside
// bazil.org/fuse (Respond copies the reply into a new buffer: 128 KiB per
// 128 KiB read). With GOGC=100 that means a collection every few dozen
// reads and the background scavenger returning the same pages to the
// kernel with madvise between them: a third of the mount's CPU in a
// sequential read (docs/PERFORMANCE.md). 400 collects a fifth as often
// for a heap that stays small in absolute terms (the measured peak RSS
// while copying 2 GiB in and out is in docs/PERFORMANCE.md).
const defaultGCPercent = 400

// tuneGC applies defaultGCPercent unless the user chose with GOGC.
// GOMEMLIMIT, when set, still bounds the heap as the runtime documents.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
