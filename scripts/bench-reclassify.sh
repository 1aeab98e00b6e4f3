#!/usr/bin/env bash
# Benchmark of `txflow reclassify` against the batch pipeline, in one run:
#   (a) `txflow batch` of a generated file into PostgreSQL (in-process
#       reference model): the baseline rate;
#   (b) `txflow reclassify --all` of those rows with the in-process merchant
#       model;
#   (c) the same through `txflow serve --model merchant` (its predictions
#       removed first).
# Prints rows/s of each, the ratios b/a and c/a, and the peak RSS of (b) and
# (c) for each size (flat in the row count: pages of --batch-size).
#
#   scripts/bench-reclassify.sh [ROWS...]     default: 100000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_build
bench_work bench-reclassify
serve_pid=
on_exit '[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null'
bench_harness
admin=$TXFLOW_TEST_DATABASE_URL
base=${admin%/*}

port=$(free_port)
"$txflow" serve --listen "127.0.0.1:$port" --model merchant >/dev/null 2>&1 &
serve_pid=$!
sleep 1

# Runs a command under /usr/bin/time; prints "seconds peak_rss_kib".
timed() {
  /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>"$work/err.txt" || {
    cat "$work/out.txt" "$work/err.txt" >&2
    exit 1
  }
  python3 - "$work/time.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (.+)", t).group(1)
secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
print(secs, re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
PY
}

machine
for rows in "${sizes[@]}"; do
  db=bench_reclassify_$rows
  psql -q "$admin" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  url=$base/$db
  "$txflow" generate --rows "$rows" --seed 7 -o "$work/in.csv"
  read -r batch_s _ < <(timed "$txflow" batch "$work/in.csv" --database-url "$url" --no-progress)
  read -r local_s local_rss < <(timed "$txflow" reclassify --all --classifier merchant --database-url "$url")
  grep -q "$rows transaction(s) classified with merchant-1" "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
  psql -q "$url" -c "DELETE FROM predictions WHERE model_version = 'merchant-1'"
  read -r served_s served_rss < <(timed "$txflow" reclassify --all --classifier "http://127.0.0.1:$port" --database-url "$url")
  grep -q "$rows transaction(s) classified with merchant-1" "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
  python3 - "$rows" "$batch_s" "$local_s" "$local_rss" "$served_s" "$served_rss" <<'PY'
import sys
rows = int(sys.argv[1])
batch, local, served = (float(sys.argv[i]) for i in (2, 3, 5))
local_rss, served_rss = int(sys.argv[4]), int(sys.argv[6])
print(f"{rows:>9,} rows: batch {rows / batch:>9,.0f}/s | reclassify in-process {rows / local:>9,.0f}/s "
      f"(ratio {batch / local:.2f}, peak RSS {local_rss / 1024:.0f} MiB) | through txflow serve "
      f"{rows / served:>9,.0f}/s (ratio {batch / served:.2f}, peak RSS {served_rss / 1024:.0f} MiB)")
PY
done
