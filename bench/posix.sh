#!/usr/bin/env bash
# bench/posix.sh — the POSIX conformance count (bench/posixcheck) of a local directory, a peer
# folder and, where installed, bindfs and sshfs, side by side (what `make posix-check` runs).
#
#   bench/posix.sh                                   every target below that can be set up
#   POSIX_TARGETS="local peerfs" bench/posix.sh      a subset, in this order
#
# Targets:
#   local            a directory under the temp dir (every case passes: the reference)
#   peerfs           alice's view of bob's folder (bench/cluster.sh: a tracker and two mounts),
#                    default settings, mounted with --allow-other (the test users enter the folder)
#   peerfs-trusting  the same with both peers trusting the cluster: --allow-setuid, --owners,
#                    --allow-devices (those of them this peerfs knows; the others are named)
#   bindfs           bindfs -o allow_other of a local directory: a FUSE passthrough
#   sshfs            sshfs -o allow_other to a private throw-away sshd on 127.0.0.1
# bindfs and sshfs are skipped with a message when not installed
# (apt-get install -y bindfs sshfs openssh-server).
#
# Output: POSIX_OUT (default bench/results/posix-<time>/) holds <target>.txt, posixcheck's
# whole output (the failing cases and a count per group), logs/, and table.md, printed on
# stdout: failures per group and target. POSIX_RUN=REGEXP passes -run to posixcheck.
#
# Needs root (FUSE, the test users' setresuid, a private sshd). Everything it starts it stops:
# processes by PID, mounts with fusermount3 -u (then -u -z); the temp dir is removed.
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TARGETS=${POSIX_TARGETS:-local peerfs peerfs-trusting bindfs sshfs}
OUTDIR=${POSIX_OUT:-$HERE/results/posix-$(date +%Y%m%d-%H%M%S)}
BASE=${TMPDIR:-/tmp}
mkdir -p "$OUTDIR/logs" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
LOGS=$OUTDIR/logs

say() { printf '[posix %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ "$(id -u)" = 0 ] || say "WARNING: not root: FUSE mounts and the cases with other users will fail or be skipped"

TMPW=$(mktemp -d "$BASE/peerfs-posix.XXXXXX") || exit 2
chmod 755 "$TMPW" # the test users reach the targets through it
PIDS=()
MOUNTS=()
# shellcheck source=bench/cluster.sh
. "$HERE/cluster.sh"
pid_alive() { kill -0 "$1" 2>/dev/null; }
is_mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
stop_pid() { cl_stop_pid "$@"; }
unmount() {
  local i
  for ((i = 0; i < 10; i++)); do
    is_mounted "$1" || return 0
    fusermount3 -u "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  say "WARNING: $1 still busy, lazy unmount"; fusermount3 -u -z "$1" 2>/dev/null
}
cleanup() {
  local i
  trap - EXIT INT TERM HUP
  cluster_stop 2>/dev/null
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}" 10; done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do unmount "${MOUNTS[$i]}"; done
  grep -q " $TMPW/" /proc/mounts && say "WARNING: mounts left under $TMPW"
  rm -rf --one-file-system "$TMPW"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP
wait_mount() { # MNT PID
  local i
  for ((i = 0; i < 200; i++)); do
    is_mounted "$1" && return 0
    pid_alive "$2" || return 1
    sleep 0.1
  done
  return 1
}

say "building bin/peerfs and posixcheck"
(cd "$ROOT" && go build -o bin/peerfs ./cmd/peerfs && go build -o "$TMPW/posixcheck" ./bench/posixcheck) || exit 2
BIN=$ROOT/bin/peerfs
has_flag() { "$BIN" mount --help 2>&1 | grep -q -- "^  $1 "; }

check() { # DIR TARGET
  local rc
  say "posixcheck $2 in $1"
  "$TMPW/posixcheck" ${POSIX_RUN:+-run "$POSIX_RUN"} "$1" > "$OUTDIR/$2.txt" 2>> "$LOGS/posixcheck.log"
  rc=$?
  if [ $rc -gt 1 ]; then say "posixcheck $2 could not run (exit $rc): $(tail -2 "$LOGS/posixcheck.log")"; echo "not run" > "$OUTDIR/$2.txt"; fi
  say "$2: $(tail -1 "$OUTDIR/$2.txt")"
}
not_run() { say "$1: not run: $2"; echo "not run: $2" > "$OUTDIR/$1.txt"; }

run_local() { mkdir -p "$TMPW/local" && check "$TMPW/local" local; }

run_peerfs() { # TARGET FLAGS...
  local target=$1 f args=() missing=()
  shift
  for f in "$@"; do if has_flag "$f"; then args+=("$f"); else missing+=("$f"); fi; done
  [ ${#missing[@]} -gt 0 ] && say "$target: this peerfs has no ${missing[*]} (issue #12); running without"
  CL_NAME=$target CLUSTER_NO_METRICS=1 CLUSTER_MOUNT_ARGS="${args[*]}" cluster_start "$TMPW/$target" 2>>"$LOGS/cluster.log" \
    || { not_run "$target" "the cluster did not come up (logs in $TMPW/$target/logs)"; cluster_stop; return; }
  check "$ALICE_MNT/bob" "$target"
  cluster_stop 2>/dev/null
  cp -r "$TMPW/$target/logs" "$LOGS/$target"
}

run_bindfs() {
  local src=$TMPW/bindfs-src mnt=$TMPW/bindfs-mnt pid
  command -v bindfs >/dev/null || { not_run bindfs "bindfs is not installed"; return; }
  mkdir -p "$src" "$mnt"
  bindfs -f -o allow_other "$src" "$mnt" >>"$LOGS/bindfs.log" 2>&1 &
  pid=$!; PIDS+=("$pid"); MOUNTS+=("$mnt")
  if wait_mount "$mnt" "$pid"; then check "$mnt" bindfs; else not_run bindfs "mount failed: $(tail -1 "$LOGS/bindfs.log")"; fi
  unmount "$mnt"; stop_pid "$pid" 5
}

# A private sshd on 127.0.0.1 (as bench/run.sh has one), for sshfs.
SSHDIR=$TMPW/ssh
start_sshd() {
  local sshd i
  sshd=$(command -v sshd || echo /usr/sbin/sshd)
  [ -x "$sshd" ] || return 1
  mkdir -p "$SSHDIR"; chmod 700 "$SSHDIR"
  ssh-keygen -q -t ed25519 -N '' -f "$SSHDIR/hostkey" >/dev/null && ssh-keygen -q -t ed25519 -N '' -f "$SSHDIR/id" >/dev/null || return 1
  cp "$SSHDIR/id.pub" "$SSHDIR/authorized_keys"
  # sshd's privilege-separation dir, normally made by its service; left in place (another
  # sshd may rely on it).
  [ -d /run/sshd ] || { mkdir -p /run/sshd && chmod 755 /run/sshd; }
  SSH_PORT=$(cl_free_port) || return 1
  printf '%s\n' "Port $SSH_PORT" "ListenAddress 127.0.0.1" "HostKey $SSHDIR/hostkey" "PidFile none" \
    "AuthorizedKeysFile $SSHDIR/authorized_keys" "PermitRootLogin prohibit-password" "PasswordAuthentication no" \
    "KbdInteractiveAuthentication no" "UsePAM no" "StrictModes no" "Subsystem sftp internal-sftp" "LogLevel ERROR" \
    > "$SSHDIR/sshd_config"
  "$sshd" -D -e -f "$SSHDIR/sshd_config" 2>>"$LOGS/sshd.log" &
  SSHD_PID=$!; PIDS+=("$SSHD_PID")
  for ((i = 0; i < 100; i++)); do
    ssh -F /dev/null -i "$SSHDIR/id" -p "$SSH_PORT" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no \
      -o BatchMode=yes -o LogLevel=ERROR root@127.0.0.1 true 2>/dev/null && return 0
    pid_alive "$SSHD_PID" || return 1
    sleep 0.2
  done
  return 1
}
run_sshfs() {
  local remote=$TMPW/sshfs-remote mnt=$TMPW/sshfs-mnt pid
  command -v sshfs >/dev/null || { not_run sshfs "sshfs is not installed"; return; }
  start_sshd || { not_run sshfs "the private sshd did not start: $(tail -1 "$LOGS/sshd.log" 2>/dev/null)"; return; }
  mkdir -p "$remote" "$mnt"
  sshfs -f "root@127.0.0.1:$remote" "$mnt" -p "$SSH_PORT" -F /dev/null -o allow_other \
    -o "IdentityFile=$SSHDIR/id,UserKnownHostsFile=/dev/null,StrictHostKeyChecking=no,BatchMode=yes,LogLevel=ERROR" \
    >>"$LOGS/sshfs.log" 2>&1 &
  pid=$!; PIDS+=("$pid"); MOUNTS+=("$mnt")
  if wait_mount "$mnt" "$pid"; then check "$mnt" sshfs; else not_run sshfs "mount failed: $(tail -1 "$LOGS/sshfs.log")"; fi
  unmount "$mnt"; stop_pid "$pid" 5; stop_pid "$SSHD_PID" 5
}

for t in $TARGETS; do
  case $t in
    local) run_local ;;
    peerfs) run_peerfs peerfs --allow-other ;;
    peerfs-trusting) run_peerfs peerfs-trusting --allow-other --allow-setuid --owners --allow-devices ;;
    bindfs) run_bindfs ;;
    sshfs) run_sshfs ;;
    *) say "unknown target $t (known: local peerfs peerfs-trusting bindfs sshfs)" ;;
  esac
done

# The table: failures per group (rows) and target (columns), from posixcheck's group lines.
{
  printf '| group |'; for t in $TARGETS; do printf ' %s |' "$t"; done; echo
  printf '|---|'; for t in $TARGETS; do printf '%s' '---:|'; done; echo
  groups=$(awk '/^group +cases +failed$/ {on = 1; next} /^posixcheck / {on = 0} on {print $1 " (" $2 ")"}' \
    "$OUTDIR"/*.txt | sort -u)
  while read -r g n; do
    [ -n "$g" ] || continue
    printf '| %s %s |' "$g" "$n"
    for t in $TARGETS; do
      printf ' %s |' "$(awk -v g="$g" '/^group +cases +failed$/ {on = 1; next} /^posixcheck / {on = 0} on && $1 == g {print $3}' "$OUTDIR/$t.txt" 2>/dev/null | grep . || echo -)"
    done
    echo
  done <<< "$groups"
  printf '| **failed** |'
  for t in $TARGETS; do
    printf ' **%s** |' "$(sed -n 's/^posixcheck .*: \([0-9]*\) cases, \([0-9]*\) failed.*/\2 of \1/p' "$OUTDIR/$t.txt" 2>/dev/null | grep . || echo 'not run')"
  done
  echo
} > "$OUTDIR/table.md"
cat "$OUTDIR/table.md"
say "posixcheck's output per target in $OUTDIR"
