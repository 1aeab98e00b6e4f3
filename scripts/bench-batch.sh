#!/usr/bin/env bash
# Benchmark of the batch pipeline against its baseline, in one run:
#   (a) `txflow batch` of a generated file into PostgreSQL (in-process model);
#   (b) a raw `psql \copy` of the same rows, already in final form, into the
#       same tables through the same staging-and-upsert path.
# Prints rows/s of both, the ratio a/b, and the peak RSS of (a) for each size.
#
#   scripts/bench-batch.sh [ROWS...]     default: 100000 1000000
#
# PostgreSQL runs with fsync on (TXFLOW_PG_DURABLE=1), on a free port, started
# and stopped by scripts/harness.sh. Results go to stdout; copy them into
# docs/PERFORMANCE.md with the machine they ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)

cargo build --release --locked -p txflow-cli >&2
txflow=$PWD/target/release/txflow

work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-bench.XXXXXX")
chmod 755 "$work" # the postgres user must reach its data folder below
harness="$work/harness"
trap 'scripts/harness.sh stop "$harness"; rm -rf "$work"' EXIT
TXFLOW_PG_DURABLE=1 scripts/harness.sh start "$harness"
# shellcheck disable=SC1091
source "$harness/env"
admin=$TXFLOW_TEST_DATABASE_URL
base=${admin%/*}

fresh_db() { # NAME: an empty database with txflow's schema
  psql -q "$admin" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  "$txflow" migrate --database-url "$base/$1" >/dev/null 2>&1
}

# Columns the pipeline writes; the rest take their defaults in both runs.
# (one line: psql's \copy must fit on one)
tx_cols="id, source_id, description, amount, \"timestamp\", merchant, operation_type, side, processing_type, run_id, batch_id, source_location, source_line, source_offset"
pred_cols="transaction_id, model_version, category, confidence, run_id"

# Runs `txflow batch` under /usr/bin/time; prints "seconds rows_written peak_rss_kib cpu_seconds".
run_txflow() { # DB FILE RUN_ID
  /usr/bin/time -v -o "$work/time.txt" "$txflow" batch "$2" --database-url "$base/$1" \
    --run-id "$3" --no-progress --errors "$work/errors" --summary-json "$work/summary.json" \
    >/dev/null 2>"$work/txflow.log"
  python3 - "$work/time.txt" "$work/summary.json" <<'PY'
import json, re, sys
t = open(sys.argv[1]).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (.+)", t).group(1)
secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
cpu = sum(float(re.search(p + r" time \(seconds\): ([\d.]+)", t).group(1)) for p in ("User", "System"))
s = json.load(open(sys.argv[2]))
assert s["status"] == "succeeded", s
print(secs, s["rows_written"], rss, cpu)
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "postgres: $(psql -At "$admin" -c 'SHOW server_version'), fsync $(psql -At "$admin" -c 'SHOW fsync')"
printf '%-9s %-12s %-12s %-8s %-15s %s\n' rows "txflow r/s" "copy r/s" "ratio" "txflow RSS MiB" "txflow CPU s"
for rows in "${sizes[@]}"; do
  file="$work/tx_$rows.csv"
  "$txflow" generate --rows "$rows" --seed 7 -o "$file"

  # Final form of the same rows: what txflow wrote, read back from a first
  # (warm-up) run. The baseline then loads exactly these rows.
  fresh_db bench_prep
  run_txflow bench_prep "$file" bench >/dev/null
  psql -q "$base/bench_prep" \
    -c "\\copy (SELECT $tx_cols FROM transactions) TO '$work/final_tx.csv' WITH (FORMAT csv)" \
    -c "\\copy (SELECT $pred_cols FROM predictions) TO '$work/final_pred.csv' WITH (FORMAT csv)"

  # (b) the baseline: COPY into staging tables, then upsert, one transaction.
  fresh_db bench_copy
  cat >"$work/copy.sql" <<SQL
BEGIN;
CREATE TEMP TABLE stage_tx (LIKE transactions INCLUDING DEFAULTS) ON COMMIT DROP;
CREATE TEMP TABLE stage_pred (LIKE predictions INCLUDING DEFAULTS) ON COMMIT DROP;
\\copy stage_tx ($tx_cols) FROM '$work/final_tx.csv' WITH (FORMAT csv)
\\copy stage_pred ($pred_cols) FROM '$work/final_pred.csv' WITH (FORMAT csv)
INSERT INTO transactions ($tx_cols) SELECT $tx_cols FROM stage_tx ON CONFLICT DO NOTHING;
INSERT INTO predictions ($pred_cols) SELECT $pred_cols FROM stage_pred ON CONFLICT DO NOTHING;
COMMIT;
SQL
  start=$(date +%s%N)
  psql -q -v ON_ERROR_STOP=1 "$base/bench_copy" -f "$work/copy.sql" >/dev/null
  copy_ns=$(($(date +%s%N) - start))
  copied=$(psql -At "$base/bench_copy" -c 'SELECT count(*) FROM transactions')

  # (a) txflow, from the CSV file, into a fresh database.
  fresh_db bench_txflow
  read -r tx_secs written rss cpu < <(run_txflow bench_txflow "$file" bench)

  [ "$written" = "$rows" ] && [ "$copied" = "$rows" ] ||
    { echo "row counts differ: generated $rows, txflow wrote $written, copy loaded $copied" >&2; exit 1; }
  python3 -c "
rows, a, b, rss, cpu = $rows, $tx_secs, $copy_ns / 1e9, $rss, $cpu
print(f'{rows:<9} {rows/a:<12,.0f} {rows/b:<12,.0f} {(rows/a)/(rows/b):<8.2f} {rss/1024:<15.1f} {cpu:.2f}')"
done
