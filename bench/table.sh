#!/usr/bin/env bash
# bench/table.sh RESULTS_FILE...
#
# Turns fsbench.sh machine lines ("LABEL workload value unit"; other lines are ignored) into
# one markdown table: a row per workload, the value per target (peerfs, sshfs, bindfs, local;
# the median when a file holds several runs), peerfs's ratio against each anchor
# (peerfs value / anchor value), the target from the performance issue and whether it is met.
# A ratio above 1 means peerfs is higher: better for rates (MB/s, IOPS, files/s, ops/s),
# worse for times (s, us).
#
# Environment: TABLE_SUBJECT (default peerfs), TABLE_ANCHORS (default "sshfs bindfs local").
set -u
[ $# -ge 1 ] || { echo "usage: $0 RESULTS_FILE..." >&2; exit 2; }
LC_ALL=C awk -v subject="${TABLE_SUBJECT:-peerfs}" -v anchors="${TABLE_ANCHORS:-sshfs bindfs local}" '
BEGIN {
  # The targets of the performance issue: workload -> op factor anchor.
  tgt["seq_write"]     = ">= 0.9 bindfs"
  tgt["seq_read_cold"] = ">= 0.9 bindfs"
  tgt["rand_read_4k"]  = ">= 2 sshfs"
  tgt["small_create"]  = ">= 1.5 sshfs"
  tgt["small_read"]    = ">= 2 sshfs"
  tgt["stat_heavy"]    = ">= 1.5 sshfs"
  tgt["stat_missing"]  = ">= 2 sshfs"
  tgt["ls_l"]          = "<= 0.5 sshfs"
  tgt["cp_tree"]       = "<= 0.5 sshfs"
  tgt["cp_tree_out"]   = "<= 0.5 sshfs"
  tgt["rename_editor"] = ">= 1.5 sshfs"
  tgt["rm_rf"]         = "<= 0.5 sshfs"
  tgt["verify"]        = "= 1 -"
  tgt["append_big"]         = "<= 2 sshfs"
  tgt["overwrite_mid"]      = "<= 2 sshfs"
  tgt["append_big_wire"]    = "<= 4 -"
  tgt["overwrite_mid_wire"] = "<= 4 -"
  tgt["bigfile_verify"]     = "= 1 -"
  norder = split("seq_write seq_read_cold rand_read_4k rand_read_4k_lat_mean rand_read_4k_lat_p99 " \
                 "small_create small_read stat_heavy stat_missing ls_l ls_l_warm cp_tree cp_tree_out " \
                 "rename_editor rm_rf verify append_big append_big_wire overwrite_mid overwrite_mid_wire " \
                 "bigfile_verify", order, " ")
  na = split(anchors, anc, " ")
}
NF == 4 && $1 !~ /^#/ {
  l = $1; w = $2; v = $3; u = $4
  if (!(w in seenw)) { seenw[w] = 1; extra[++nextra] = w }
  if (u != "setup_failed") unit[w] = u
  k = l SUBSEP w
  cnt[k]++; val[k, cnt[k]] = v
  if (v ~ /\./) frac[k] = 1
}
function med(k,   n, i, j, a, t, m) {   # median of the non-NA values, "NA" if none, "" if absent
  if (!(k in cnt)) return ""
  n = 0
  for (i = 1; i <= cnt[k]; i++) if (val[k, i] != "NA") a[++n] = val[k, i] + 0
  if (n == 0) return "NA"
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  return m
}
function fmt(x, k) {
  if (x == "") return "-"
  if (x == "NA") return "NA"
  if (!(k in frac) && x == int(x)) return sprintf("%d", x)
  return (x < 10) ? sprintf("%.4f", x) : sprintf("%.1f", x)
}
function ratio(a, b) {
  if (a == "" || b == "" || a == "NA" || b == "NA") return "-"
  if (b + 0 == 0) return "-"
  return sprintf("%.2fx", a / b)
}
function row(w,   i, s, x, spec, p, op, f, an, av, ok, tstr, met, u) {
  u = (w in unit) ? unit[w] : "?"
  s = subject SUBSEP w
  x = med(s)
  line = sprintf("| %s (%s) | %s |", w, u, fmt(x, s))
  for (i = 1; i <= na; i++) line = line sprintf(" %s |", fmt(med(anc[i] SUBSEP w), anc[i] SUBSEP w))
  for (i = 1; i <= na; i++) line = line sprintf(" %s |", ratio(x, med(anc[i] SUBSEP w)))
  if (!(w in tgt)) { print line " - | - |"; return }
  split(tgt[w], p, " "); op = p[1]; f = p[2]; an = p[3]
  if (an == "-") {                       # absolute target (verify, bytes on the wire)
    tstr = op " " f
    if (x == "" || x == "NA") met = "NA"
    else if (op == "=") met = (x + 0 == f + 0) ? "yes" : "**no**"
    else met = ((op == "<=") ? (x + 0 <= f + 0) : (x + 0 >= f + 0)) ? "yes" : "**no**"
  } else {
    tstr = op " " ((f + 0 == 1) ? "" : f " x ") an
    av = med(an SUBSEP w)
    if (x == "" || x == "NA" || av == "" || av == "NA") met = "NA"
    else {
      ok = (op == ">=") ? (x + 0 >= f * av) : (x + 0 <= f * av)
      met = ok ? "yes" : "**no**"
    }
  }
  ntgt++; if (met == "yes") nmet++; else if (met == "NA") nna++
  print line sprintf(" %s | %s |", tstr, met)
}
END {
  printf "| workload (unit) | %s |", subject
  for (i = 1; i <= na; i++) printf " %s |", anc[i]
  for (i = 1; i <= na; i++) printf " %s / %s |", subject, anc[i]
  printf " target | met |\n|---|---:|"
  for (i = 1; i <= 2 * na; i++) printf "---:|"
  printf "---|---|\n"
  for (j = 1; j <= norder; j++) { w = order[j]; done[w] = 1; if (w in seenw) row(w) }
  for (j = 1; j <= nextra; j++) { w = extra[j]; if (!(w in done)) row(w) }
  printf "\nTargets met: %d of %d", nmet, ntgt
  if (nna) printf " (%d not measured: NA)", nna
  printf ". Ratios are %s / anchor: above 1 is better for rates, worse for times (s, us).\n", subject
}' "$@"
