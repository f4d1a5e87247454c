#!/usr/bin/env bash
# Probe overhead on the zoo: the target's CPU per request at a fixed rate with
# every probe on vs off (alternating runs), and the spread. Run on a quiet
# machine; record the table in docs/performance.md with the date and command.
#   bench/overhead.sh [--rate 1000] [--duration 10s] [--runs 5] [--mode none]
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o /tmp/chokepoint-overhead ./bench/overhead
exec /tmp/chokepoint-overhead "$@"
