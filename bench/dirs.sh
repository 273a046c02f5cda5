#!/usr/bin/env bash
# bench/dirs.sh — directory-making workloads on several peerfs binaries, back to back, each
# in a fresh cluster (bench/cluster.sh), as compare.sh does for fsbench's:
#
#   sudo bench/dirs.sh /tmp/peerfs-old /tmp/peerfs-new ...
#
#   mkdir_p    mkdir -p of DIRS_N directories, DIRS_DEPTH levels deep under DIRS_WIDE tops  s
#   tar_x      tar x of a tree of DIRS_TAR_FILES small files (1-3 KiB) in DIRS_N directories s
#              (tar sets every directory's times at its end)
#   chmod_r    chmod -R of that tree (files and directories)                                s
#   cp_a       cp -a of that tree within the peer folder (mkdirs, files, times, modes)      s
#
# CMP_ROUNDS=N repeats the binaries N times, interleaved. Prints "BINARY workload value unit"
# lines. Needs root (FUSE), fusermount3, perl.
set -u
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
CL_NAME=dirs
. "$HERE/cluster.sh"
export CLUSTER_NO_METRICS=1
DIRS_N=${DIRS_N:-400}
DIRS_WIDE=${DIRS_WIDE:-20}
DIRS_TAR_FILES=${DIRS_TAR_FILES:-800}
TMPW=$(mktemp -d "${BENCH_BASE:-/var/tmp}/peerfs-dirs.XXXXXX") || exit 1
trap 'cluster_stop; rm -rf --one-file-system "$TMPW"' EXIT
trap 'exit 130' INT TERM HUP

# The source tree, once: DIRS_N directories (DIRS_WIDE tops, the rest nested two deep
# under them), DIRS_TAR_FILES files spread over them.
SRC=$TMPW/src
mkdir -p "$SRC/t"
perl -e '
  my ($root, $n, $wide, $files) = @ARGV;
  srand(7);
  my @dirs;
  for my $i (0 .. $wide - 1) { push @dirs, sprintf("d%02d", $i) }
  my $k = 0;
  while (@dirs < $n) {
    my $top = $dirs[$k % $wide];
    push @dirs, sprintf("%s/s%03d", $top, $k);
    push @dirs, sprintf("%s/s%03d/deep", $top, $k) if @dirs < $n;
    $k++;
  }
  mkdir "$root/$_" or die "$root/$_: $!" for @dirs;
  for my $f (0 .. $files - 1) {
    my $d = $dirs[$f % @dirs];
    open my $fh, ">", "$root/$d/f$f" or die $!;
    print $fh "x" x (1024 + int(rand(2048)));
    close $fh;
  }
  open my $l, ">", "$root/../dirlist" or die $!;
  print $l "$_\n" for @dirs;
' "$SRC/t" "$DIRS_N" "$DIRS_WIDE" "$DIRS_TAR_FILES" || exit 1
tar -C "$SRC" -cf "$SRC/t.tar" t

now() { date +%s.%N; }
timed() { # LABEL WORKLOAD COMMAND...
  local label=$1 w=$2 t0 t1
  shift 2
  t0=$(now)
  if "$@" >/dev/null 2>>"$TMPW/dirs.log"; then
    t1=$(now)
    echo "$label $w $(echo "$t1 - $t0" | bc -l | awk '{printf "%.4f", $1}') s"
  else
    echo "$label $w NA s"
  fi
}

for ((r = 1; r <= ${CMP_ROUNDS:-1}; r++)); do
  for b in "$@"; do
    BIN=$b
    label=$(basename "$b")
    cluster_start "$TMPW/c-$r-$label" || { cluster_stop; continue; }
    W=$ALICE_MNT/bob
    sync
    timed "$label" mkdir_p bash -c "cd '$W' && mkdir m && cd m && xargs mkdir -p < '$SRC/dirlist'"
    timed "$label" tar_x tar -C "$W" -xf "$SRC/t.tar"
    timed "$label" chmod_r chmod -R u=rwX,g=rX,o= "$W/t"
    timed "$label" cp_a cp -a "$W/t" "$W/t2"
    # Everything reached bob: the trees match (modes, names; times of directories).
    if ! diff -r "$SRC/t" "$BOB_EXPORT/t2" >/dev/null 2>&1; then
      cl_say "$label: bob's copy of the tree differs from the source"
    fi
    cluster_stop
  done
done
