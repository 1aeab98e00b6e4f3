#!/usr/bin/env bash
# The review page under a full queue: ROWS generated transactions (default
# 100,000) classified by a model trained here (every 5th row of the labeled
# file) with `--review-below 1` (every prediction under 1.0 queued), in
# SQLite and in PostgreSQL; then `txflow review serve` answers, under wrk
# (1 thread, 4 connections, SECONDS each):
#   GET /                  the page's first screen (50 items, least confident first)
#   GET /api/queue?limit=50  the same as JSON
#   GET /health            the baseline: the same server answering nothing
# Prints requests/s and latency (p50, p99) of each, and each route's p50 over
# the baseline's.
#
#   scripts/bench-review-page.sh [ROWS] [SECONDS]
#
# Copy the output into docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
seconds=${2:-10}
labeled=${LABELED:-../shared/data/labeled/transactions_labeled_us.csv}
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
# shellcheck source=scripts/wrk-lib.sh
source scripts/wrk-lib.sh
ensure_wrk
bench_build
bench_work bench-review
page_pid=
on_exit '[ -n "$page_pid" ] && kill "$page_pid" 2>/dev/null'
bench_harness
admin=$TXFLOW_TEST_DATABASE_URL
base=${admin%/*}

machine
awk 'NR == 1 || NR % 5 == 2' "$labeled" >"$work/labels.csv"
"$txflow" train "$work/labels.csv" --output "$work/model.txm" --name bench --iterations 30 >&2
"$txflow" generate --rows "$rows" --seed 11 -o "$work/in.csv"

# get URL: wrk's latency of GET URL into $work/wrk.txt.
get() {
  wrk -t1 -c4 -d2s "$1" >/dev/null
  wrk -t1 -c4 -d"${seconds}s" --latency "$1" >"$work/wrk.txt"
}

# p50 ms of the last run.
p50() {
  python3 - "$work/wrk.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
v, unit = re.search(r"\s50%\s+([\d.]+)(us|ms|s)", t).groups()
print(float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit])
PY
}

psql -q "$admin" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS bench_review" -c "CREATE DATABASE bench_review"
for database in "sqlite://$work/review.db" "$base/bench_review"; do
  "$txflow" batch "$work/in.csv" --classifier "$work/model.txm" --review-below 1 \
    --database-url "$database" --no-progress | tail -1 | sed 's/.*; //' >&2
  port=$(free_port)
  "$txflow" review serve --listen "127.0.0.1:$port" --database-url "$database" >"$work/page.log" 2>&1 &
  page_pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do curl -sf "$url/health" >/dev/null && break; sleep 0.1; done
  pending=$(curl -sf "$url/api/queue?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending"])')
  echo
  echo "${database%%:*}: $pending items pending"
  printf '%-22s %-12s %-10s %-10s %-10s\n' route "requests/s" "p50 ms" "p99 ms" "p50/base"
  get "$url/health"
  baseline=$(p50)
  for route in "/health" "/" "/api/queue?limit=50"; do
    get "$url$route"
    if grep -q "Non-2xx" "$work/wrk.txt"; then
      echo "GET $route answered errors:" >&2
      cat "$work/wrk.txt" >&2
      exit 1
    fi
    python3 - "$work/wrk.txt" "$route" "$baseline" <<'PY'
import re, sys
t, route, base = open(sys.argv[1]).read(), sys.argv[2], float(sys.argv[3])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def ms(p):
    v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
print(f"{route:<22} {rps:<12,.0f} {ms(50):<10.2f} {ms(99):<10.2f} {ms(50) / base:<10.1f}")
PY
  done
  kill "$page_pid"
  wait "$page_pid" 2>/dev/null || true
  page_pid=
done
