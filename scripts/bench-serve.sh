#!/usr/bin/env bash
# Benchmark of the classification service and of the batch pipeline through it:
#   1. `txflow serve` under load from wrk (Debian package, installed when
#      missing) at batch sizes 100 and 1,000: predictions/s, p50 and p99;
#   2. `txflow batch` of ROWS generated rows into PostgreSQL (fsync on) with
#      `--classifier http://…` versus the in-process model, in the same run.
#
#   scripts/bench-serve.sh [ROWS]      default 1000000
#
# Everything runs on this machine: server, load generator, database share
# its cores. Copy the output into docs/PERFORMANCE.md with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/wrk-lib.sh
source scripts/wrk-lib.sh
rows=${1:-1000000}
duration=${BENCH_SECONDS:-10}

ensure_wrk
cargo build --release --locked -p txflow-cli >&2
txflow=$PWD/target/release/txflow

work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-bench-serve.XXXXXX")
chmod 755 "$work"
harness="$work/harness"
serve_pid=
cleanup() {
  [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true
  scripts/harness.sh stop "$harness"
  rm -rf "$work"
}
trap cleanup EXIT

start_serve "$txflow" "$work/serve.log"

# Request bodies: N distinct transactions in the contract's JSON.
body() { # N FILE
  python3 - "$1" "$2" <<'PY'
import json, random, sys, uuid
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
merchants = ["Monoprix", "Uber", "EDF", "Amazon.fr", "SNCF", None]
items = []
for i in range(n):
    debit = rng.random() < 0.8
    cents = rng.randint(100, 200000)
    items.append({
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "description": f"Card expense {i}",
        "amount": (-cents if debit else cents) / 100,
        "timestamp": "2024-03-01T08:15:00+01:00",
        "merchant": rng.choice(merchants),
        "operation_type": "card",
        "side": "debit" if debit else "credit",
    })
json.dump(items, open(path, "w"))
PY
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo
echo "== txflow serve under wrk (1 thread, 8 connections, ${duration}s per size)"
wrk_header
for batch in 100 1000; do
  body "$batch" "$work/body_$batch.json"
  wrk_predict "$serve_url" "$work/body_$batch.json" "$work" "$duration"
  wrk_row "$work" "$batch"
done

echo
echo "== txflow batch of $rows rows into PostgreSQL (fsync on): in-process vs --classifier http"
TXFLOW_PG_DURABLE=1 scripts/harness.sh start "$harness" 2>/dev/null
# shellcheck disable=SC1091
source "$harness/env"
admin=$TXFLOW_TEST_DATABASE_URL
base=${admin%/*}
"$txflow" generate --rows "$rows" --seed 7 -o "$work/tx.csv"
printf '%-12s %-12s %-10s\n' classifier "rows/s" "seconds"
for mode in in-process http; do
  db="bench_${mode//-/_}"
  psql -q "$admin" -c "CREATE DATABASE $db"
  flags=()
  [ "$mode" = http ] && flags=(--classifier "$serve_url")
  start=$(date +%s%N)
  "$txflow" batch "$work/tx.csv" --database-url "$base/$db" --no-progress --errors "$work/errors" \
    --summary-json "$work/summary.json" "${flags[@]}" >/dev/null 2>"$work/batch.log"
  ns=$(($(date +%s%N) - start))
  python3 - "$work/summary.json" "$ns" "$mode" "$rows" <<'PY'
import json, sys
s, ns, mode, rows = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
assert s["status"] == "succeeded" and s["predictions_written"] == rows, s
secs = ns / 1e9
print(f"{mode:<12} {rows / secs:<12,.0f} {secs:<10.2f}")
PY
done

# 3. The original system's path end to end: its 10,000-row reference file
# (../shared/data/transactions_fr.csv) classified through `txflow serve`
# and stored in PostgreSQL (fsync on), into a database whose schema is in
# place (`txflow migrate` beforehand, as the original's tables were);
# whole process, start-up included, five runs into fresh databases. The
# original pipeline's 3.0 s is the figure the write-path issue gives for
# this machine, not measured by this script.
reference=../shared/data/transactions_fr.csv
if [ -f "$reference" ]; then
  echo
  echo "== the 10,000-row reference file through txflow serve into PostgreSQL (5 runs)"
  for i in 1 2 3 4 5; do
    psql -q "$admin" -c "CREATE DATABASE bench_ref_$i"
    "$txflow" migrate --database-url "$base/bench_ref_$i" >/dev/null 2>&1
    start=$(date +%s%N)
    "$txflow" batch "$reference" --database-url "$base/bench_ref_$i" --classifier "$serve_url" \
      --no-progress --errors "$work/errors" --summary-json "$work/summary.json" >/dev/null 2>"$work/batch.log"
    echo $(($(date +%s%N) - start)) >>"$work/ref.ns"
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); assert s['status']=='succeeded' and s['predictions_written']==10000, s" "$work/summary.json"
  done
  python3 - "$work/ref.ns" <<'PY'
import statistics, sys
runs = sorted(int(l) / 1e9 for l in open(sys.argv[1]))
median = statistics.median(runs)
print("runs (s):", " ".join(f"{r:.3f}" for r in runs))
print(f"median {median:.3f} s: {3.0 / median:.1f}x the original pipeline's 3.0 s (goal: 25x, 0.120 s)")
PY
fi
