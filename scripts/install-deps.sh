#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack:
# PostgreSQL 15 server binaries (with pg_stat_statements), nginx, Chromium,
# and the Go modules. Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && pg_bin="$d"
done
command -v initdb >/dev/null 2>&1 || [ -n "$pg_bin" ] || need+=(postgresql postgresql-contrib)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# hypopg lets the postgres probe ask the planner about a hypothetical index
# (its tests install it into their own throwaway cluster).
pg_major=""
if [ -n "$pg_bin" ]; then pg_major=$(basename "$(dirname "$pg_bin")"); fi
if [ -n "$pg_major" ] && ! ls /usr/share/postgresql/"$pg_major"/extension/hypopg.control >/dev/null 2>&1; then
  need+=("postgresql-$pg_major-hypopg")
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root or install them yourself" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The packaged nginx and postgresql services are not wanted: tests start their own.
  (service nginx stop || true) >/dev/null 2>&1
  (service postgresql stop || true) >/dev/null 2>&1
  # A fresh machine gets PostgreSQL above; its hypopg needs the version.
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && pg_major=$(basename "$(dirname "$d")")
  done
  if [ -n "$pg_major" ] && ! ls /usr/share/postgresql/"$pg_major"/extension/hypopg.control >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends "postgresql-$pg_major-hypopg" >/dev/null || echo "install-deps: hypopg unavailable; its test will skip" >&2
  fi
fi

go mod download
