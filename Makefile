# peerfs — common commands. `make help` lists them.
#
#   make build        bin/peerfs
#   make install      copy bin/peerfs to $(PREFIX)/bin (PREFIX=/usr/local; run make build first, as yourself)
#   make test         the tests, as README and CI run them (FUSE tests need fuse3)
#   make demo         a tracker and two peers on 127.0.0.1, each mounting the other (Ctrl-C stops)
#   make bench        peerfs vs sshfs, bindfs and the local disk, full sizes (~5-10 min, root):
#                     one markdown table on stdout; raw lines and daemon logs in bench/results/<time>/
#   make bench-quick  the same with small sizes (a few minutes)
#   make benchstat    the Go benchmarks of bench/, peerproto/, cache/ and export/, -count 6, through benchstat
#   make bench-scale  the tracker with N = 10..10,000 simulated peers, single and on etcd (~10 min;
#                     BENCH_SCALE_FLAGS="-n 10,100 -backends single" for less; root lists a real mount too)
#   make posix-check  POSIX conformance (bench/posixcheck) of a local dir, a peer folder, bindfs, sshfs (root)
#
# bench/run.sh's header lists its knobs (BENCH_TARGETS, BENCH_RUNS, BENCH_OUT, FSBENCH_*, ...);
# they pass through make's environment, e.g. `BENCH_RUNS=3 make bench`.

SHELL := /bin/bash
GO ?= go
BENCHSTAT ?= $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
BENCH_COUNT ?= 6
BENCH_PKGS ?= ./bench/ ./peerproto/ ./cache/ ./export/
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: help build install test demo bench bench-quick benchstat bench-scale posix-check

help:
	@sed -n '3,16p' Makefile | sed 's/^# \{0,1\}//'

build:
	$(GO) build -o bin/peerfs ./cmd/peerfs

# Only copies: `sudo make install` runs as root, whose PATH may have no go.
install:
	@test -x bin/peerfs || { echo "make install: no bin/peerfs: run 'make build' first (as yourself)" >&2; exit 1; }
	install -D -m 755 bin/peerfs $(DESTDIR)$(PREFIX)/bin/peerfs
	@echo "installed $(DESTDIR)$(PREFIX)/bin/peerfs"

# The command README.md's Quick start gives (scripts/test-command reads it).
test:
	@cmd=$$(scripts/test-command) && echo "$$cmd" && eval "$$cmd"

demo:
	./mount.sh --demo

bench:
	@bench/run.sh

bench-quick:
	@BENCH_QUICK=1 bench/run.sh

# Tables on stdout, progress on stderr; bench/scale/main.go's flags (-n, -backends, -delay, ...).
bench-scale:
	$(GO) run ./bench/scale $(BENCH_SCALE_FLAGS)

# Failures per group and target on stdout; each target's failing cases in bench/results/posix-<time>/.
posix-check:
	@bench/posix.sh

# Raw `go test -bench` output goes to bench/results/gobench-<time>.txt (compare two such
# files with `go run golang.org/x/perf/cmd/benchstat@... old.txt new.txt`). The second table
# puts each GET/PUT next to its plain-TCP baseline (via=tcp) with the ratio.
benchstat:
	@set -euo pipefail; mkdir -p bench/results; \
	out=bench/results/gobench-$$(date +%Y%m%d-%H%M%S).txt; \
	echo "go test -bench -> $$out" >&2; \
	$(GO) test -run '^$$' -bench . -count $(BENCH_COUNT) -timeout 60m $(BENCH_PKGS) | tee "$$out" >&2; \
	$(BENCHSTAT) "$$out"; \
	echo; echo "# peerfs GET/PUT against plain TCP (loopback)"; \
	$(BENCHSTAT) -filter '.name:(Get OR Put)' -col /via "$$out"
