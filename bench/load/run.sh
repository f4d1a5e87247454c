#!/usr/bin/env bash
# Runs chokepoint load side by side with wrk, bombardier, hey, vegeta, fortio
# and k6 against one local server (bench/load/server), the tools pinned to
# one core and the server to another, and prints CPU per request at
# 10,000 req/s, closed-loop throughput with 50 connections, rate accuracy at
# 20,000 req/s, latency against a 10 ms server and the 1 s stall test.
#
#   bench/load/run.sh                      # everything, 10 s per run, once
#   REPEAT=3 bench/load/run.sh             # median of 3 (as docs/performance.md)
#   ONLY=cpu10k,stall TOOLS=chokepoint,bombardier bench/load/run.sh
#
# Anchors are installed into a temporary GOBIN (never into go.mod) from the
# Go module proxy at the versions below; wrk comes from apt (as root) or the
# PATH; a tool that cannot be installed is left out of the tables.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
REPEAT=${REPEAT:-1}
ONLY=${ONLY:-}
TOOLS=${TOOLS:-}
BIN=${BIN:-$(mktemp -d -t chokepoint-bench-bin-XXXX)}
VEGETA=${VEGETA:-github.com/tsenart/vegeta/v12@v12.13.0}
HEY=${HEY:-github.com/rakyll/hey@v0.1.5}
BOMBARDIER=${BOMBARDIER:-github.com/codesenberg/bombardier@v1.2.6}
FORTIO=${FORTIO:-fortio.org/fortio@v1.63.0} # later versions need grol.io, not on the module proxy
K6=${K6:-go.k6.io/k6@v1.8.1}

cores=$(nproc)
if [ "$cores" -ge 2 ]; then GEN_CPU=${GEN_CPU:-0}; SRV_CPU=${SRV_CPU:-1}; else GEN_CPU=""; SRV_CPU=""; fi
load=$(cut -d' ' -f1 /proc/loadavg)
echo "bench: $cores cores, load average $load (run on an idle machine: other work skews every number)" >&2

go build -o "$BIN/chokepoint" ./cmd/chokepoint
go build -o "$BIN/server" ./bench/load/server
go build -o "$BIN/driver" ./bench/load/driver

install() { # module@version: go install into $BIN, quietly; failures leave the tool out
  [ -x "$BIN/$(basename "${1%@*}" | sed 's/^v[0-9]*$//')" ] && return 0
  GOBIN="$BIN" GOFLAGS= go install "$1" >/dev/null 2>&1 || echo "bench: could not install $1; left out" >&2
}
install "$VEGETA"; install "$HEY"; install "$BOMBARDIER"; install "$FORTIO"
if [ -n "${SKIP_K6:-}" ]; then :; else timeout 900 bash -c "$(declare -f install); BIN=$BIN install $K6" || echo "bench: k6 not installed; left out" >&2; fi
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq wrk >/dev/null 2>&1 || true; fi
  command -v wrk >/dev/null || echo "bench: wrk not found; left out" >&2
fi

exec "$BIN/driver" -bin "$BIN" -duration "$DURATION" -repeat "$REPEAT" \
  -gen-cpu "$GEN_CPU" -srv-cpu "$SRV_CPU" -only "$ONLY" -tools "$TOOLS"
