#!/usr/bin/env bash
# Memory over a long open-model run: chokepoint load at a fixed rate against
# the bench server, its resident set (VmRSS) sampled every 10 s. Flat means
# the last minutes' RSS is within a few percent of the first minute's.
#
#   bench/load/memory.sh                 # 10 minutes at 10,000 req/s
#   DURATION=2m RATE=5000 bench/load/memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10m}
RATE=${RATE:-10000}
PORT=${PORT:-20091}
BIN=$(mktemp -d -t chokepoint-mem-XXXX)
srv=; gen=
trap 'kill $gen $srv 2>/dev/null || true; rm -rf "$BIN"' EXIT
go build -o "$BIN/chokepoint" ./cmd/chokepoint
go build -o "$BIN/server" ./bench/load/server
if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "memory.sh: port $PORT is in use (another run?); set PORT" >&2; exit 1
fi
"$BIN/server" -addr "127.0.0.1:$PORT" & srv=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$BIN/chokepoint" load "http://127.0.0.1:$PORT/" --rate "$RATE" --duration "$DURATION" \
  --out "$BIN/run" --format json >"$BIN/summary.json" 2>/dev/null & gen=$!
echo "# chokepoint load --rate $RATE --duration $DURATION: VmRSS every 10 s"
echo "elapsed_s rss_kib"
t=0
while kill -0 $gen 2>/dev/null; do
  sleep 10; t=$((t + 10))
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$gen/status" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$t $rss"
done
wait $gen || true
python3 - "$BIN/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"# requests {s['requests']}, errors {s['errors']}, achieved {s['achieved_rps']:.1f}/s")
PY
