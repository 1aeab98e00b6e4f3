#!/usr/bin/env bash
# Benchmark of the batch pipeline against the database's ceiling, in one run:
#   (a) `txflow batch` of a generated file into PostgreSQL (in-process model);
#   (b) the ceiling: the very rows (a) stored, dumped and loaded by psql
#       with binary `\copy` straight into the empty tables of a fresh
#       database (same schema, indexes and constraints; no staging table,
#       no conflict handling), in one transaction.
# Prints rows/s of both, the ratio a/b, and the peak RSS and CPU of (a) for
# each size. Then the same into SQLite (the default store):
#   (c) `txflow batch` into a fresh SQLite file;
#   (d) its ceiling: the rows (c) stored, exported as CSV and loaded by the
#       sqlite3 shell's `.import` into the tables of a fresh file of the
#       same schema (txflow migrate; the same pragmas: WAL journal,
#       synchronous=NORMAL, foreign keys on, 64 MiB page cache), one
#       transaction per table.
#
#   scripts/bench-batch.sh [ROWS...]     default: 100000 1000000
#
# PostgreSQL runs with fsync on (TXFLOW_PG_DURABLE=1), on a free port, started
# and stopped by scripts/harness.sh. Results go to stdout; copy them into
# docs/PERFORMANCE.md with the machine they ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)

bench_build
bench_work bench-batch
bench_harness
admin=$TXFLOW_TEST_DATABASE_URL
base=${admin%/*}

fresh_db() { # NAME: an empty database (txflow migrates it)
  psql -q "$admin" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
}

# Runs `txflow batch` under /usr/bin/time; prints "seconds rows_written peak_rss_kib cpu_seconds".
run_txflow() { # DATABASE_URL FILE RUN_ID
  /usr/bin/time -v -o "$work/time.txt" "$txflow" batch "$2" --database-url "$1" \
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

# One line of the table, from the loop's variables.
report_row() {
  python3 -c "
rows, a, b, rss, cpu = $rows, $tx_secs, $copy_ms / 1e3, $rss, $cpu
print(f'{rows:<9} {rows/a:<12,.0f} {rows/b:<12,.0f} {(rows/a)/(rows/b):<8.2f} {rss/1024:<15.1f} {cpu:.2f}')"
}

machine
echo "postgres: $(psql -At "$admin" -c 'SHOW server_version'), fsync $(psql -At "$admin" -c 'SHOW fsync')"
printf '%-9s %-12s %-12s %-8s %-15s %s\n' rows "txflow r/s" "ceiling r/s" "ratio" "txflow RSS MiB" "txflow CPU s"
for rows in "${sizes[@]}"; do
  file="$work/tx_$rows.csv"
  "$txflow" generate --rows "$rows" --seed 7 -o "$file"

  # (a) txflow, from the CSV file, into a fresh database.
  fresh_db bench_txflow
  read -r tx_secs written rss cpu < <(run_txflow "$base/bench_txflow" "$file" bench)

  # (b) the ceiling: the rows (a) stored, copied straight into empty tables.
  fresh_db bench_copy
  read -r copy_ms copied < <(copy_ceiling "$base/bench_txflow" "$base/bench_copy")

  [ "$written" = "$rows" ] && [ "$copied" = "$rows" ] ||
    { echo "row counts differ: generated $rows, txflow wrote $written, copy loaded $copied" >&2; exit 1; }
  report_row
done

# The sqlite3 shell loads CSV exported from the file txflow wrote.
sqlite_ceiling() { # FROM_FILE TO_FILE: prints "MILLISECONDS TRANSACTIONS"
  local from=$1 to=$2 table start end
  for table in transactions predictions; do
    sqlite3 -csv "$from" "SELECT * FROM $table" >"$work/$table.csv"
  done
  "$txflow" migrate --database-url "sqlite://$to" >/dev/null 2>&1
  start=$(date +%s%N)
  sqlite3 "$to" -cmd "PRAGMA journal_mode = WAL" -cmd "PRAGMA synchronous = NORMAL" \
    -cmd "PRAGMA foreign_keys = ON" -cmd "PRAGMA cache_size = -65536" \
    ".import --csv $work/transactions.csv transactions" \
    ".import --csv $work/predictions.csv predictions" >/dev/null
  end=$(date +%s%N)
  echo "$(((end - start) / 1000000)) $(sqlite3 "$to" 'SELECT count(*) FROM transactions')"
}

echo "sqlite: $(sqlite3 --version | cut -d' ' -f1) (shell), txflow's pragmas; txflow at its default batch size for SQLite"
printf '%-9s %-12s %-12s %-8s %-15s %s\n' rows "txflow r/s" "ceiling r/s" "ratio" "txflow RSS MiB" "txflow CPU s"
for rows in "${sizes[@]}"; do
  file="$work/tx_$rows.csv"
  rm -f "$work"/lite*.db*
  read -r tx_secs written rss cpu < <(run_txflow "sqlite://$work/lite.db" "$file" bench)
  read -r copy_ms copied < <(sqlite_ceiling "$work/lite.db" "$work/lite_copy.db")
  [ "$written" = "$rows" ] && [ "$copied" = "$rows" ] ||
    { echo "row counts differ: generated $rows, txflow wrote $written, sqlite3 loaded $copied" >&2; exit 1; }
  report_row
done
