#!/usr/bin/env bash
# bench/profile.sh — where the time goes, for one workload, in alice (the mount) and bob
# (the peer that serves the folder): CPU profiles, FUSE ops and peer requests per file,
# and syscalls (fsync & co.) per file.
#
#   sudo bench/profile.sh small_create     2000 x 4 KiB files, as fsbench.sh's small_create
#   sudo bench/profile.sh seq_write        dd 512 MiB bs=1M conv=fsync, as fsbench.sh's seq_write
#   sudo bench/profile.sh seq_read_cold    drop caches, dd the file back (bs=1M)
#   sudo bench/profile.sh "seq_write seq_read_cold small_create"   several, in order
#   also: small_read stat_heavy ls_l rm_rf rename_editor rand_read_4k cp_tree cp_tree_out
#   (fsbench.sh's commands;
#   ls_l and rm_rf on a PROF_LS_N-entry directory, default 5000; rm_rf of the same)
#
# The workloads are fsbench.sh's own commands (the same perl loop and dd lines), run
# here directly so that metrics and profiles bracket the workload exactly (fsbench's setup
# and cleanup, e.g. its rm -rf, are not in them). Each workload runs twice in a fresh
# cluster (bench/cluster.sh):
#   pass 1: CPU profiles of alice and bob (/debug/pprof/profile?seconds=PROF_SECS, started
#           together with the workload; idle time after it is harmless), and the metrics
#           deltas of alice (peerfs_fuse_ops_total by op, peerfs_peer_requests_total by verb);
#   pass 2: strace -c -f on alice and on bob (syscall counts; strace slows the daemons, so
#           pass 2's time is not quoted).
# Output in OUTDIR (default bench/results/profile-<time>/): WORKLOAD.txt (summary), the
# raw profiles (*.pprof), metrics before/after, strace tables.
#
# Knobs: PROF_N (files, default 2000), PROF_SIZE_MB (default 512), PROF_SECS (default 20,
# must stay below the metrics server's 30 s WriteTimeout), PROF_STRACE=0 (skip pass 2), BIN.
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
CL_NAME=profile
. "$HERE/cluster.sh"
WLS=${1:-small_create seq_write seq_read_cold}
N=${PROF_N:-2000}
SIZE_MB=${PROF_SIZE_MB:-512}
SECS=${PROF_SECS:-20}
OUTDIR=${PROF_OUT:-$HERE/results/profile-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR"; OUTDIR=$(cd "$OUTDIR" && pwd)
TMPW=$(mktemp -d "${BENCH_BASE:-/var/tmp}/peerfs-prof.XXXXXX") || exit 1
SRC=$(mktemp -d /dev/shm/peerfs-prof.XXXXXX) || exit 1
STRACE_PIDS=()
trap 'for p in "${STRACE_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done; cluster_stop; rm -rf --one-file-system "$TMPW" "$SRC"' EXIT
trap 'exit 130' INT TERM HUP
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# the workloads: fsbench.sh's commands
wl_small_create() {
  mkdir -p "$WD/small"
  perl -MTime::HiRes=time -e 'my ($d, $n) = @ARGV; my $data = "x" x 4096;
    open(my $r, "<:raw", "/dev/urandom") or die; sysread($r, $data, 4096) == 4096 or die; close $r;
    my $t0 = time;
    for my $i (0 .. $n - 1) { open(my $fh, ">:raw", "$d/f$i") or die "create: $!"; print $fh $data or die; close($fh) or die "close: $!"; }
    printf "%.3f s, %.1f files/s\n", time - $t0, $n / (time - $t0);' "$WD/small" "$N"
}
wl_seq_write() {
  local t0=$EPOCHREALTIME
  dd if="$SRC/big.src" of="$WD/big.bin" bs=1M conv=fsync status=none || return 1
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v n=$((SIZE_MB * 1048576)) 'BEGIN {printf "%.3f s, %.1f MB/s\n", b - a, n / (b - a) / 1e6}'
}
wl_seq_read_cold() {
  local t0=$EPOCHREALTIME
  dd if="$WD/big.bin" of=/dev/null bs=1M status=none || return 1
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v n=$((SIZE_MB * 1048576)) 'BEGIN {printf "%.3f s, %.1f MB/s\n", b - a, n / (b - a) / 1e6}'
}
LS_N=${PROF_LS_N:-5000}
mkfiles() { # DIR N SIZE
  mkdir -p "$1"
  perl -e 'my ($d, $n, $s) = @ARGV; my $data = "y" x $s;
    for my $i (0 .. $n - 1) { open(my $fh, ">:raw", "$d/f$i") or die "create: $!"; print $fh $data; close($fh) or die "close: $!"; }' "$1" "$2" "$3"
}
timed_n() { # N CMD...: run, print seconds and N/s
  local n=$1 t0=$EPOCHREALTIME; shift
  "$@" || return 1
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$n" 'BEGIN {printf "%.3f s, %.1f per s\n", b - a, n / (b - a)}'
}
catq() { cat "$@" > /dev/null; }
wl_small_read() { (cd "$WD/small" && timed_n "$N" catq $(seq -f 'f%g' 0 $((N - 1)))); }
wl_stat_heavy() {
  perl -MTime::HiRes=time -e 'my ($d, $n, $r) = @ARGV; my @names = map { "$d/f$_" } 0 .. $n - 1; my $t0 = time;
    for (1 .. $r) { for my $f (@names) { my @s = stat($f) or die "stat $f" } }
    printf "%.3f s, %.1f stat/s\n", time - $t0, $n * $r / (time - $t0);' "$WD/small" "$N" 5
}
lsq() { ls -l "$@" > /dev/null; }
wl_ls_l() { timed_n "$LS_N" lsq "$WD/ls"; }
wl_rm_rf() { timed_n "$LS_N" rm -rf "$WD/ls"; }
wl_rename_editor() {
  perl -MTime::HiRes=time -MIO::Handle -e 'my ($d, $n) = @ARGV; my $data = "z" x 4096; my ($o, $t) = ("$d/document.txt", "$d/.document.txt.swp");
    open(my $fh, ">:raw", $o) or die; print $fh $data; close $fh or die; my $t0 = time;
    for my $i (1 .. $n) { open(my $fh, ">:raw", $t) or die; print $fh $data; $fh->flush; $fh->sync or die "fsync: $!"; close($fh) or die; rename($t, $o) or die "rename: $!"; }
    printf "%.3f s, %.1f ops/s\n", time - $t0, $n / (time - $t0);' "$WD" "$RENAME_N"
}
wl_rand_read_4k() {
  fio --name=r --filename="$WD/big.bin" --rw=randread --bs=4k --ioengine=psync --iodepth=1 --size="${SIZE_MB}m" \
    --direct=0 --invalidate=1 --randrepeat=1 --runtime=10 --allow_file_create=0 --output-format=terse --terse-version=3 2>&1 |
    awk -F';' '/^3;/ {printf "%s IOPS, %s reads, mean %.0f us\n", $8, $9 ? int($6 * 1024 / 4096) : "?", $40}'
}
# a tree like fsbench.sh's cp_tree: TREE_N files in dir0..9 (some in sub0/sub1), half of
# them 1-16 KiB, 30 % 16-256 KiB, 10 % 256 KiB-1 MiB, 10 % 1-2 MiB (~54 MiB for 200)
TREE_N=${PROF_TREE_N:-200}
mktree() {
  perl -e 'my ($d, $n) = @ARGV; srand(42); open(my $r, "<:raw", "/dev/urandom") or die; my $pool; read($r, $pool, 2 * 1048576 + 4096);
    for my $i (0 .. $n - 1) { my $b = $i % 10;
      my $size = $b < 5 ? 1024 + int(rand(15 * 1024)) : $b < 8 ? 16384 + int(rand(240 * 1024)) : $b < 9 ? 262144 + int(rand(768 * 1024)) : 1048576 + int(rand(1048576));
      my $sub = "$d/dir" . ($i % 10) . (($i % 3 == 0) ? "/sub" . ($i % 2) : ""); system("mkdir", "-p", $sub) unless -d $sub;
      open(my $fh, ">:raw", "$sub/file$i.dat") or die; print $fh substr($pool, $i % 4096, $size); close $fh or die; }' "$1" "$TREE_N"
}
wl_cp_tree() { timed_n "$TREE_N" cp -r "$SRC/tree" "$WD/tree"; }
wl_cp_tree_out() { rm -rf "$SRC/out"; timed_n "$TREE_N" cp -r "$WD/tree" "$SRC/out"; }
RENAME_N=${PROF_RENAME_N:-500}
# setup (untimed, unprofiled) a workload needs
setup() {
  case $1 in
    seq_write) drop ;;
    seq_read_cold|rand_read_4k) dd if="$SRC/big.src" of="$WD/big.bin" bs=1M conv=fsync status=none; sleep 1; drop ;;
    small_read|stat_heavy) mkfiles "$WD/small" "$N" 4096; sleep 2; drop ;;
    ls_l|rm_rf) mkfiles "$WD/ls" "$LS_N" 0; sleep 2; drop ;;
    cp_tree) rm -rf "$SRC/tree"; mktree "$SRC/tree"; sync ;;
    cp_tree_out) rm -rf "$SRC/tree"; mktree "$SRC/tree"; cp -r "$SRC/tree" "$WD/tree"; sleep 2; drop ;;
    *) sync ;;
  esac
}
per_file() {
  case $1 in
    small_create|small_read) echo "$N" ;;
    stat_heavy) echo $((N * 5)) ;;
    ls_l|rm_rf) echo "$LS_N" ;;
    rename_editor) echo "$RENAME_N" ;;
    cp_tree|cp_tree_out) echo "$TREE_N" ;;
    *) echo 1 ;;
  esac
}

snap() { curl -s "http://$1/metrics" | grep -E '^peerfs_(fuse_ops_total|peer_requests_total|peer_bytes_total|cache_[a-z_]*total|sync_rounds_total|peer_foreign_changes_total|fuse_op_duration_seconds_sum|peer_request_duration_seconds_sum)' ; }
delta() { # BEFORE AFTER DIVISOR: lines "metric{labels} delta per-unit" for changed series
  awk -v div="$3" 'NR == FNR {b[$1] = $2; next} {d = $2 - b[$1]; if (d != 0) printf "  %-78s %12.4g  %10.4g\n", $1, d, d / div}' "$1" "$2"
}

head -c $((SIZE_MB * 1048576)) /dev/urandom > "$SRC/big.src"
{ echo "# $(date -u +%FT%TZ) nproc $(nproc) $(uname -sr) peerfs $(cd "$CL_ROOT" && git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"; } > "$OUTDIR/README.txt"

for wl in $WLS; do
  out=$OUTDIR/$wl.txt
  div=$(per_file "$wl")
  : > "$out"
  # ---- pass 1: profiles + metrics
  cluster_start "$TMPW/c1-$wl" || exit 1
  WD=$ALICE_MNT/bob/prof; mkdir -p "$WD"
  setup "$wl"
  snap "$ALICE_METRICS" > "$OUTDIR/$wl.alice.before"
  echo "# $wl pass 1 (profiled), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  curl -s -o "$OUTDIR/$wl.alice.pprof" "http://$ALICE_METRICS/debug/pprof/profile?seconds=$SECS" & c1=$!
  curl -s -o "$OUTDIR/$wl.bob.pprof" "http://$BOB_METRICS/debug/pprof/profile?seconds=$SECS" & c2=$!
  cpu0=$(awk '{print $14 + $15}' "/proc/$ALICE_PID/stat"); cpub0=$(awk '{print $14 + $15}' "/proc/$BOB_PID/stat")
  t0=$EPOCHREALTIME
  "wl_$wl" | sed 's/^/  result: /' | tee -a "$out"
  t1=$EPOCHREALTIME
  cpu1=$(awk '{print $14 + $15}' "/proc/$ALICE_PID/stat"); cpub1=$(awk '{print $14 + $15}' "/proc/$BOB_PID/stat")
  snap "$ALICE_METRICS" > "$OUTDIR/$wl.alice.after"
  hz=$(getconf CLK_TCK)
  awk -v a="$cpu1" -v b="$cpu0" -v c="$cpub1" -v d="$cpub0" -v hz="$hz" -v w="$(echo "$t1 - $t0" | bc -l)" -v n="$div" \
    'BEGIN {printf "  wall %.2f s; CPU (user+sys) alice %.2f s (%.0f%% of wall), bob %.2f s (%.0f%%); per unit: alice %.0f us, bob %.0f us\n", w, (a-b)/hz, 100*(a-b)/hz/w, (c-d)/hz, 100*(c-d)/hz/w, 1e6*(a-b)/hz/n, 1e6*(c-d)/hz/n}' | tee -a "$out"
  echo "  alice metrics delta (total, per $([ "$div" = 1 ] && echo file || echo "file of $div")):" | tee -a "$out"
  delta "$OUTDIR/$wl.alice.before" "$OUTDIR/$wl.alice.after" "$div" | tee -a "$out"
  wait $c1 $c2
  for who in alice bob; do
    { echo "  --- $who CPU profile, top 35 by flat"; go tool pprof -top -nodecount=35 "$BIN" "$OUTDIR/$wl.$who.pprof" 2>/dev/null | sed 's/^/  /'
      echo "  --- $who CPU profile, top 45 by cum"; go tool pprof -top -cum -nodecount=45 "$BIN" "$OUTDIR/$wl.$who.pprof" 2>/dev/null | sed 's/^/  /'; } >> "$out"
  done
  rm -rf "$WD"
  cluster_stop
  # ---- pass 2: strace
  if [ "${PROF_STRACE:-1}" != 0 ] && command -v strace >/dev/null; then
    cluster_start "$TMPW/c2-$wl" || exit 1
    WD=$ALICE_MNT/bob/prof; mkdir -p "$WD"
    setup "$wl"
    strace -c -f -q -p "$ALICE_PID" -o "$OUTDIR/$wl.alice.strace" & s1=$!
    strace -c -f -q -p "$BOB_PID" -o "$OUTDIR/$wl.bob.strace" & s2=$!
    STRACE_PIDS=("$s1" "$s2"); sleep 1
    echo "# $wl pass 2 (strace -c -f, slowed down)" | tee -a "$out"
    "wl_$wl" | sed 's/^/  result under strace: /' | tee -a "$out"
    kill -INT "$s1" "$s2"; wait "$s1" "$s2" 2>/dev/null; STRACE_PIDS=()
    for who in alice bob; do
      echo "  --- $who syscalls (calls, per unit = calls / $div)" >> "$out"
      awk -v n="$div" '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ {calls=$4; name=$NF; if ($5 ~ /^[0-9]+$/) {} printf "  %-20s %9d %9.2f\n", name, calls, calls / n}' \
        "$OUTDIR/$wl.$who.strace" | sort -k2 -n -r | head -25 >> "$out"
    done
    rm -rf "$WD"
    cluster_stop
  fi
done
echo "results: $OUTDIR" >&2
