#!/usr/bin/env bash
# Soak: the original producers' profile scaled to RATE events/s (default
# 235, ten times the original 23.5/s) for MINUTES (default 10), through
# `txflow serve` (the HTTP classifier) and two `txflow consume` members into
# PostgreSQL (fsync on), on the harness's broker
# (Apache Kafka 3.9; BROKER=tansu: Tansu 0.6, memory storage, as before
# session 12). Samples every process's
# RSS every 10 s, then checks exactly-once and reports the end-to-end
# latency (event time to the write's database transaction).
#
#   scripts/soak.sh [MINUTES] [RATE]
#
# With SOAK_HEAPTRACK=DIR, member a runs under heaptrack (Debian's) and its
# profile is kept as DIR/member-a.zst; the end prints what it still held.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
rate=${2:-235}

cargo build --release --locked -p txflow-cli >&2
txflow=$PWD/target/release/txflow

work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-soak.XXXXXX")
chmod 755 "$work"
harness="$work/harness"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/harness.sh stop "$harness"
  rm -rf "$work"
}
trap cleanup EXIT
TXFLOW_PG_DURABLE=1 TXFLOW_HARNESS_TANSU=$([ "${BROKER:-kafka}" = tansu ] && echo 1 || echo 0) scripts/harness.sh start "$harness" 2>/dev/null
# shellcheck disable=SC1091
source "$harness/env"
if [ "${BROKER:-kafka}" = tansu ]; then TXFLOW_TEST_KAFKA_BROKERS=$TXFLOW_TEST_TANSU_BROKERS; fi
export TXFLOW_KAFKA_BROKERS=$TXFLOW_TEST_KAFKA_BROKERS
base=${TXFLOW_TEST_DATABASE_URL%/*}
db="$base/soak"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
topics="--transactions-topic soak-tx --predictions-topic soak-pred --dead-letter-topic soak-dlq"
# shellcheck disable=SC2086
"$txflow" topics create --replication 1 $topics >/dev/null
psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE soak"
"$txflow" migrate --database-url "$db" >/dev/null 2>&1

serve_port=$(free_port)
"$txflow" serve --listen "127.0.0.1:$serve_port" >/dev/null 2>"$work/serve.log" &
pids+=($!)
serve=$!
profiler=()
if [ -n "${SOAK_HEAPTRACK:-}" ]; then
  mkdir -p "$SOAK_HEAPTRACK"
  rm -f "$SOAK_HEAPTRACK"/member-a.*
fi
for member in a b; do
  if [ "$member" = a ] && [ -n "${SOAK_HEAPTRACK:-}" ]; then
    profiler=(heaptrack -o "$SOAK_HEAPTRACK/member-a")
  else
    profiler=()
  fi
  # shellcheck disable=SC2086
  "${profiler[@]}" "$txflow" consume --database-url "$db" --group soak --member "$member" \
    --classifier "http://127.0.0.1:$serve_port" --metrics-listen "127.0.0.1:$(free_port)" $topics \
    >/dev/null 2>"$work/member-$member.log" &
  launched=$!
  if [ ${#profiler[@]} -gt 0 ]; then
    # The member itself, a child of heaptrack's script.
    sleep 2
    heaptrack_script=$launched
    launched=$(pgrep -P "$launched" -x txflow | head -1)
  fi
  pids+=("$launched")
  eval "member_$member=$launched"
done
sleep 5

# The original producers (1-10 events every 500 ms, 5-20 every second:
# 23.5 events/s on average), each batch size scaled to RATE.
scale=$(python3 -c "print($rate / 23.5)")
p1=$(python3 -c "s=$scale; print(f'{max(1, round(1 * s))}-{max(1, round(10 * s))}@500ms')")
p2=$(python3 -c "s=$scale; print(f'{max(1, round(5 * s))}-{max(1, round(20 * s))}@1s')")
echo "producers: $p1 and $p2 (about $rate events/s) for $minutes min; two members, classifier: txflow serve"
# shellcheck disable=SC2086
timeout -s INT "${minutes}m" "$txflow" produce $topics --producer "$p1" --producer "$p2" \
  >"$work/produce.out" 2>"$work/produce.log" &
producer=$!
pids+=($producer)
sleep 1
# The txflow process itself, not `timeout`.
producer_txflow=$(pgrep -P "$producer" | head -1)

# RSS of each process every 10 s while the producer runs.
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
echo "second,serve_kib,member_a_kib,member_b_kib,producer_kib" >"$work/rss.csv"
started=$(date +%s)
while kill -0 "$producer" 2>/dev/null; do
  # shellcheck disable=SC2154
  echo "$(($(date +%s) - started)),$(rss "$serve"),$(rss "$member_a"),$(rss "$member_b"),$(rss "$producer_txflow")" >>"$work/rss.csv"
  sleep 10
done
wait "$producer" || true
cat "$work/produce.out"
produced=$(awk '{print $1; exit}' "$work/produce.out")

# Wait for the members to store everything (2 minutes at most).
deadline=$(($(date +%s) + 120))
while [ "$(psql -At "$db" -c 'SELECT coalesce(sum(next_offset), 0) FROM stream_offsets')" -lt "$produced" ] &&
  [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 1
done
read -r stored distinct dead offsets <<<"$(psql -At -F ' ' "$db" -c "
  SELECT (SELECT count(*) FROM transactions), (SELECT count(DISTINCT id) FROM transactions),
         (SELECT count(*) FROM rejected_records), (SELECT coalesce(sum(next_offset), 0) FROM stream_offsets)")"
echo "events produced: $produced; stored: $stored; distinct: $distinct; lost: $((produced - distinct)); duplicated: $((stored - distinct)); rejected: $dead; offsets stored: $offsets"

python3 - "$work/rss.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
pick = [rows[min(3, len(rows) - 1)], rows[len(rows) // 2], rows[-1]]
print("RSS (MiB) at 30 s (after warm-up), middle and end:")
for name in ["serve", "member_a", "member_b", "producer"]:
    values = " / ".join(f"{int(r[name + '_kib']) / 1024:.1f}" for r in pick)
    print(f"  {name:<9} {values}   (seconds {' / '.join(r['second'] for r in pick)})")
PY

psql -At "$db" -F ' ' -c "
  SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
         round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
         round(max(ms)::numeric, 1)
  FROM (SELECT extract(epoch FROM ingested_at - \"timestamp\") * 1000 AS ms FROM transactions
        WHERE \"timestamp\" >= (SELECT min(\"timestamp\") FROM transactions) + interval '30 seconds') l" |
  while read -r p50 p99 max; do
    echo "latency after the first 30 s: p50 ${p50} ms, p99 ${p99} ms, max ${max} ms"
  done
if [ -n "${SOAK_HEAPTRACK:-}" ]; then
  # Stop member a cleanly so that heaptrack writes its profile.
  kill -TERM "$member_a"
  wait "$heaptrack_script" || true
  echo "heaptrack profile of member a: $(ls "$SOAK_HEAPTRACK"/member-a.*)"
  heaptrack_print --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 1 \
    "$SOAK_HEAPTRACK"/member-a.zst | tail -12
  # The heap in use over time (what is allocated and not yet freed), from
  # heaptrack's massif export.
  heaptrack_print -M "$SOAK_HEAPTRACK/member-a.massif" "$SOAK_HEAPTRACK"/member-a.zst >/dev/null
  python3 - "$SOAK_HEAPTRACK/member-a.massif" <<'PY'
import re, sys
heap = {}
time = None
for line in open(sys.argv[1]):
    if line.startswith("time="):
        time = float(line[5:])
    elif line.startswith("mem_heap_B=") and time is not None:
        heap[int(time // 60)] = int(line[11:])
minutes = sorted(heap)[:-1]  # the last minute holds the exit
print("member a's heap in use (MiB) at the end of each minute:")
print("  " + " ".join(f"{m + 1}:{heap[m] / 1048576:.2f}" for m in minutes))
PY
fi
errors=$(cat "$work"/member-*.log "$work/serve.log" | grep -c '"level":"ERROR"' || true)
echo "ERROR lines in the members' and service's logs: $errors"
[ "$produced" -eq "$distinct" ] && [ "$stored" -eq "$distinct" ] || { echo "soak: NOT exactly once" >&2; exit 1; }
