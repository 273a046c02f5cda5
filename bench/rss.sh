#!/usr/bin/env bash
# bench/rss.sh — peak memory of the mount daemon while a big file is copied in and out.
#
#   sudo bench/rss.sh            2048 MiB and 512 MiB files (RSS_SIZES_MB="2048 512")
#
# Starts a tracker and the mounts alice and bob (bench/cluster.sh), then for each size:
#   in:   cp SRC  alice/mnt/bob/f     (written into alice's cache, uploaded to bob on close)
#   out:  drop caches, cp alice/mnt/bob/f  OUT   (read from bob by ranged GET)
# and samples alice's daemon's /proc/PID/status every 50 ms: VmHWM (peak RSS, reset with
# `echo 5 > /proc/PID/clear_refs` before each copy) and the largest VmRSS seen. Prints one
# line per copy, and saves alice's heap profile (/debug/pprof/heap, inuse and alloc, top)
# after each copy into OUTDIR. The source files are made once on the local disk
# (head -c from /dev/urandom) under RSS_SRC_DIR (default /var/tmp/peerfs-rss) and kept.
#
# Target: peak RSS < 100 MiB and not growing with the file size.
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
CL_NAME=rss
. "$HERE/cluster.sh"
SIZES=${RSS_SIZES_MB:-2048 512}
SRCDIR=${RSS_SRC_DIR:-/var/tmp/peerfs-rss}
OUTDIR=${RSS_OUT:-$HERE/results/rss-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR" "$SRCDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
TMPW=$(mktemp -d "${BENCH_BASE:-/var/tmp}/peerfs-rss.XXXXXX") || exit 1
trap 'cluster_stop; rm -rf --one-file-system "$TMPW"' EXIT
trap 'exit 130' INT TERM HUP

for mb in $SIZES; do
  f=$SRCDIR/src-$mb.bin
  if [ "$(stat -c %s "$f" 2>/dev/null)" != $((mb * 1048576)) ]; then
    cl_say "making $f"; head -c $((mb * 1048576)) /dev/urandom > "$f" || exit 1
  fi
done
cluster_start "$TMPW" || exit 1

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# sample PID OUTFILE: until killed, max VmRSS (KiB) written on exit
sample() {
  local pid=$1 out=$2 max=0 r
  trap 'echo $max > "$out"; exit 0' TERM
  while :; do
    r=$(kib "$pid" VmRSS); [ -n "$r" ] && [ "$r" -gt "$max" ] && max=$r
    sleep 0.05
  done
}
measure() { # LABEL CMD...: copy with sampling, prints "LABEL secs MB/s hwm_MiB maxrss_MiB"
  local label=$1; shift
  local t0 t1 spid hwm max bytes=$((MB * 1048576))
  echo 5 > "/proc/$ALICE_PID/clear_refs"   # reset VmHWM
  local base; base=$(kib "$ALICE_PID" VmRSS)
  sample "$ALICE_PID" "$TMPW/max" & spid=$!
  t0=$EPOCHREALTIME
  "$@" || cl_say "$label: copy failed"
  t1=$EPOCHREALTIME
  hwm=$(kib "$ALICE_PID" VmHWM)
  kill -TERM "$spid"; wait "$spid" 2>/dev/null; max=$(cat "$TMPW/max")
  printf '%-8s %6d MiB  %6.2f s  %7.1f MB/s  VmRSS before %5.1f MiB  VmHWM %6.1f MiB  max VmRSS %6.1f MiB\n' \
    "$label" "$MB" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$bytes / ($t1 - $t0) / 1000000" | bc -l)" \
    "$(echo "$base / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" "$(echo "$max / 1024" | bc -l)" | tee -a "$OUTDIR/rss.txt"
  curl -s -o "$OUTDIR/heap-$label-$MB.pb.gz" "http://$ALICE_METRICS/debug/pprof/heap"
  curl -s "http://$ALICE_METRICS/metrics" | grep -E '^go_memstats_(heap_inuse|heap_sys|sys|next_gc)_bytes|^process_resident' \
    > "$OUTDIR/memstats-$label-$MB.txt"
}

{
  echo "# $(date -u +%FT%TZ) nproc $(nproc) $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) $(uname -sr) load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# peerfs $(cd "$CL_ROOT" && git rev-parse --short HEAD) src on $(findmnt -n -o FSTYPE,SOURCE -T "$SRCDIR" | tr -s ' ')"
} | tee "$OUTDIR/rss.txt"
for MB in $SIZES; do
  sync; echo 3 > /proc/sys/vm/drop_caches
  measure in cp "$SRCDIR/src-$MB.bin" "$ALICE_MNT/bob/f-$MB"
  sync; echo 3 > /proc/sys/vm/drop_caches
  measure out cp "$ALICE_MNT/bob/f-$MB" "$TMPW/out-$MB"
  cmp -s "$SRCDIR/src-$MB.bin" "$TMPW/out-$MB" && echo "verify   $MB MiB ok" | tee -a "$OUTDIR/rss.txt" \
    || echo "verify   $MB MiB MISMATCH" | tee -a "$OUTDIR/rss.txt"
  rm -f "$TMPW/out-$MB" "$ALICE_MNT/bob/f-$MB"
done
for p in "$OUTDIR"/heap-*.pb.gz; do
  { echo "== $(basename "$p") inuse_space"; go tool pprof -top -sample_index=inuse_space "$BIN" "$p" 2>/dev/null | head -15
    echo "== $(basename "$p") alloc_space"; go tool pprof -top -sample_index=alloc_space "$BIN" "$p" 2>/dev/null | head -15; } >> "$OUTDIR/heap-top.txt"
done
echo "load at end $(cut -d' ' -f1-3 /proc/loadavg); heap profiles: $OUTDIR/heap-top.txt" | tee -a "$OUTDIR/rss.txt"
