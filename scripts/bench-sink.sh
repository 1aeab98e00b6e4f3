#!/usr/bin/env bash
# Benchmark of the sink connectors, in one run, on the harness's broker
# (Apache Kafka 3.9; BROKER=tansu: Tansu 0.6, memory storage, as before
# session 12),
# s3s-fs and VictoriaMetrics:
#   1. ROWS events are produced and `txflow consume` publishes their
#      predictions (the topic the sinks read);
#   2. the broker's ceiling: a plain rdkafka consumer reading the
#      predictions topic, with librdkafka's defaults and with the members'
#      fetch settings (fetch.wait.max.ms=20, queued.max.messages.kbytes=16384,
#      fetch.queue.backoff.ms=10;
#      the ratios are against the faster of the two);
#   3. `txflow sink s3://…` (Parquet) drains the same topic;
#   3b. the same with `--parquet-date prediction` (another lake);
#   4. `txflow sink influx+http://…` (VictoriaMetrics) drains it;
#   5. `txflow sink delta+s3://…` (a Delta table, partitioned by the
#      transaction's date) drains it, then `txflow lake compact` rewrites
#      its small files (timed; the table's files and their average size
#      before and after);
#   5b. the same with `--delta-partition prediction`.
# SINKS (default "parquet bypred influx delta bypred-delta") picks which of
# 3, 3b, 4, 5, 5b run.
# Each sink is timed from process start until its metrics count ROWS
# records written; peak RSS is VmHWM; Parquet bytes are the objects' sizes
# on s3s-fs's disk.
#
#   scripts/bench-sink.sh [ROWS] [MODE]   default 1000000 historical
#   SINKS="delta bypred-delta" scripts/bench-sink.sh 1000000 live
#
# MODE historical: the events' times spread over the reference period (a
# backfill: each write spans many dates, so many small objects); live: the
# events happen now (one date, one object per partition and write).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
mode=${2:-historical}
sinks=" ${SINKS:-parquet bypred influx delta bypred-delta} "
want() { [[ $sinks == *" $1 "* ]]; }
case $mode in
  historical) produce_mode=--historical ;;
  live) produce_mode= ;;
  *) echo "MODE must be historical or live, not $mode" >&2; exit 2 ;;
esac

cargo build --release --locked -p txflow-cli >&2
cargo build --release --locked -p txflow-kafka --example plain_consume >&2
txflow=$PWD/target/release/txflow
plain=$PWD/target/release/examples/plain_consume

work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-bench-sink.XXXXXX")
chmod 755 "$work"
harness="$work/harness"
trap 'scripts/harness.sh stop "$harness"; rm -rf "$work"' EXIT
TXFLOW_HARNESS_TANSU=$([ "${BROKER:-kafka}" = tansu ] && echo 1 || echo 0) scripts/harness.sh start "$harness" 2>/dev/null
# shellcheck disable=SC1091
source "$harness/env"
if [ "${BROKER:-kafka}" = tansu ]; then TXFLOW_TEST_KAFKA_BROKERS=$TXFLOW_TEST_TANSU_BROKERS; fi
export TXFLOW_KAFKA_BROKERS=$TXFLOW_TEST_KAFKA_BROKERS
base=${TXFLOW_TEST_DATABASE_URL%/*}
ms() { echo $(($(date +%s%N) / 1000000)); }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"

topics="--transactions-topic sink-tx --predictions-topic sink-pred --dead-letter-topic sink-dlq"
# shellcheck disable=SC2086
"$txflow" topics create --replication 1 $topics >/dev/null
# shellcheck disable=SC2086
"$txflow" produce --flat $produce_mode --count "$rows" $topics 2>/dev/null | sed 's/^/produce: /'
psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE bench_sink"
"$txflow" migrate --database-url "$base/bench_sink" >/dev/null 2>&1
# shellcheck disable=SC2086
"$txflow" consume --database-url "$base/bench_sink" --group bench --max-batch 5000 \
  --metrics-listen 127.0.0.1:0 $topics >/dev/null 2>"$work/consume.log" &
pid=$!
while [ "$(psql -At "$base/bench_sink" -c 'SELECT coalesce(sum(next_offset), 0) FROM stream_offsets')" -lt "$rows" ]; do
  kill -0 "$pid" 2>/dev/null || { tail "$work/consume.log"; exit 1; }
  sleep 0.5
done
kill -TERM "$pid"; wait "$pid" || true
echo "predictions published: $rows"

echo "== plain rdkafka consumer on the predictions topic (defaults, then the members' fetch settings)"
"$plain" "$TXFLOW_KAFKA_BROKERS" sink-pred "$rows" | tee "$work/plain-defaults.txt"
"$plain" "$TXFLOW_KAFKA_BROKERS" sink-pred "$rows" fetch.wait.max.ms=20 \
  queued.max.messages.kbytes=16384 fetch.queue.backoff.ms=10 | tee "$work/plain-fetch.txt"

# Runs `txflow sink URL [ARGS...]` until it has written ROWS records;
# prints "<seconds> <peak RSS KiB>". NAME is the connector's kind.
drain() {
  local url=$1 name=$2 p
  shift 2
  p=$(port)
  local start end rss
  start=$(ms)
  # shellcheck disable=SC2086
  "$txflow" sink "$url" --max-batch 10000 --metrics-listen "127.0.0.1:$p" \
    --s3-endpoint "$TXFLOW_TEST_S3_ENDPOINT" $topics "$@" \
    >/dev/null 2>"$work/$name.log" &
  local sink=$!
  local metric="txflow_sink_records_written_total{sink=\"$name\"}"
  until curl -s "127.0.0.1:$p/metrics" | awk -v m="$metric" -v n="$rows" '$1 == m && $2 >= n {ok=1} END {exit !ok}'; do
    kill -0 "$sink" 2>/dev/null || { tail "$work/$name.log" >&2; exit 1; }
    sleep 0.2
  done
  end=$(ms)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$sink/status")
  kill -TERM "$sink"; wait "$sink" || true
  echo "$(( end - start )) $rss"
}

parquet_ms=0 parquet_rss=0 parquet_bytes=0 parquet_objects=0
if want parquet; then
  echo "== txflow sink s3://…/lake (Parquet)"
  read -r parquet_ms parquet_rss < <(drain "s3://$TXFLOW_TEST_S3_BUCKET/lake" parquet)
  parquet_bytes=$(find "$harness/s3/$TXFLOW_TEST_S3_BUCKET/lake" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s}')
  parquet_objects=$(find "$harness/s3/$TXFLOW_TEST_S3_BUCKET/lake" -name '*.parquet' | wc -l)
fi

bypred_ms=0 bypred_rss=0 bypred_bytes=0 bypred_objects=0
if want bypred; then
  echo "== txflow sink s3://…/lake-by-prediction --parquet-date prediction (Parquet)"
  read -r bypred_ms bypred_rss < <(drain "s3://$TXFLOW_TEST_S3_BUCKET/lake-by-prediction" parquet \
    --parquet-date prediction --group bench-parquet-by-prediction)
  bypred_objects=$(find "$harness/s3/$TXFLOW_TEST_S3_BUCKET/lake-by-prediction" -name '*.parquet' | wc -l)
  bypred_bytes=$(find "$harness/s3/$TXFLOW_TEST_S3_BUCKET/lake-by-prediction" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s}')
fi

influx_ms=0 influx_rss=0
if want influx; then
  echo "== txflow sink influx+http://… (VictoriaMetrics)"
  read -r influx_ms influx_rss < <(drain "influx+$TXFLOW_TEST_VM_URL/write" influx)
fi

# The data files of a Delta table on s3s-fs's disk: "<count> <bytes>"
# (the log's checkpoints excluded).
data_files() {
  find "$harness/s3/$TXFLOW_TEST_S3_BUCKET/$1" -name '*.parquet' -not -path '*/_delta_log/*' -printf '%s\n' |
    awk '{n++; s += $1} END {print n + 0, s + 0}'
}
# Drains into the Delta table KEY and compacts it; prints "<drain ms> <rss>
# <files> <bytes> <compact ms> <files after> <bytes after> <commits>" (after:
# the table's files, from compaction's report: a vacuum is not run, since
# s3s-fs lists a folder of 100,000 objects in minutes).
delta_run() {
  local key=$1 group=$2 url="delta+s3://$TXFLOW_TEST_S3_BUCKET/$1"
  shift 2
  local d_ms d_rss files bytes start c_ms after_files after_bytes commits
  read -r d_ms d_rss < <(drain "$url" delta --group "$group" "$@")
  read -r files bytes < <(data_files "$key")
  commits=$(find "$harness/s3/$TXFLOW_TEST_S3_BUCKET/$key/_delta_log" -name '*.json' | wc -l)
  start=$(ms)
  "$txflow" lake compact "$url" --json --s3-endpoint "$TXFLOW_TEST_S3_ENDPOINT" >"$work/$key-compact.json"
  c_ms=$(( $(ms) - start ))
  read -r after_files after_bytes < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); files, size = int(sys.argv[2]), int(sys.argv[3])
print(files - r["files_before"] + r["files_after"], size - r["bytes_before"] + r["bytes_after"])' \
    "$work/$key-compact.json" "$files" "$bytes")
  echo "$d_ms $d_rss $files $bytes $c_ms $after_files $after_bytes $commits"
}

delta="0 0 0 0 0 0 0 0"
if want delta; then
  echo "== txflow sink delta+s3://…/delta (Delta Lake, by transaction date), then txflow lake compact"
  delta=$(delta_run delta bench-delta)
fi
bypred_delta="0 0 0 0 0 0 0 0"
if want bypred-delta; then
  echo "== txflow sink delta+s3://…/delta-by-prediction --delta-partition prediction, then compact"
  bypred_delta=$(delta_run delta-by-prediction bench-delta-by-prediction --delta-partition prediction)
fi

echo "mode: $mode"
python3 - "$work/plain-defaults.txt" "$work/plain-fetch.txt" "$rows" "$parquet_ms" "$parquet_rss" "$parquet_bytes" "$parquet_objects" "$influx_ms" "$influx_rss" \
  "$bypred_ms" "$bypred_rss" "$bypred_bytes" "$bypred_objects" $delta $bypred_delta <<'PY'
import re, sys
took = lambda path: float(re.search(r"in ([\d.]+) s", open(path).read()).group(1))
defaults, fetch = took(sys.argv[1]), took(sys.argv[2])
rows, p_ms, p_rss, p_bytes, p_objects, i_ms, i_rss, b_ms, b_rss, b_bytes, b_objects = (
    int(x) for x in sys.argv[3:14])
deltas = [("delta, by transaction", [int(x) for x in sys.argv[14:22]]),
          ("delta, by prediction", [int(x) for x in sys.argv[22:30]])]
print(f"plain consumer      : {rows / defaults:>10,.0f} records/s ({defaults:.2f} s), librdkafka defaults")
print(f"plain consumer      : {rows / fetch:>10,.0f} records/s ({fetch:.2f} s), the members' fetch settings")
base = rows / min(defaults, fetch)
for name, ms, rss in [("parquet sink (S3)", p_ms, p_rss), ("parquet, by prediction", b_ms, b_rss),
                      ("line-protocol sink", i_ms, i_rss)] + [(n, d[0], d[1]) for n, d in deltas]:
    if ms == 0:
        continue
    rate = rows / (ms / 1000)
    print(f"{name:<20}: {rate:>10,.0f} records/s ({ms / 1000:.2f} s, start-up included), "
          f"ratio {rate / base:.2f}, peak RSS {rss / 1024:.0f} MiB")
if p_objects:
    print(f"parquet             : {p_objects} objects, {p_bytes:,} bytes, {p_bytes / rows:.1f} bytes per record")
if b_objects:
    print(f"parquet, by pred.   : {b_objects} objects, {b_bytes:,} bytes, {b_bytes / rows:.1f} bytes per record")
for name, (d_ms, d_rss, files, size, c_ms, after, after_size, commits) in deltas:
    if d_ms == 0:
        continue
    print(f"{name:<20}: {commits} commits; {files} files, {size:,} bytes ({size / rows:.1f} per record, "
          f"{size / max(files, 1) / 1024:,.0f} KiB per file)")
    print(f"{'  compact':<20}: {c_ms / 1000:.2f} s; {after} files, {after_size:,} bytes "
          f"({after_size / max(after, 1) / 2**20:,.2f} MiB per file on average)")
PY
