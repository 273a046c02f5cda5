#!/usr/bin/env bash
# bigfile.sh MOUNTDIR BACKDIR [LABEL [PORT]]
#
# Small changes to a large file that the filesystem under test did not write: a 512 MiB file
# is made behind its back (in BACKDIR, the directory MOUNTDIR shows: the export of the peer
# whose folder MOUNTDIR is, sshfs's remote directory, bindfs's source; MOUNTDIR itself for a
# local disk), then changed through MOUNTDIR as dd changes a file in place (write-only open,
# no truncation), each with cold caches:
#   append_big       append 4 KiB (dd oflag=append conv=notrunc)                      s
#   overwrite_mid    overwrite 4 KiB in the middle (dd seek=... conv=notrunc)          s
#   append_big_wire, overwrite_mid_wire   with PORT (the server's TCP port: the peer's
#                    listener, sshd's), the bytes its connections moved both ways
#                    during the change (ss -ti: bytes_acked + bytes_received), in MiB
#   bigfile_verify   1 if BACKDIR's file is the original with both changes, else 0     ok
# STDOUT: machine lines "LABEL workload value unit", as fsbench.sh prints them (bench/table.sh
# reads both); STDERR: progress. Needs root to drop caches (else the numbers are warm).
# Tunables: FSBENCH_BIG_MB=512 (the file's size), FSBENCH_SRC_TMP (where the reference copy
# goes, default /dev/shm), FSBENCH_TIMEOUT=300 (per change, seconds), FSBENCH_NO_DROP=1,
# FSBENCH_BIG_REPEAT=1 (each change made and printed that many times, for bench/compare.sh).
set -u
export LC_ALL=C
[ $# -ge 2 ] || { echo "usage: $0 MOUNTDIR BACKDIR [LABEL [PORT]]" >&2; exit 2; }
MNT=$1 BACK=$2 LABEL=${3:-fs} PORT=${4:-}
SIZE_MB=${FSBENCH_BIG_MB:-512}
WL_TIMEOUT=${FSBENCH_TIMEOUT:-300}
for t in dd cmp timeout awk; do command -v "$t" >/dev/null 2>&1 || { echo "bigfile: missing tool: $t" >&2; exit 2; }; done
[ -z "$PORT" ] || command -v ss >/dev/null 2>&1 || { echo "bigfile: missing tool: ss (iproute2)" >&2; exit 2; }
[ -n "${EPOCHREALTIME:-}" ] || { echo "bigfile: needs bash >= 5 (EPOCHREALTIME)" >&2; exit 2; }
log() { printf '# %s\n' "$*" >&2; }
emit() { printf '%s %s %s %s\n' "$LABEL" "$1" "$2" "$3"; }

if [ -n "${FSBENCH_SRC_TMP:-}" ]; then SRCBASE=$FSBENCH_SRC_TMP
elif [ -d /dev/shm ] && [ -w /dev/shm ]; then SRCBASE=/dev/shm
else SRCBASE=${TMPDIR:-/tmp}; fi
SRC=$(mktemp -d "$SRCBASE/bigfile-src.XXXXXX") || exit 2
W=$(mktemp -d "$MNT/bigfile.XXXXXX") || { rm -rf "$SRC"; echo "bigfile: cannot create a work dir in $MNT" >&2; exit 2; }
NAME=$(basename "$W")
cleanup() { rm -rf "$SRC"; [ -d "$W" ] && timeout -k 5 "$WL_TIMEOUT" rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

DROP_OK=1
if [ -n "${FSBENCH_NO_DROP:-}" ] || [ ! -w /proc/sys/vm/drop_caches ]; then
  DROP_OK=0; log "WARNING: cannot drop caches: the numbers are warm-cache numbers"
fi
drop_caches() { timeout -k 5 120 sync; [ "$DROP_OK" = 1 ] && echo 3 > /proc/sys/vm/drop_caches; return 0; }

# wire_bytes: what the server's established connections on PORT have moved so far, both ways.
wire_bytes() {
  ss -tinH state established "( sport = :$PORT )" 2>/dev/null |
    awk '{ for (i = 1; i <= NF; i++) { if ($i ~ /^bytes_acked:/) { split($i, a, ":"); n += a[2] }
                                        if ($i ~ /^bytes_received:/) { split($i, a, ":"); n += a[2] } } }
         END { printf "%d\n", n }'
}

# change WORKLOAD DD-ARGS...: one timed dd into the file through the mount, and its wire bytes.
change() {
  local wl=$1 t0 t1 b0 b1 rc; shift
  drop_caches
  [ -n "$PORT" ] && b0=$(wire_bytes)
  t0=$EPOCHREALTIME
  timeout -k 5 "$WL_TIMEOUT" dd if="$SRC/4k" of="$W/big.bin" bs=4096 count=1 conv=notrunc status=none "$@"
  rc=$?
  t1=$EPOCHREALTIME
  [ -n "$PORT" ] && b1=$(wire_bytes)
  # The same change to the reference copy, for the check.
  dd if="$SRC/4k" of="$SRC/big.ref" bs=4096 count=1 conv=notrunc status=none "$@"
  if [ $rc = 0 ]; then
    emit "$wl" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')" s
    [ -n "$PORT" ] && emit "${wl}_wire" "$(awk -v a="$b0" -v b="$b1" 'BEGIN{printf "%.3f", (b-a)/1048576}')" MiB
  else
    emit "$wl" NA s
    [ -n "$PORT" ] && emit "${wl}_wire" NA MiB
  fi
}

log "bigfile label=$LABEL dir=$MNT back=$BACK port=${PORT:-none} size=${SIZE_MB}MiB"
head -c "$((SIZE_MB * 1048576))" /dev/urandom > "$SRC/big.ref" || exit 1
head -c 4096 /dev/urandom > "$SRC/4k" || exit 1
# Behind the filesystem's back, as another machine's user (or the file's owner) made it.
cp "$SRC/big.ref" "$BACK/$NAME/big.bin" || { echo "bigfile: cannot write $BACK/$NAME/big.bin" >&2; exit 1; }
sync
sleep 2 # past any attribute or listing cache of the empty directory (peerfs: 1 s)
for ((i = 0; i < ${FSBENCH_BIG_REPEAT:-1}; i++)); do change append_big oflag=append; done
for ((i = 0; i < ${FSBENCH_BIG_REPEAT:-1}; i++)); do change overwrite_mid seek=$((SIZE_MB * 1048576 / 2 / 4096)); done
sync
ok=0
timeout -k 5 "$WL_TIMEOUT" cmp -s "$SRC/big.ref" "$BACK/$NAME/big.bin" && ok=1
[ $ok = 1 ] || log "VERIFY FAILED: $BACK/$NAME/big.bin is not the original with both changes"
emit bigfile_verify "$ok" ok
