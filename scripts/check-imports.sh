#!/usr/bin/env bash
# Checks the import rules of STYLE.md and README's Layout with go list.
#
# Two kinds of rule. A direct rule looks at the imports a package writes
# itself (go list .Imports): "only fusefs imports bazil", "only cmd imports
# envconfig", "export imports, of this module, only peerproto, secure and
# export/jail". A transitive rule looks at everything a package is built
# from (go list -deps): "fusefs and cache reach no net". Patterns are
# extended regular expressions matched against whole paths: "net(/.*)?" is
# net and net/http, never netip alone by accident.
#
# scripts/check_imports_test.go plants violations in a copy of the module
# to prove that each kind of rule catches them. Exit status 1 if a rule is
# broken, with one line per broken rule.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
m=${mod//./\\.} # the module path as a regular expression
fail=0

# Every package of the module with its direct imports, one line each:
# "path import import...", paths relative to the module.
all=$(go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... | sed "s#^$mod/##")

# packages RE: the module's packages (relative paths) matching RE.
packages() { awk '{print $1}' <<<"$all" | grep -E "^($1)\$" || true; }
# importsof PKG: PKG's direct imports (full paths), one a line.
importsof() { awk -v p="$1" '$1 == p { for (i = 2; i <= NF; i++) print $i }' <<<"$all"; }
broken() {
	echo "import rule broken: $1"
	fail=1
}

# within PKGS ALLOWED WHY: packages matching PKGS import, of this module,
# only packages matching ALLOWED ("" allows none). Direct.
within() {
	local p bad
	for p in $(packages "$1"); do
		bad=$(importsof "$p" | grep -E "^$m(/.*)?\$" | grep -vE "^$m/($2)\$" || true)
		[ -z "$2" ] && bad=$(importsof "$p" | grep -E "^$m(/.*)?\$" || true)
		if [ -n "$bad" ]; then
			broken "$p imports $(echo $bad) ($3)"
		fi
	done
}

# only PKGS IMPORTS WHY: no package but those matching PKGS imports a path
# matching IMPORTS. Direct.
only() {
	local p bad
	for p in $(awk '{print $1}' <<<"$all"); do
		grep -qE "^($1)\$" <<<"$p" && continue
		bad=$(importsof "$p" | grep -E "^($2)\$" || true)
		if [ -n "$bad" ]; then
			broken "$p imports $(echo $bad) (only $1 may: $3)"
		fi
	done
}

# reaches PKGS DEPS WHY [VIA]: no package matching PKGS is built from a
# path matching DEPS (go list -deps). With VIA (packages, e.g. the
# logger), what only VIA's own dependencies bring in is allowed; a package
# outside them that imports DEPS is not. Transitive.
reaches() {
	local p bad via=""
	if [ -n "${4:-}" ]; then
		# shellcheck disable=SC2086 # VIA is a list of packages
		via=$(go list -deps $4)
	fi
	for p in $(packages "$1"); do
		bad=$(go list -deps -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' "$mod/$p" |
			awk -v via="$via" -v re="^($2)\$" '
				BEGIN { n = split(via, v, "\n"); for (i = 1; i <= n; i++) skip[v[i]] = 1 }
				!($1 in skip) { for (i = 1; i <= NF; i++) if ($i ~ re) print $i }' |
			sort -u)
		if [ -n "$bad" ]; then
			broken "$p reaches $(echo $bad) ($3)"
		fi
	done
}

# Direct: what each layer may import of the module (imports point down).
within 'peerproto' '' "the codec owns bytes only"
within 'cache' '' "cache is a leaf"
within 'secure' '' "secure is a leaf: transport only"
within 'export/jail' 'peerproto' "the jail knows names and files only"
within 'export' 'peerproto|secure|export/jail' "the export server knows no client and no mount"
within 'peer' 'peerproto|secure' "the client to other peers knows the wire and the transport only"
within 'tracker' 'peerproto|secure' "the tracker and its client know the wire and the transport only"
within 'tracker/etcdstate' 'tracker' "the etcd store knows the tracker's contract only"
within 'fusefs' 'fusefs/fuseserve|fusefs/fusedev' "fusefs defines the Store it needs; remote satisfies it"
within 'fusefs/fuseserve' 'fusefs/fusedev' "the request server knows bazil's interfaces and the device's codec only"
within 'fusefs/fusedev' '' "the FUSE device's codec owns bytes and the device only"
within 'remote' 'cache|fusefs|peer|peerproto|secure|tracker' "the mount's storage core: no export server, shell or metrics"
within 'shell' 'peer|peerproto|secure|tracker' "the shell speaks through the peer and tracker clients"
within 'metrics' 'peerproto|remote|tracker' "metrics reads reports; it runs nothing"

# Direct: who may import what.
only 'fusefs(/.*)?|bench/fusefloor' 'bazil\.org/fuse(/.*)?' "the FUSE edge; bench/fusefloor measures bazil itself"
only 'cmd/peerfs' 'github\.com/kelseyhightower/envconfig' "libraries take Options structs"
only 'metrics' 'github\.com/prometheus/.*' "one package owns the metrics"
only 'tracker/etcdstate|internal/etcdtest' 'go\.etcd\.io/.*' "one package speaks to etcd; tests embed it"
only 'export' "$m/export/jail" "the jail is the export server's"
only 'cmd/peerfs' "$m/(metrics|shell)" "commands wire them in"

# Transitive: what a package may be built from at all.
reaches 'fusefs(/.*)?|cache' 'net(/.*)?' "fusefs and cache touch no network; zerolog's and bazil's own use of net aside" 'github.com/rs/zerolog bazil.org/fuse'
reaches 'peerproto' 'net(/.*)?|github\.com/rs/zerolog(/.*)?' "the codec: no sockets, no logging"
reaches 'export/jail' 'net(/.*)?|github\.com/rs/zerolog(/.*)?' "the jail: files only, no logging"
reaches 'peerproto|secure|tracker|peer|export(/.*)?|shell' 'bazil\.org/fuse(/.*)?' "the protocol side never reaches FUSE"

[ "$fail" = 0 ] && echo "import rules: ok"
exit "$fail"
