#!/usr/bin/env bash
# Checks the import rules of STYLE.md with go list: imports point one way,
# only fusefs imports bazil, only cmd imports envconfig, peerproto stays
# free of sockets and logging.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
imports() { go list -f '{{join .Imports "\n"}}' "$mod/$1"; }
deny() { # package, pattern, why[, pattern of the exceptions]
	local bad
	bad=$(imports "$1" | grep -E "$2" | grep -vE "${4:-^$}" || true)
	if [ -n "$bad" ]; then
		echo "import rule broken: $1 imports $(echo $bad) ($3)"
		fail=1
	fi
}
deny peerproto '^(net|github.com/rs/zerolog|'"$mod"'/)' "the codec owns bytes only"
deny tracker "^$mod/(peer|fusefs|cache|remote|shell)\$" "tracker depends on peerproto only"
deny peer "^$mod/(fusefs|remote|shell|tracker)\$" "peer must not know the mount"
deny cache "^$mod/" "cache is a leaf"
deny secure "^$mod/" "secure is a leaf: transport only"
deny fusefs "^(net|$mod/.*)\$" "fusefs talks to a Store, not the network" "^$mod/fusefs/fuseserve\$"
deny fusefs/fuseserve "^(net|$mod/.*)\$" "the request server knows bazil's interfaces only"
for p in peerproto tracker peer cache remote shell secure; do
	deny "$p" '^bazil.org/fuse' "only fusefs imports bazil"
	deny "$p" '^github.com/kelseyhightower/envconfig' "only cmd imports envconfig"
done
deny fusefs '^github.com/kelseyhightower/envconfig' "only cmd imports envconfig"
for p in peerproto tracker peer cache remote shell secure fusefs; do
	deny "$p" '^github.com/prometheus/' "only metrics imports prometheus"
done
[ "$fail" = 0 ] && echo "import rules: ok"
exit "$fail"
