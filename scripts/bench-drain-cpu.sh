#!/usr/bin/env bash
# Where a drain's time goes: `txflow consume` (release build) drains ROWS
# pre-filled records into PostgreSQL (fsync on); prints the rate, the CPU
# seconds of the member, the broker (the harness's Apache Kafka) and PostgreSQL (all its processes, read from
# /proc before the member stops), and the member's own flush metrics.
#
#   scripts/bench-drain-cpu.sh [ROWS]      default 300000; MAX_BATCH=5000
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-300000}
cargo build --release --locked -p txflow-cli >&2
txflow=$PWD/target/release/txflow
work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-drain-cpu.XXXXXX")
chmod 755 "$work"
trap 'scripts/harness.sh stop "$work/h"; rm -rf "$work"' EXIT
TXFLOW_PG_DURABLE=${TXFLOW_PG_DURABLE:-1} scripts/harness.sh start "$work/h" 2>/dev/null
# shellcheck disable=SC1091
source "$work/h/env"
base=${TXFLOW_TEST_DATABASE_URL%/*}
topics="--brokers $TXFLOW_TEST_KAFKA_BROKERS --transactions-topic d-tx --predictions-topic d-pred --dead-letter-topic d-dlq"
# shellcheck disable=SC2086
"$txflow" topics create --replication 1 $topics >/dev/null
# shellcheck disable=SC2086
"$txflow" produce --flat --count "$rows" $topics >/dev/null 2>&1
psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE d"
"$txflow" migrate --database-url "$base/d" >/dev/null 2>&1
ticks() {
  local s=0
  for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$s"
}
postgres() { pgrep -u postgres | tr '\n' ' '; }
broker=$(cat "$work/h/kafka.pid")
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2046
t0=$(ticks "$broker"); p0=$(ticks $(postgres))
start=$(date +%s%N)
# shellcheck disable=SC2086
"$txflow" consume --database-url "$base/d" --group g --member m --max-batch "${MAX_BATCH:-5000}" \
  --metrics-listen "127.0.0.1:$metrics_port" $topics ${CONSUME_ARGS:-} >/dev/null 2>"$work/consume.log" &
pid=$!
while [ "$(psql -At "$base/d" -c 'SELECT coalesce(sum(next_offset), 0) FROM stream_offsets')" -lt "$rows" ]; do
  kill -0 "$pid" 2>/dev/null || { tail "$work/consume.log"; exit 1; }
  sleep 0.2
done
end=$(date +%s%N)
# shellcheck disable=SC2046
c1=$(ticks "$pid"); t1=$(ticks "$broker"); p1=$(ticks $(postgres))
curl -s "127.0.0.1:$metrics_port/metrics" | grep -E "^txflow_stream_(flush_seconds|batch_size|stage_seconds)_(sum|count)"
kill -TERM "$pid"
wait "$pid" || true
python3 - "$rows" "$start" "$end" "$(getconf CLK_TCK)" "$c1" "$((t1 - t0))" "$((p1 - p0))" <<'PY'
import sys
rows, start, end, hz, member, broker, pg = (int(x) for x in sys.argv[1:])
secs = (end - start) / 1e9
print(f"drain: {rows / secs:,.0f} records/s ({secs:.2f} s)")
for name, t in [("txflow consume", member), ("kafka", broker), ("postgresql", pg)]:
    print(f"{name:<15} {t / hz:6.2f} CPU-s = {t / hz / secs * 100:5.1f} % of a core")
PY
