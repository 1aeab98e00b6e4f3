#!/usr/bin/env bash
# Benchmark of the streaming pipeline, in one run, on the harness's broker
# (Apache Kafka 3.9; BROKER=tansu: Tansu 0.6, memory storage, as before
# session 12)
# (memory storage) and PostgreSQL (fsync on):
#   1. the broker's ceiling: a plain rdkafka consumer reading ROWS records,
#      with librdkafka's defaults and with the members' fetch settings
#      (fetch.wait.max.ms=20, queued.max.messages.kbytes=16384,
#      fetch.queue.backoff.ms=10): the ratio
#      is against the faster of the two;
#   2. `txflow consume` draining the same pre-filled topic into PostgreSQL;
#   2t. (Kafka only) the same with --transactions, another group and database;
#   2b. the database's ceiling: the rows the member wrote (transactions and
#      predictions), copied by psql (binary COPY) straight into empty tables
#      of the same schema: no Kafka, no classification, no conflict handling,
#      so no consumer that stores these rows here can be faster;
#   3. end-to-end latency at the original producers' rates (the seed
#      profile, SECONDS long): event time to database commit, p50 and p99.
#
#   scripts/bench-stream.sh [ROWS] [SECONDS]      default 1000000 30
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
rows=${1:-1000000}
seconds=${2:-30}

cargo build --release --locked -p txflow-cli >&2
cargo build --release --locked -p txflow-kafka --example plain_consume >&2
txflow=$PWD/target/release/txflow
plain=$PWD/target/release/examples/plain_consume

work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-bench-stream.XXXXXX")
chmod 755 "$work"
harness="$work/harness"
on_exit "scripts/harness.sh stop '$harness'; rm -rf '$work'"
TXFLOW_PG_DURABLE=1 TXFLOW_HARNESS_TANSU=$([ "${BROKER:-kafka}" = tansu ] && echo 1 || echo 0) scripts/harness.sh start "$harness" 2>/dev/null
# shellcheck disable=SC1091
source "$harness/env"
if [ "${BROKER:-kafka}" = tansu ]; then TXFLOW_TEST_KAFKA_BROKERS=$TXFLOW_TEST_TANSU_BROKERS; fi
export TXFLOW_KAFKA_BROKERS=$TXFLOW_TEST_KAFKA_BROKERS
base=${TXFLOW_TEST_DATABASE_URL%/*}
ms() { echo $(($(date +%s%N) / 1000000)); }

machine

topics="--transactions-topic drain-tx --predictions-topic drain-pred --dead-letter-topic drain-dlq"
# shellcheck disable=SC2086
"$txflow" topics create --replication 1 $topics >/dev/null
# shellcheck disable=SC2086
"$txflow" produce --flat --count "$rows" $topics 2>/dev/null | sed 's/^/produce: /'

echo "== 1. plain rdkafka consumer (librdkafka defaults, then the members' fetch settings)"
"$plain" "$TXFLOW_KAFKA_BROKERS" drain-tx "$rows" | tee "$work/plain-defaults.txt"
"$plain" "$TXFLOW_KAFKA_BROKERS" drain-tx "$rows" fetch.wait.max.ms=20 \
  queued.max.messages.kbytes=16384 fetch.queue.backoff.ms=10 | tee "$work/plain-fetch.txt"

echo "== 2. txflow consume into PostgreSQL (max batch 5000)"
# drain DATABASE GROUP FLAGS...: one member drains the topic into a new
# database; writes "START END WRITTEN RSS_KIB" to $work/DATABASE.drain.
drain() {
  local db=$1 group=$2
  shift 2
  psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
  "$txflow" migrate --database-url "$base/$db" >/dev/null 2>&1
  local start pid end rss written
  start=$(ms)
  # shellcheck disable=SC2086
  "$txflow" consume --database-url "$base/$db" --group "$group" \
    --member drain --max-batch 5000 --max-wait 500ms --metrics-listen 127.0.0.1:0 $topics "$@" \
    >"$work/$db.out" 2>"$work/$db.log" &
  pid=$!
  wait_drained "$base/$db" "$rows" "$pid" "$work/$db.log"
  end=$(ms)
  # Peak RSS so far (VmHWM), read before the member stops.
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || true
  written=$(psql -At "$base/$db" -c 'SELECT count(*) FROM transactions')
  echo "$start $end $written $rss" >"$work/$db.drain"
}
drain bench_drain bench
read -r start end written rss <"$work/bench_drain.drain"
python3 - "$work/plain-defaults.txt" "$work/plain-fetch.txt" "$rows" "$start" "$end" "$written" "$rss" <<'PY'
import re, sys
took = lambda f: float(re.search(r"in ([\d.]+) s", open(f).read()).group(1))
defaults, fetch = took(sys.argv[1]), took(sys.argv[2])
plain = min(defaults, fetch)
rows, start, end, written, rss = (int(x) for x in sys.argv[3:])
secs = (end - start) / 1000
assert written == rows, f"{written} rows written, {rows} expected"
print(f"plain consumer : {rows / defaults:>10,.0f} records/s ({defaults:.2f} s), librdkafka defaults")
print(f"plain consumer : {rows / fetch:>10,.0f} records/s ({fetch:.2f} s), the members' fetch settings")
print(f"txflow consume : {rows / secs:>10,.0f} records/s ({secs:.2f} s, start-up included), peak RSS {rss / 1024:.0f} MiB")
print(f"ratio          : {(rows / secs) / (rows / plain):.2f}")
PY

if [ "${BROKER:-kafka}" = kafka ]; then
  echo "== 2t. txflow consume --transactions (each flush in a Kafka transaction) into PostgreSQL"
  drain bench_drain_tx bench-tx --transactions
  read -r t_start t_end t_written t_rss <"$work/bench_drain_tx.drain"
  python3 - "$rows" "$start" "$end" "$t_start" "$t_end" "$t_written" "$t_rss" <<'PY'
import sys
rows, start, end, t_start, t_end, written, rss = (int(x) for x in sys.argv[1:])
assert written == rows, f"{written} rows written, {rows} expected"
plain, tx = rows / ((end - start) / 1000), rows / ((t_end - t_start) / 1000)
print(f"txflow consume --transactions: {tx:>10,.0f} records/s ({(t_end - t_start) / 1000:.2f} s), peak RSS {rss / 1024:.0f} MiB")
print(f"ratio to txflow consume without: {tx / plain:.2f}")
PY
fi

echo "== 2b. the database's ceiling: psql COPY of the same rows into empty tables"
psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE bench_copy"
read -r copy_ms copied < <(copy_ceiling "$base/bench_drain" "$base/bench_copy")
python3 - "$work/plain-fetch.txt" "$rows" "$start" "$end" 0 "$copy_ms" "$copied" <<'PY'
import re, sys
fetch = float(re.search(r"in ([\d.]+) s", open(sys.argv[1]).read()).group(1))
rows, start, end, c_start, c_end, copied = (int(x) for x in sys.argv[2:])
assert copied == rows, f"{copied} rows copied, {rows} expected"
member, copy = rows / ((end - start) / 1000), rows / ((c_end - c_start) / 1000)
print(f"psql COPY      : {copy:>10,.0f} rows/s ({(c_end - c_start) / 1000:.2f} s), transactions and predictions")
print(f"ceiling ratio  : {copy / (rows / fetch):.2f} of the plain consumer (members' fetch settings)")
print(f"txflow consume : {member / copy:.2f} of the COPY ceiling")
PY

echo "== 3. end-to-end latency at the seed producers' rates (${seconds} s, --max-wait 500ms)"
topics="--transactions-topic live-tx --predictions-topic live-pred --dead-letter-topic live-dlq"
# shellcheck disable=SC2086
"$txflow" topics create --replication 1 $topics >/dev/null
psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE bench_live"
"$txflow" migrate --database-url "$base/bench_live" >/dev/null 2>&1
metrics_port=$(free_port)
# shellcheck disable=SC2086
"$txflow" consume --database-url "$base/bench_live" --group live --member live --max-wait 500ms \
  --metrics-listen "127.0.0.1:$metrics_port" $topics >/dev/null 2>"$work/live.log" &
consumer=$!
sleep 3
# shellcheck disable=SC2086
timeout -s INT "$seconds" "$txflow" produce $topics 2>/dev/null | sed 's/^/produce: /' || true
sleep 2
# The member's own measure: the record's Kafka timestamp to after its
# commit (a histogram: the quantile is the upper bound of its bucket).
curl -s "127.0.0.1:$metrics_port/metrics" | python3 -c '
import re, sys
buckets = sorted((float(le), float(n)) for le, n in re.findall(
    r"^txflow_stream_end_to_end_seconds_bucket\{[^}]*le=\"([^\"]+)\"[^}]*\} (\S+)", sys.stdin.read(), re.M))
total = buckets[-1][1] if buckets else 0
for q in (0.5, 0.99):
    bound = next((le for le, n in buckets if total and n >= q * total), float("nan"))
    print(f"kafka record timestamp to commit (txflow metric): p{q * 100:g} <= {bound * 1000:.0f} ms ({total:.0f} events)")
'
kill -TERM "$consumer"
wait "$consumer" || true
# All events, then without the first 3 s: an idempotent producer's first
# records wait for its producer id, which is the producer's start-up, not the
# pipeline's latency.
for warmup in 0 3; do
  psql -At "$base/bench_live" -F ' ' -c "
    SELECT count(*),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
           round(max(ms)::numeric, 1)
    FROM (SELECT extract(epoch FROM ingested_at - \"timestamp\") * 1000 AS ms FROM transactions
          WHERE \"timestamp\" >= (SELECT min(\"timestamp\") FROM transactions) + interval '$warmup seconds') l" |
    while read -r n p50 p99 max; do
      echo "from second $warmup: $n events, latency p50 ${p50} ms, p99 ${p99} ms, max ${max} ms (event time to the write's database transaction)"
    done
done
