# bench/cluster.sh — sourced by rss.sh and profile.sh: a throw-away peerfs cluster on
# 127.0.0.1 (a tracker and the mounts alice and bob, each serving an export and mounting the
# other), like bench/run.sh's peerfs part, with --metrics-listen (Prometheus + /debug/pprof)
# on both daemons.
#
#   . bench/cluster.sh
#   cluster_start DIR          sets TRACKER, ALICE_PID, BOB_PID, ALICE_METRICS, BOB_METRICS,
#                              ALICE_MNT (alice's mount; bob's folder is $ALICE_MNT/bob), BOB_EXPORT
#   cluster_stop               SIGTERM the mounts (they drain and unmount), then the tracker
#
# Needs root (FUSE), fusermount3, perl. BIN (default bin/peerfs, built if missing or
# CLUSTER_BUILD=1) is the binary; PEERFS_SECRET is made up if unset, as run.sh does.
# Logs go to DIR/logs/{tracker,alice,bob}.log. CLUSTER_NO_METRICS=1 leaves out --metrics-listen
# (binaries older than 3237eed do not know it). CLUSTER_MOUNT_ARGS (words) are added to both
# `peerfs mount` commands (e.g. "--allow-setuid").
CL_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CL_ROOT=$(cd "$CL_HERE/.." && pwd)
BIN=${BIN:-$CL_ROOT/bin/peerfs}
CL_PIDS=()
CL_MOUNTS=()

cl_say() { printf '[%s %s] %s\n' "${CL_NAME:-cluster}" "$(date +%H:%M:%S)" "$*" >&2; }
cl_free_port() {
  perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1, ReuseAddr => 1) or die "$!"; print $s->sockport, "\n"'
}
cl_alive() { kill -0 -- "$1" 2>/dev/null; }
cl_stop_pid() { # PID [grace]
  local pid=$1 grace=${2:-10} i
  cl_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM -- "$pid" 2>/dev/null
  for ((i = 0; i < grace * 10; i++)); do cl_alive "$pid" || break; sleep 0.1; done
  cl_alive "$pid" && { cl_say "pid $pid ignored SIGTERM, SIGKILL"; kill -KILL -- "$pid" 2>/dev/null; }
  wait "$pid" 2>/dev/null
  return 0
}
cl_mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }

cluster_start() { # DIR
  local d=$1 port name pid i mport
  mkdir -p "$d/logs"
  CL_DIR=$d
  if [ ! -x "$BIN" ] || [ -n "${CLUSTER_BUILD:-}" ]; then
    cl_say "building $BIN"; (cd "$CL_ROOT" && go build -o "$BIN" ./cmd/peerfs) || return 1
  fi
  if [ -z "${PEERFS_SECRET:-}" ] && [ -z "${PEERFS_SECRET_FILE:-}" ] && [ "${PEERFS_INSECURE:-}" != true ]; then
    PEERFS_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'); export PEERFS_SECRET
  fi
  port=$(cl_free_port) || return 1
  TRACKER=127.0.0.1:$port
  "$BIN" tracker --listen "$TRACKER" --log-format console >>"$d/logs/tracker.log" 2>&1 &
  CL_TRACKER_PID=$!; CL_PIDS+=("$CL_TRACKER_PID")
  for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  for name in alice bob; do
    mkdir -p "$d/$name/export" "$d/$name/mnt"
    mport=$(cl_free_port) || return 1
    local mflag=(--metrics-listen "127.0.0.1:$mport")
    [ -n "${CLUSTER_NO_METRICS:-}" ] && mflag=()
    # shellcheck disable=SC2086 # CLUSTER_MOUNT_ARGS is words
    "$BIN" mount --name "$name" --export "$d/$name/export" --tracker "$TRACKER" \
      --listen 127.0.0.1:0 --cache-dir "$d/$name/cache" --log-format console \
      "${mflag[@]}" ${CLUSTER_MOUNT_ARGS:-} "$d/$name/mnt" >>"$d/logs/$name.log" 2>&1 &
    pid=$!; CL_PIDS+=("$pid"); CL_MOUNTS+=("$d/$name/mnt")
    if [ $name = alice ]; then ALICE_PID=$pid; ALICE_METRICS=127.0.0.1:$mport
    else BOB_PID=$pid; BOB_METRICS=127.0.0.1:$mport; fi
  done
  ALICE_MNT=$d/alice/mnt; BOB_EXPORT=$d/bob/export
  for ((i = 0; i < 300; i++)); do
    cl_mounted "$d/alice/mnt" && cl_mounted "$d/bob/mnt" && [ -d "$d/alice/mnt/bob" ] && break
    cl_alive "$ALICE_PID" && cl_alive "$BOB_PID" || break
    sleep 0.1
  done
  [ -d "$d/alice/mnt/bob" ] || { cl_say "cluster did not come up: $(tail -3 "$d/logs/alice.log")"; return 1; }
  cl_say "tracker $TRACKER; alice pid $ALICE_PID metrics $ALICE_METRICS; bob pid $BOB_PID metrics $BOB_METRICS"
}

cluster_stop() {
  local i m
  for ((i = ${#CL_PIDS[@]} - 1; i >= 0; i--)); do cl_stop_pid "${CL_PIDS[$i]}" 20; done
  CL_PIDS=()
  for m in "${CL_MOUNTS[@]}"; do
    cl_mounted "$m" && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null; }
  done
  CL_MOUNTS=()
}

# metric_sum HOSTPORT REGEX: the sum of the samples of the metric lines matching REGEX.
metric_sum() {
  curl -s "http://$1/metrics" | grep -E "$2" | awk '{s += $NF} END {printf "%.0f\n", s}'
}
