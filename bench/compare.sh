#!/usr/bin/env bash
# bench/compare.sh — the same fsbench workloads on several peerfs binaries, back to back,
# each in a fresh cluster (bench/cluster.sh), to measure what a change bought.
#
#   sudo bench/compare.sh /tmp/peerfs-old /tmp/peerfs-new ...
#
# Build an old commit without touching the work tree:
#   mkdir /tmp/old && git archive COMMIT | tar -x -C /tmp/old && (cd /tmp/old && go build -o /tmp/peerfs-COMMIT ./cmd/peerfs)
# FSBENCH_ONLY (default "small_create rename_editor rm_rf"; append_big or overwrite_mid in
# it runs bench/bigfile.sh too, FSBENCH_BIG_REPEAT times each) and the other FSBENCH_* knobs
# pass through; CMP_ROUNDS=N repeats the binaries N times, interleaved. Prints
# "BINARY workload value unit" lines.
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
CL_NAME=compare
. "$HERE/cluster.sh"
export FSBENCH_ONLY=${FSBENCH_ONLY:-small_create rename_editor rm_rf}
export CLUSTER_NO_METRICS=1
TMPW=$(mktemp -d "${BENCH_BASE:-/var/tmp}/peerfs-cmp.XXXXXX") || exit 1
trap 'cluster_stop; rm -rf --one-file-system "$TMPW"' EXIT
trap 'exit 130' INT TERM HUP
for ((r = 1; r <= ${CMP_ROUNDS:-1}; r++)); do
  for b in "$@"; do
    BIN=$b
    cluster_start "$TMPW/c-$r-$(basename "$b")" || { cluster_stop; continue; }
    sync; echo 3 > /proc/sys/vm/drop_caches
    cl_say "$(basename "$b"): load $(cut -d' ' -f1-3 /proc/loadavg)"
    if ! "$HERE/fsbench.sh" "$ALICE_MNT/bob" "$(basename "$b")" 2>>"$TMPW/fsbench.log"; then
      cl_say "fsbench failed on $(basename "$b"):"; tail -5 "$TMPW/fsbench.log" >&2
    fi
    case " $FSBENCH_ONLY " in *" append_big "* | *" overwrite_mid "*)
      if ! "$HERE/bigfile.sh" "$ALICE_MNT/bob" "$BOB_EXPORT" "$(basename "$b")" 2>>"$TMPW/fsbench.log"; then
        cl_say "bigfile failed on $(basename "$b"):"; tail -5 "$TMPW/fsbench.log" >&2
      fi ;;
    esac
    cluster_stop
  done
done
