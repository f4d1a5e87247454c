#!/usr/bin/env bash
# The full-length accuracy table: every zoo mode and its fixed twin hunted
# with chokepoint's default flags (no shortened steps), the first finding
# checked against the zoo's ground truth. Writes the markdown table to
# docs/accuracy-table.md (and keeps every run directory under $KEEP), for
# docs/accuracy.md. Takes about an hour; run it on a quiet machine.
#   bench/accuracy.sh [MODE,MODE...]
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=${KEEP:-/tmp/chokepoint-accuracy-runs}
mkdir -p "$KEEP"
export CHOKEPOINT_E2E_FULL=1 CHOKEPOINT_E2E_ALL=1 CHOKEPOINT_E2E_KEEP="$KEEP"
export CHOKEPOINT_ACCURACY_OUT="$PWD/docs/accuracy-table.md"
[ $# -gt 0 ] && export CHOKEPOINT_E2E_MODES="$1"
start=$(date -u +%FT%TZ)
go test -count=1 -timeout 3h -v -run 'TestZooAccuracy$' ./e2e/ | tee "$KEEP/accuracy.log" | grep -E '^(=== RUN|--- |\s+accuracy_test.go:[0-9]+: (limited_by|first finding|locus|fixed))' || true
echo "started $start, finished $(date -u +%FT%TZ); table in docs/accuracy-table.md, runs in $KEEP"
