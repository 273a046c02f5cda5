#!/usr/bin/env bash
# mount.sh — the one-liner for peerfs.
#
#   ./mount.sh EXPORT_DIR MOUNTPOINT TRACKER_HOST:PORT [peerfs mount flags...]
#       builds peerfs if needed, serves EXPORT_DIR and mounts every connected
#       peer under MOUNTPOINT; Ctrl-C or SIGTERM uploads what is pending and
#       unmounts cleanly. The cluster secret comes from the environment
#       (PEERFS_SECRET) or --secret-file PATH; --insecure runs without one.
#   ./mount.sh --demo
#       starts a tracker and two peers (alice, bob) on 127.0.0.1 with their
#       mounts under a temporary directory, puts a few files in, prints what
#       to try, and cleans everything up on Ctrl-C. The demo's processes
#       share a fresh random cluster secret.
#   ./mount.sh --demo --selftest
#       the same, checks that files cross between the mounts, and exits.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin="$here/bin/peerfs"

# usage prints the header above; asked for (--help) it exits 0, after a
# wrong command line 2.
usage() {
	local code=${1:-2}
	if [ "$code" = 0 ]; then
		sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	else
		sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
	fi
	exit "$code"
}

build() {
	if [ ! -x "$bin" ] || [ -n "$(find "$here" -name '*.go' -newer "$bin" -print -quit)" ] || [ "$here/go.mod" -nt "$bin" ]; then
		command -v go >/dev/null 2>&1 || {
			echo "mount.sh: go not found: install Go $(sed -n 's/^go //p' "$here/go.mod") or newer (https://go.dev/dl/)" >&2
			exit 1
		}
		echo "mount.sh: building $bin (the first build fetches and compiles the modules: a minute or two)..." >&2
		(cd "$here" && exec go build -o "$bin" ./cmd/peerfs) &
		local pid=$! start=$SECONDS next=5
		while kill -0 "$pid" 2>/dev/null; do
			sleep 0.2
			if [ $((SECONDS - start)) -ge "$next" ] && kill -0 "$pid" 2>/dev/null; then
				echo "mount.sh: still building... $((SECONDS - start))s" >&2
				next=$((next + 5))
			fi
		done
		if ! wait "$pid"; then
			echo "mount.sh: the build failed (see above)" >&2
			exit 1
		fi
		echo "mount.sh: built in $((SECONDS - start))s" >&2
	fi
}

need_fuse() {
	if ! command -v fusermount3 >/dev/null 2>&1; then
		echo "mount.sh: fusermount3 not found; install it first: sudo apt-get install -y fuse3" >&2
		exit 1
	fi
	[ -e /dev/fuse ] || { echo "mount.sh: /dev/fuse is missing: this machine cannot mount FUSE filesystems" >&2; exit 1; }
}

# free_port prints a free TCP port on 127.0.0.1.
free_port() {
	local p
	for p in $(seq 17070 17999); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "mount.sh: no free port found" >&2
	exit 1
}

pids=()
cleanup() {
	trap - INT TERM EXIT
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${demo:-}" ]; then
		for m in "$demo"/*/mnt; do
			grep -q " $m " /proc/mounts 2>/dev/null && fusermount3 -u -z "$m" 2>/dev/null || true
		done
		rm -rf "$demo"
	fi
}

wait_mounted() { # mountpoint
	local i
	for i in $(seq 1 100); do
		grep -q " $1 fuse" /proc/mounts && return 0
		sleep 0.1
	done
	echo "mount.sh: $1 did not get mounted; see the logs above" >&2
	return 1
}

wait_for() { # path
	local i
	for i in $(seq 1 100); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	echo "mount.sh: $1 did not appear" >&2
	return 1
}

run_demo() {
	local selftest=${1:-}
	need_fuse
	build
	demo=$(mktemp -d "${TMPDIR:-/tmp}/peerfs-demo.XXXXXX")
	trap 'cleanup; exit 0' INT TERM # stopped as asked: success
	trap cleanup EXIT
	# One cluster: every demo process gets the same fresh random secret.
	PEERFS_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
	export PEERFS_SECRET
	unset PEERFS_SECRET_FILE PEERFS_INSECURE
	local port
	port=$(free_port)
	local tracker="127.0.0.1:$port"
	"$bin" tracker --listen "$tracker" --log-format console >"$demo/tracker.log" 2>&1 &
	pids+=($!)
	for name in alice bob; do
		mkdir -p "$demo/$name/export" "$demo/$name/mnt"
		"$bin" mount --name "$name" --export "$demo/$name/export" --tracker "$tracker" \
			--listen 127.0.0.1:0 --cache-dir "$demo/$name/cache" --log-format console \
			"$demo/$name/mnt" >"$demo/$name.log" 2>&1 &
		pids+=($!)
	done
	echo "hello from alice" >"$demo/alice/export/hello-from-alice.txt"
	mkdir -p "$demo/bob/export/docs"
	echo "bob's notes" >"$demo/bob/export/docs/notes.txt"
	wait_mounted "$demo/alice/mnt"
	wait_mounted "$demo/bob/mnt"
	wait_for "$demo/alice/mnt/bob"
	wait_for "$demo/bob/mnt/alice"

	if [ -n "$selftest" ]; then
		set -x
		ls -l "$demo/alice/mnt" "$demo/alice/mnt/bob"
		cat "$demo/alice/mnt/bob/docs/notes.txt" | grep -q "bob's notes"
		cp "$demo/bob/export/docs/notes.txt" "$demo/alice/mnt/bob/docs/copy.txt"
		echo "written through bob's mount" >"$demo/bob/mnt/alice/from-bob.txt"
		grep -q "written through bob's mount" "$demo/alice/export/from-bob.txt"
		cmp "$demo/bob/export/docs/notes.txt" "$demo/bob/export/docs/copy.txt"
		set +x
		echo "mount.sh: demo selftest passed"
		return 0
	fi
	cat <<MSG

peerfs demo is running (logs in $demo/*.log). Two peers, each mounting the other:

  alice exports $demo/alice/export, mounts $demo/alice/mnt
  bob   exports $demo/bob/export,   mounts $demo/bob/mnt

How each mount is doing:
  $bin status --cache-dir $demo/alice/cache
  $bin status --cache-dir $demo/bob/cache

Try:
  ls -l $demo/alice/mnt/bob
  cat $demo/alice/mnt/bob/docs/notes.txt
  cp /etc/hostname $demo/alice/mnt/bob/     # lands in bob's export
  ls -l $demo/bob/export
  echo hi > $demo/bob/mnt/alice/hi.txt && cat $demo/alice/export/hi.txt
  cd $demo/alice/mnt/bob && git init demo-repo

Press Ctrl-C to stop: everything is unmounted and removed.
MSG
	wait "${pids[0]}"
}

case "${1:-}" in
-h | --help) usage 0 ;;
"") usage 2 ;;
--demo)
	run_demo "${2:-}"
	exit 0
	;;
esac

[ $# -ge 3 ] || usage
export_dir=$1 mountpoint=$2 tracker=$3
shift 3
need_fuse
build
if [ -z "${PEERFS_SECRET:-}${PEERFS_SECRET_FILE:-}" ] && [ "${PEERFS_INSECURE:-}" != true ] &&
	! printf '%s\n' "$@" | grep -Eq '^--(secret-file|insecure)'; then
	echo "mount.sh: no cluster secret: export PEERFS_SECRET (the same for the tracker and every peer)," >&2
	echo "          or pass --secret-file PATH, or --insecure on a trusted network" >&2
	exit 2
fi
mkdir -p "$mountpoint"
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT
"$bin" mount --export "$export_dir" --tracker "$tracker" "$@" "$mountpoint" &
pids+=($!)
wait "${pids[0]}"
