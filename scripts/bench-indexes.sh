#!/usr/bin/env bash
# What each index and constraint costs the write, measured alone on the
# database's ceiling (the write-path issue's third direction):
#   1. `txflow batch` of ROWS generated rows into PostgreSQL (fsync on),
#      whose stored rows are dumped in binary;
#   2. for each variant, a fresh migrated database with ONE index or
#      constraint dropped (or all of them), and the rows loaded by psql
#      binary `\copy` in one transaction, as bench-lib's copy_ceiling does;
#      the variants run ROUNDS times, interleaved, so that the machine's
#      drift touches them alike.
# Prints each variant's median rows/s and its ratio to the full schema.
#
#   scripts/bench-indexes.sh [ROWS] [ROUNDS]     default 1000000 3
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
rows=${1:-1000000}
rounds=${2:-3}

bench_build
bench_work bench-indexes
bench_harness
admin=$TXFLOW_TEST_DATABASE_URL
base=${admin%/*}
machine

fresh_db() { # NAME: an empty, migrated database
  psql -q "$admin" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  "$txflow" migrate --database-url "$base/$1" >/dev/null 2>&1
}

"$txflow" generate --rows "$rows" --seed 7 -o "$work/rows.csv" >/dev/null
fresh_db source
"$txflow" batch "$work/rows.csv" --database-url "$base/source" --no-progress \
  --errors "$work/errors" >/dev/null 2>&1
dump_rows "$base/source" "$work"

# name|SQL run on the fresh database before the load
variants=(
  "full schema|SELECT 1"
  "without transactions_run_id|DROP INDEX transactions_run_id"
  "without the transactions primary key|ALTER TABLE classification_failures DROP CONSTRAINT classification_failures_transaction_id_fkey; ALTER TABLE labels DROP CONSTRAINT labels_transaction_id_fkey; ALTER TABLE transactions DROP CONSTRAINT transactions_pkey"
  "without the predictions primary key|ALTER TABLE predictions DROP CONSTRAINT predictions_pkey"
  "without the check constraints|ALTER TABLE transactions DROP CONSTRAINT transactions_processing_type_check, DROP CONSTRAINT transactions_side_check; ALTER TABLE predictions DROP CONSTRAINT predictions_confidence_check"
  "no index, no constraint|DROP INDEX transactions_run_id; ALTER TABLE classification_failures DROP CONSTRAINT classification_failures_transaction_id_fkey; ALTER TABLE labels DROP CONSTRAINT labels_transaction_id_fkey; ALTER TABLE transactions DROP CONSTRAINT transactions_pkey, DROP CONSTRAINT transactions_processing_type_check, DROP CONSTRAINT transactions_side_check; ALTER TABLE predictions DROP CONSTRAINT predictions_pkey, DROP CONSTRAINT predictions_confidence_check"
)

for round in $(seq "$rounds"); do
  for i in "${!variants[@]}"; do
    sql=${variants[$i]#*|}
    fresh_db "variant_$i"
    psql -q -v ON_ERROR_STOP=1 "$base/variant_$i" -c "$sql" >/dev/null
    psql -q "$base/variant_$i" -c "CHECKPOINT" >/dev/null
    ms=$(load_rows "$base/variant_$i" "$work")
    loaded=$(psql -At "$base/variant_$i" -c 'SELECT count(*) FROM transactions')
    [ "$loaded" -eq "$rows" ] || { echo "variant $i loaded $loaded rows, $rows expected" >&2; exit 1; }
    echo "$i $ms" >>"$work/times"
    psql -q "$admin" -c "DROP DATABASE variant_$i"
  done
done

python3 - "$work/times" "$rows" "${variants[@]}" <<'PY'
import statistics, sys
times, rows, names = sys.argv[1], int(sys.argv[2]), [v.split("|")[0] for v in sys.argv[3:]]
by = {}
for line in open(times):
    i, ms = line.split()
    by.setdefault(int(i), []).append(int(ms))
full = rows / (statistics.median(by[0]) / 1000)
print(f"{rows:,} rows (transactions + predictions), psql binary COPY in one transaction, fsync on")
print(f"{'variant':<40} {'rows/s (median)':>16} {'runs ms':<24} {'vs full':>8}")
for i, name in enumerate(names):
    rate = rows / (statistics.median(by[i]) / 1000)
    print(f"{name:<40} {rate:>16,.0f} {' '.join(map(str, by[i])):<24} {rate / full:>8.2f}")
PY
