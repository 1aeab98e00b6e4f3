#!/usr/bin/env bash
# Drains one pre-filled topic with two txflow builds, alternating, in one
# harness (PostgreSQL with fsync on): a same-run comparison of the member.
#
#   scripts/bench-drain-compare.sh BASELINE_TXFLOW [ROWS] [ROUNDS]
#
# BASELINE_TXFLOW is another build of txflow, e.g. from an earlier commit:
#   git worktree add /tmp/base REV && (cd /tmp/base && cargo build --release -p txflow-cli)
#   scripts/bench-drain-compare.sh /tmp/base/target/release/txflow 300000 2
#
# BASELINE_ARGS and CURRENT_ARGS are each side's consume flags (default
# "--max-batch 5000"); with the same build on both sides, two settings:
#   BASELINE_ARGS="--max-batch 1000" scripts/bench-drain-compare.sh target/release/txflow 1000000 3
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
baseline=${1:?usage: bench-drain-compare.sh BASELINE_TXFLOW [ROWS] [ROUNDS]}
rows=${2:-300000}
rounds=${3:-2}
cargo build --release --locked -p txflow-cli >&2
current=$PWD/target/release/txflow

work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-drain.XXXXXX")
chmod 755 "$work"
on_exit "scripts/harness.sh stop '$work/harness'; rm -rf '$work'"
TXFLOW_PG_DURABLE=1 scripts/harness.sh start "$work/harness" 2>/dev/null
# shellcheck disable=SC1091
source "$work/harness/env"
base=${TXFLOW_TEST_DATABASE_URL%/*}
topics="--brokers $TXFLOW_TEST_KAFKA_BROKERS --transactions-topic drain-tx --predictions-topic drain-pred --dead-letter-topic drain-dlq"
# shellcheck disable=SC2086
"$current" topics create --replication 1 $topics >/dev/null
# shellcheck disable=SC2086
"$current" produce --flat --count "$rows" $topics 2>/dev/null
ms() { echo $(($(date +%s%N) / 1000000)); }
for round in $(seq 1 "$rounds"); do
  for which in baseline current; do
    bin=${!which}
    args_of=${which^^}_ARGS
    args=${!args_of:---max-batch 5000}
    db=drain_${which}_$round
    psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
    "$current" migrate --database-url "$base/$db" >/dev/null 2>&1
    start=$(ms)
    # shellcheck disable=SC2086
    "$bin" consume --database-url "$base/$db" --group "g_$db" --member m $args \
      --max-wait 500ms --metrics-listen 127.0.0.1:0 $topics >/dev/null 2>"$work/$db.log" &
    pid=$!
    wait_drained "$base/$db" "$rows" "$pid" "$work/$db.log"
    end=$(ms)
    kill -TERM "$pid"
    wait "$pid" || true
    echo "$which ($args), round $round: $((rows * 1000 / (end - start))) records/s ($((end - start)) ms)"
  done
done
