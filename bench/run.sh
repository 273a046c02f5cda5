#!/usr/bin/env bash
# bench/run.sh — peerfs against its anchors, in one run (what `make bench` runs).
#
#   bench/run.sh            full sizes (512 MiB sequential file, 2000 small files, ...; ~5-10 min)
#   BENCH_QUICK=1 bench/run.sh   small sizes (64 MiB, 300 small files, 1000-entry ls; a few minutes)
#
# What it does, all on 127.0.0.1 and under one temp dir:
#   1. installs what is missing (apt-get update once, then
#      apt-get install -y fio sshfs bindfs openssh-server fuse3) and builds bin/peerfs;
#   2. runs bench/fsbench.sh (the workloads), then bench/bigfile.sh (4 KiB changes to a 512 MiB
#      file made behind the mount's back: time and, for sshfs and peerfs, bytes on the wire) on,
#      in this order:
#        local   a plain directory on the temp dir's filesystem (the physical limit)
#        bindfs  bindfs -o big_writes passthrough FUSE mount (the cost of FUSE itself)
#        sshfs   sshfs to a private throw-away sshd on 127.0.0.1 (a network filesystem)
#        peerfs  a tracker and two peers (alice, bob) with their mounts; the workloads run
#                in alice's view of bob's folder, MOUNT/bob, so every byte crosses the wire;
#   3. prints one markdown table (bench/table.sh): every workload, the value per target,
#      peerfs's ratio against each anchor, the target from the performance issue, met or not.
#
# Output (OUTDIR, default bench/results/YYYYmmdd-HHMMSS/):
#   results.txt   machine lines "LABEL workload value unit" (fsbench.sh's stdout), every run
#   fsbench.log   fsbench.sh's progress and per-target human tables
#   table.md      the table printed on stdout
#   meta.txt      machine, tool versions, sizes
#   logs/         tracker.log, alice.log, bob.log, bindfs.log, sshfs.log, sshd.log
#
# Environment:
#   BENCH_QUICK=1          small sizes (sets FSBENCH_* defaults below; explicit FSBENCH_* win)
#   BENCH_OUT=DIR          output dir
#   BENCH_TARGETS="..."    subset/order of: local bindfs sshfs peerfs (default: all four)
#   BENCH_RUNS=N           repeat the whole set N times, interleaved; the table shows medians (default 1)
#   BENCH_BASE=DIR         where the temp dir goes (default ${TMPDIR:-/tmp}); its filesystem is "local"
#   BENCH_LOOPFS=SIZE      run every target on a fresh ext4 made with mkfs.ext4's defaults (with a
#                          journal) in a sparse SIZE image (e.g. 16G) in BENCH_BASE, loop-mounted for
#                          the run and removed after it. For a base filesystem without a journal
#                          (meta.txt says which): there every file creation skips the inodes freed in
#                          the last minutes, so each row that creates files pays for the rows that
#                          deleted before it (docs/PERFORMANCE.md, thirteenth session)
#   BENCH_NO_INSTALL=1     never run apt-get (fail on missing tools instead)
#   BENCH_NO_BUILD=1       benchmark bin/peerfs as it is instead of building it first
#   FSBENCH_*              passed to fsbench.sh and bigfile.sh (sizes, FSBENCH_ONLY, FSBENCH_TIMEOUT,
#                          FSBENCH_BIG_MB; see their headers); FSBENCH_ONLY without append_big or
#                          overwrite_mid skips bigfile.sh
#   PEERFS_*               passed to the peerfs daemons (e.g. PEERFS_ATTR_TIMEOUT=5s)
#
# Everything it starts it stops: processes by PID, mounts with fusermount3 -u (then -u -z),
# the temp dir removed, also on Ctrl-C or a failure. Needs root (drop_caches, FUSE, private sshd).
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FSBENCH=$HERE/fsbench.sh
BIGFILE=$HERE/bigfile.sh
BIN=$ROOT/bin/peerfs

TARGETS=${BENCH_TARGETS:-local bindfs sshfs peerfs}
RUNS=${BENCH_RUNS:-1}
BASE=${BENCH_BASE:-${TMPDIR:-/tmp}}
OUTDIR=${BENCH_OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)}

if [ -n "${BENCH_QUICK:-}" ] && [ "${BENCH_QUICK}" != 0 ]; then
  MODE=quick
  export FSBENCH_SIZE_MB=${FSBENCH_SIZE_MB:-64}
  export FSBENCH_SMALL_N=${FSBENCH_SMALL_N:-300}
  export FSBENCH_LS_N=${FSBENCH_LS_N:-1000}
  export FSBENCH_TREE_N=${FSBENCH_TREE_N:-50}
  export FSBENCH_RENAME_N=${FSBENCH_RENAME_N:-100}
  export FSBENCH_RAND_RUNTIME=${FSBENCH_RAND_RUNTIME:-5}
  export FSBENCH_TIMEOUT=${FSBENCH_TIMEOUT:-120}
  export FSBENCH_BIG_MB=${FSBENCH_BIG_MB:-64}
else
  MODE=full
fi

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || say "WARNING: not root: caches cannot be dropped; FUSE mounts, the private sshd or apt-get may fail"

# ---------------------------------------------------------------- dependencies
have() { command -v "$1" >/dev/null 2>&1; }
find_sshd() {
  if have sshd; then command -v sshd; elif [ -x /usr/sbin/sshd ]; then echo /usr/sbin/sshd; fi
}
install_deps() {
  local missing=()
  have fio || missing+=(fio)
  have fusermount3 || missing+=(fuse3)
  case " $TARGETS " in *" sshfs "*)
    have sshfs || missing+=(sshfs)
    [ -n "$(find_sshd)" ] || missing+=(openssh-server)
    have ssh-keygen || missing+=(openssh-server) ;;
  esac
  case " $TARGETS " in *" bindfs "*) have bindfs || missing+=(bindfs) ;; esac
  [ ${#missing[@]} = 0 ] && return 0
  if [ -n "${BENCH_NO_INSTALL:-}" ]; then die "missing: ${missing[*]} (BENCH_NO_INSTALL is set)"; fi
  [ "$(id -u)" = 0 ] || die "missing: ${missing[*]}; install them: sudo apt-get install -y fio sshfs bindfs openssh-server fuse3"
  have apt-get || die "missing: ${missing[*]} and no apt-get to install them"
  say "installing fio sshfs bindfs openssh-server fuse3 (missing: ${missing[*]})"
  # A package's own service (the system sshd) is not wanted: where /usr/sbin/policy-rc.d
  # says no (containers), apt leaves it stopped; we start a private sshd of our own.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio sshfs bindfs openssh-server fuse3 >&2 \
    || die "apt-get install failed"
}
install_deps
for t in perl dd cmp timeout mountpoint findmnt fusermount3 fio; do have "$t" || die "missing tool: $t"; done
[ -e /dev/fuse ] || die "/dev/fuse is missing: this machine cannot mount FUSE filesystems"

case " $TARGETS " in *" peerfs "*)
  if [ -n "${BENCH_NO_BUILD:-}" ]; then
    [ -x "$BIN" ] || die "BENCH_NO_BUILD is set but $BIN does not exist"
    say "using $BIN as it is (BENCH_NO_BUILD)"
  else
    say "building peerfs"
    (cd "$ROOT" && go build -o "$BIN" ./cmd/peerfs) || die "go build ./cmd/peerfs failed"
  fi ;;
esac

mkdir -p "$OUTDIR/logs" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
RESULTS=$OUTDIR/results.txt
FSLOG=$OUTDIR/fsbench.log
LOGS=$OUTDIR/logs
: > "$RESULTS"; : > "$FSLOG"

# ---------------------------------------------------------------- bookkeeping & cleanup
LOOPDIR=
if [ -n "${BENCH_LOOPFS:-}" ]; then
  LOOPDIR=$(mktemp -d "$BASE/peerfs-benchfs.XXXXXX") || die "cannot create a temp dir in $BASE"
  truncate -s "$BENCH_LOOPFS" "$LOOPDIR/img" && mkfs.ext4 -q -F "$LOOPDIR/img" &&
    mkdir "$LOOPDIR/mnt" && mount -o loop "$LOOPDIR/img" "$LOOPDIR/mnt" ||
    { rm -rf "$LOOPDIR"; die "cannot make and mount a $BENCH_LOOPFS ext4 image in $BASE"; }
  BASE=$LOOPDIR/mnt
fi
TMPW=$(mktemp -d "$BASE/peerfs-bench.XXXXXX") || {
  [ -n "$LOOPDIR" ] && { umount "$LOOPDIR/mnt"; rm -rf --one-file-system "$LOOPDIR"; }
  die "cannot create a temp dir in $BASE"
}
chmod 755 "$TMPW"
declare -a PIDS=() MOUNTS=()

pid_alive() { kill -0 -- "$1" 2>/dev/null; }
stop_pid() { # PID or -PGID [grace seconds]: SIGTERM, then SIGKILL after the grace time
  local pid=$1 grace=${2:-10} i
  pid_alive "$pid" || { wait "${pid#-}" 2>/dev/null; return 0; }
  kill -TERM -- "$pid" 2>/dev/null
  for ((i = 0; i < grace * 10; i++)); do pid_alive "$pid" || break; sleep 0.1; done
  if pid_alive "$pid"; then say "pid $pid ignored SIGTERM for ${grace}s, sending SIGKILL"; kill -KILL -- "$pid" 2>/dev/null; fi
  wait "${pid#-}" 2>/dev/null
  return 0
}
forget_pid() { local p keep=(); for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done; PIDS=("${keep[@]}"); }
forget_mount() { local m keep=(); for m in "${MOUNTS[@]}"; do [ "$m" != "$1" ] && keep+=("$m"); done; MOUNTS=("${keep[@]}"); }
is_mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
unmount() { # MNT: fusermount3 -u (retried), then -u -z
  local mnt=$1 i
  for ((i = 0; i < 10; i++)); do
    is_mounted "$mnt" || break
    fusermount3 -u "$mnt" 2>/dev/null && break
    sleep 1
  done
  if is_mounted "$mnt"; then say "WARNING: $mnt still busy, lazy unmount"; fusermount3 -u -z "$mnt" 2>/dev/null; fi
  forget_mount "$mnt"
}
fuse_stop() { # MNT PID: for daemons that exit once unmounted (bindfs, sshfs)
  local mnt=$1 pid=$2 i
  unmount "$mnt"
  for ((i = 0; i < 100; i++)); do pid_alive "$pid" || break; sleep 0.1; done
  stop_pid "$pid" 5; forget_pid "$pid"
}
cleanup() {
  local i
  trap - EXIT INT TERM HUP
  # peerfs mounts first: SIGTERM uploads what is pending and unmounts by itself.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}" 15; done
  PIDS=()
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do unmount "${MOUNTS[$i]}"; done
  [ -n "${TMPW:-}" ] && [ -d "$TMPW" ] && { grep -q " $TMPW/" /proc/mounts && say "WARNING: mounts left under $TMPW"; rm -rf --one-file-system "$TMPW"; }
  if [ -n "$LOOPDIR" ]; then
    umount "$LOOPDIR/mnt" 2>/dev/null || umount -l "$LOOPDIR/mnt" 2>/dev/null
    rm -rf --one-file-system "$LOOPDIR"
  fi
  return 0
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

wait_mount() { # MNT PID [seconds]
  local i
  for ((i = 0; i < ${3:-20} * 10; i++)); do
    is_mounted "$1" && return 0
    pid_alive "$2" || return 1
    sleep 0.1
  done
  return 1
}
free_port() {
  perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1, ReuseAddr => 1) or die "$!"; print $s->sockport, "\n"'
}
prep() { sync; [ -w /proc/sys/vm/drop_caches ] && echo 3 > /proc/sys/vm/drop_caches; sleep 1; }

# ---------------------------------------------------------------- meta data
# base_journal: ", journal: yes|no" for an ext4 base (a journal-less one makes file creation
# dear after deletions: see BENCH_LOOPFS), nothing for others.
base_journal() {
  local dev
  [ "$(findmnt -n -o FSTYPE -T "$BASE")" = ext4 ] || return 0
  dev=$(basename "$(findmnt -n -o SOURCE -T "$BASE")")
  [ -r "/sys/fs/ext4/$dev/journal_task" ] || return 0
  if [ "$(cat "/sys/fs/ext4/$dev/journal_task")" = "<none>" ]; then echo ", journal: no"; else echo ", journal: yes"; fi
}
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $MODE runs: $RUNS targets: $TARGETS"
  echo "sizes: $(env | grep '^FSBENCH_' | sort | tr '\n' ' ')"
  echo "peerfs: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && [ -n "$(git status --porcelain -- '*.go' 2>/dev/null)" ] && echo ' (+ uncommitted .go changes)')"
  echo "go: $(go version)"
  echo "nproc: $(nproc)"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "mem: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "os: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}")"
  echo "basedir fs: $(findmnt -n -o FSTYPE -T "$BASE") on $(findmnt -n -o SOURCE -T "$BASE")$(base_journal)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "fio: $(fio --version 2>&1)"
  have bindfs && echo "bindfs: $(bindfs --version 2>&1 | head -1)"
  have sshfs && echo "sshfs: $(sshfs --version 2>&1 | grep -i 'sshfs version')"
  have ssh && echo "ssh: $(ssh -V 2>&1)"
} > "$OUTDIR/meta.txt"

# ---------------------------------------------------------------- fsbench on one dir
RUN=0
bench() { # DIR LABEL
  say "fsbench $2 (run $RUN) in $1, load $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '# ===== %s run %s start %s load %s\n' "$2" "$RUN" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$FSLOG"
  local out rc t0=$SECONDS pid
  # fsbench runs in a process group of its own, waited for in the background: a signal to
  # this script is handled at once (not after the running workload) and cleanup stops
  # fsbench together with its dd/fio/perl by that group.
  perl -e 'setpgrp(0, 0); exec @ARGV or die "exec $ARGV[0]: $!\n"' -- "$FSBENCH" "$1" "$2" \
    > "$TMPW/fsbench.out" 2>> "$FSLOG" &
  pid=$!; PIDS+=("-$pid")
  wait "$pid"; rc=$?
  forget_pid "-$pid"
  out=$(cat "$TMPW/fsbench.out")
  [ -n "$out" ] && printf '%s\n' "$out" >> "$RESULTS"
  [ $rc = 0 ] || say "fsbench $2 exited $rc (see $FSLOG)"
  say "fsbench $2 done in $((SECONDS - t0)) s: $(printf '%s\n' "$out" | awk '{printf "%s=%s ", $2, $3}')"
}
bigfile() { # DIR BACKDIR LABEL [PORT]
  case " ${FSBENCH_ONLY:-append_big} " in *" append_big "* | *" overwrite_mid "*) ;; *) return 0 ;; esac
  say "bigfile $3 (run $RUN) in $1 (behind it: $2${4:+, port $4})"
  local out rc pid
  perl -e 'setpgrp(0, 0); exec @ARGV or die "exec $ARGV[0]: $!\n"' -- "$BIGFILE" "$@" \
    > "$TMPW/bigfile.out" 2>> "$FSLOG" &
  pid=$!; PIDS+=("-$pid")
  wait "$pid"; rc=$?
  forget_pid "-$pid"
  out=$(cat "$TMPW/bigfile.out")
  [ -n "$out" ] && printf '%s\n' "$out" >> "$RESULTS"
  [ $rc = 0 ] || say "bigfile $3 exited $rc (see $FSLOG)"
  say "bigfile $3: $(printf '%s\n' "$out" | awk '{printf "%s=%s ", $2, $3}')"
}
listen_port() { # PID: the TCP port a daemon listens on (the first, if several)
  ss -tlnpH 2>/dev/null | awk -v p="pid=$1," 'index($0, p) { n = split($4, a, ":"); print a[n]; exit }'
}
na_all() { # LABEL: a target that could not be set up
  local w
  for w in seq_write seq_read_cold rand_read_4k small_create small_read stat_heavy stat_missing \
           ls_l ls_l_warm cp_tree cp_tree_out rename_editor verify rm_rf append_big overwrite_mid; do
    echo "$1 $w NA setup_failed" >> "$RESULTS"
  done
}

# ---------------------------------------------------------------- local
run_local() {
  local d=$TMPW/local
  mkdir -p "$d"; prep
  bench "$d" local
  bigfile "$d" "$d" local
  rm -rf "$d"
}

# ---------------------------------------------------------------- bindfs
run_bindfs() {
  local src=$TMPW/bindfs_src mnt=$TMPW/bindfs_mnt pid
  mkdir -p "$src" "$mnt"
  # -o big_writes: Debian's bindfs uses libfuse 2, which otherwise writes 4 KiB per request.
  bindfs -f -o big_writes "$src" "$mnt" >>"$LOGS/bindfs.log" 2>&1 &
  pid=$!; PIDS+=("$pid"); MOUNTS+=("$mnt")
  if wait_mount "$mnt" "$pid"; then
    say "bindfs pid $pid mounted"; prep
    bench "$mnt" bindfs
    bigfile "$mnt" "$src" bindfs
  else say "bindfs mount failed: $(tail -3 "$LOGS/bindfs.log")"; na_all bindfs; fi
  fuse_stop "$mnt" "$pid"
  rm -rf "$src"; rmdir "$mnt" 2>/dev/null
}

# ---------------------------------------------------------------- sshfs (private sshd)
SSHD_PID=""; SSH_PORT=""
SSHDIR=$TMPW/ssh
start_sshd() {
  [ -n "$SSHD_PID" ] && pid_alive "$SSHD_PID" && return 0
  local sshd i
  sshd=$(find_sshd)
  [ -n "$sshd" ] || { say "sshd not found"; return 1; }
  mkdir -p "$SSHDIR"; chmod 700 "$SSHDIR"
  rm -f "$SSHDIR/hostkey" "$SSHDIR/hostkey.pub" "$SSHDIR/id" "$SSHDIR/id.pub"
  ssh-keygen -q -t ed25519 -N '' -f "$SSHDIR/hostkey" -C peerfs-bench-host >/dev/null || return 1
  ssh-keygen -q -t ed25519 -N '' -f "$SSHDIR/id" -C peerfs-bench-client >/dev/null || return 1
  cp "$SSHDIR/id.pub" "$SSHDIR/authorized_keys"
  # sshd's privilege-separation dir, normally made by the openssh-server service. Created if
  # missing and left in place: another sshd on the machine may rely on it.
  [ -d /run/sshd ] || { mkdir -p /run/sshd && chmod 755 /run/sshd; }
  SSH_PORT=$(free_port) || return 1
  cat > "$SSHDIR/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHDIR/hostkey
PidFile none
AuthorizedKeysFile $SSHDIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
  "$sshd" -t -f "$SSHDIR/sshd_config" 2>>"$LOGS/sshd.log" || { say "sshd config test failed: $(tail -3 "$LOGS/sshd.log")"; return 1; }
  "$sshd" -D -e -f "$SSHDIR/sshd_config" 2>>"$LOGS/sshd.log" &
  SSHD_PID=$!; PIDS+=("$SSHD_PID")
  for ((i = 0; i < 100; i++)); do
    ssh -F /dev/null -i "$SSHDIR/id" -p "$SSH_PORT" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no \
      -o BatchMode=yes -o LogLevel=ERROR root@127.0.0.1 true 2>/dev/null \
      && { say "sshd pid $SSHD_PID on 127.0.0.1:$SSH_PORT"; return 0; }
    pid_alive "$SSHD_PID" || break
    sleep 0.2
  done
  say "sshd did not come up: $(tail -5 "$LOGS/sshd.log")"
  return 1
}
stop_sshd() { [ -n "$SSHD_PID" ] && { stop_pid "$SSHD_PID"; forget_pid "$SSHD_PID"; SSHD_PID=""; }; return 0; }

run_sshfs() {
  local remote=$TMPW/sshfs_remote mnt=$TMPW/sshfs_mnt pid
  start_sshd || { na_all sshfs; return; }
  mkdir -p "$remote" "$mnt"
  sshfs -f "root@127.0.0.1:$remote" "$mnt" -p "$SSH_PORT" -F /dev/null \
    -o "IdentityFile=$SSHDIR/id,UserKnownHostsFile=/dev/null,StrictHostKeyChecking=no,BatchMode=yes,LogLevel=ERROR" \
    -o reconnect,ServerAliveInterval=15,ServerAliveCountMax=3 >>"$LOGS/sshfs.log" 2>&1 &
  pid=$!; PIDS+=("$pid"); MOUNTS+=("$mnt")
  if wait_mount "$mnt" "$pid"; then
    say "sshfs pid $pid mounted"; prep
    bench "$mnt" sshfs
    bigfile "$mnt" "$remote" sshfs "$SSH_PORT"
  else say "sshfs mount failed: $(tail -3 "$LOGS/sshfs.log")"; na_all sshfs; fi
  fuse_stop "$mnt" "$pid"
  rm -rf "$remote"; rmdir "$mnt" 2>/dev/null
  stop_sshd
}

# ---------------------------------------------------------------- peerfs (tracker + alice + bob)
run_peerfs() {
  local d=$TMPW/peerfs port tracker tpid name pid mpids=() ok=1 i
  mkdir -p "$d"
  port=$(free_port) || { na_all peerfs; return; }
  tracker=127.0.0.1:$port
  # The daemons refuse to run without a cluster secret (or --insecure):
  # measure the secure default, with a throw-away secret unless one is set.
  if [ -z "${PEERFS_SECRET:-}" ] && [ -z "${PEERFS_SECRET_FILE:-}" ] && [ "${PEERFS_INSECURE:-}" != true ]; then
    PEERFS_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    export PEERFS_SECRET
  fi
  "$BIN" tracker --listen "$tracker" --log-format console >>"$LOGS/tracker.log" 2>&1 &
  tpid=$!; PIDS+=("$tpid")
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    pid_alive "$tpid" || break
    sleep 0.1
  done
  for name in alice bob; do
    mkdir -p "$d/$name/export" "$d/$name/mnt"
    "$BIN" mount --name "$name" --export "$d/$name/export" --tracker "$tracker" \
      --listen 127.0.0.1:0 --cache-dir "$d/$name/cache" --log-format console \
      "$d/$name/mnt" >>"$LOGS/$name.log" 2>&1 &
    pid=$!; PIDS+=("$pid"); MOUNTS+=("$d/$name/mnt"); mpids+=("$pid")
  done
  for i in 0 1; do
    name=$([ $i = 0 ] && echo alice || echo bob)
    wait_mount "$d/$name/mnt" "${mpids[$i]}" 30 || { say "peerfs: $name did not mount: $(tail -3 "$LOGS/$name.log")"; ok=0; }
  done
  if [ $ok = 1 ]; then
    # alice sees bob's folder once bob has registered with the tracker.
    for ((i = 0; i < 300; i++)); do [ -d "$d/alice/mnt/bob" ] && break; sleep 0.1; done
    [ -d "$d/alice/mnt/bob" ] || { say "peerfs: $d/alice/mnt/bob did not appear: $(tail -3 "$LOGS/alice.log")"; ok=0; }
  fi
  if [ $ok = 1 ]; then
    say "peerfs: tracker pid $tpid on $tracker, alice pid ${mpids[0]}, bob pid ${mpids[1]}; benchmarking alice's view of bob"
    prep
    bench "$d/alice/mnt/bob" peerfs
    bigfile "$d/alice/mnt/bob" "$d/bob/export" peerfs "$(listen_port "${mpids[1]}")"
  else
    na_all peerfs
  fi
  # SIGTERM: each mount uploads what is pending (--drain-timeout, 10 s) and unmounts itself.
  for ((i = ${#mpids[@]} - 1; i >= 0; i--)); do stop_pid "${mpids[$i]}" 20; forget_pid "${mpids[$i]}"; done
  for name in bob alice; do unmount "$d/$name/mnt"; done
  stop_pid "$tpid" 5; forget_pid "$tpid"
  for name in alice bob; do
    grep -Eiq '"level":"(error|warn)"|\b(ERR|WRN|panic)\b' "$LOGS/$name.log" 2>/dev/null \
      && say "peerfs: $name logged errors/warnings (first: $(grep -Ei -m1 '"level":"(error|warn)"|\b(ERR|WRN|panic)\b' "$LOGS/$name.log" | cut -c1-200))"
  done
  rm -rf --one-file-system "$d"
}

# ---------------------------------------------------------------- the runs
say "mode $MODE, targets: $TARGETS, runs: $RUNS, output: $OUTDIR"
for ((RUN = 1; RUN <= RUNS; RUN++)); do
  for t in $TARGETS; do
    case $t in
      local) run_local ;;
      bindfs) run_bindfs ;;
      sshfs) run_sshfs ;;
      peerfs) run_peerfs ;;
      *) say "unknown target $t (known: local bindfs sshfs peerfs)" ;;
    esac
  done
done

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUTDIR/meta.txt"
"$HERE/table.sh" "$RESULTS" > "$OUTDIR/table.md"
cleanup
say "results in $OUTDIR"
cat "$OUTDIR/table.md"
