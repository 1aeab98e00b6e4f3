#!/usr/bin/env bash
# The project's test command (the README's, and CI's through .ci/run):
# formatting, lints, then every test against real PostgreSQL and S3 servers
# started by scripts/harness.sh and stopped on exit, whatever happens.
# Each stage says how long it took, and the last line sums them up.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
timings=()
# stage NAME COMMAND...: runs COMMAND under a heading, then says how long.
stage() {
  local name=$1 from=$SECONDS
  shift
  echo "== $name"
  "$@"
  local took=$((SECONDS - from))
  timings+=("$name ${took}s")
  echo "== $name: ${took} s"
}

# background NAME COMMAND...: starts COMMAND beside the next stages, its
# output kept aside; `settle NAME` waits for it, prints that output and how
# long it ran (the stages' times then overlap, and add up to more than the
# total).
declare -A bg_pid bg_log
background() {
  local name=$1
  shift
  bg_log[$name]=$(mktemp "${TMPDIR:-/tmp}/txflow-stage.XXXXXX")
  (
    from=$SECONDS
    status=0
    "$@" || status=$?
    echo "$((SECONDS - from))" >"${bg_log[$name]}.took"
    exit "$status"
  ) >"${bg_log[$name]}" 2>&1 &
  bg_pid[$name]=$!
  echo "== $name: started in the background"
}
settle() {
  local name=$1 status=0
  wait "${bg_pid[$name]}" || status=$?
  unset "bg_pid[$name]"
  local took
  took=$(cat "${bg_log[$name]}.took" 2>/dev/null || echo '?')
  echo "== $name (ran in the background)"
  cat "${bg_log[$name]}"
  rm -f "${bg_log[$name]}" "${bg_log[$name]}.took"
  timings+=("$name ${took}s (in the background)")
  echo "== $name: ${took} s (in the background)"
  return "$status"
}

# A cold build and the tests' servers take about 6 GiB (the debug build is
# 5.4 GiB with line tables only); a full disk fails the build half way with
# "No space left on device", so say so first.
mkdir -p target
free_gib=$(df -P -BG target | awk 'NR == 2 {sub("G", "", $4); print $4}')
if [ "${free_gib:-0}" -lt 8 ]; then
  echo "warning: ${free_gib} GiB free under target/; a cold build and the tests need about 6 GiB" >&2
fi

# System packages the build needs (libssl-dev for librdkafka's TLS) and
# the servers' Debian packages, installed once.
stage "install: Debian packages (scripts/harness.sh install-packages)" \
  scripts/harness.sh install-packages

# The tools built or downloaded once into ~/.cache/txflow (s3s-fs, Apache
# Kafka, Airflow, the Grafana SDK: most of a fresh machine's wait) install in the
# background while the project compiles; waited for before the servers start.
tools_log=$(mktemp "${TMPDIR:-/tmp}/txflow-tools.XXXXXX")
(
  from=$SECONDS
  scripts/harness.sh install-tools
  scripts/test-airflow.sh install
  scripts/check-observability.sh install
  echo "tools installed in $((SECONDS - from)) s"
) >"$tools_log" 2>&1 &
tools_pid=$!
dir=
cleanup() {
  local pid
  for pid in "${bg_pid[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
  done
  pkill -TERM -P "$tools_pid" 2>/dev/null || true
  kill "$tools_pid" 2>/dev/null || true
  [ -z "$dir" ] || scripts/harness.sh stop "$dir"
}
trap cleanup EXIT
wait_tools() {
  local status=0
  wait "$tools_pid" || status=$?
  cat "$tools_log"
  rm -f "$tools_log"
  if [ "$status" -ne 0 ]; then
    echo "installing the tools failed (exit $status), see above" >&2
    return "$status"
  fi
}

stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets --locked -- -D warnings
# The test build, also while the tools install.
stage "cargo test --no-run" cargo test --workspace --locked --no-run "$@"
# The Quick start's build (txflow without the kafka feature) is checked
# while the servers start and the tests, which mostly wait, run.
background "cargo clippy -p txflow-cli --no-default-features -- -D warnings" \
  cargo clippy -p txflow-cli --no-default-features --locked -- -D warnings

stage "install: tools (background, waited for)" wait_tools
dir=$(mktemp -d "${TMPDIR:-/tmp}/txflow-harness.XXXXXX")
stage "servers (scripts/harness.sh start)" scripts/harness.sh start "$dir"
# shellcheck disable=SC1091
source "$dir/env"

# Alert rules (promtool) and the dashboard (Grafana's SDK), offline.
stage "observability (scripts/check-observability.sh)" scripts/check-observability.sh

# Every test, the fuzz targets' seeds and seeded mutations among them
# (tests/it/fuzz_replay.rs; real fuzzing is scripts/fuzz.sh, nightly).
# Most tests wait on servers more than they compute, so they run 4 at a
# time; the outage tests (their own servers stopped, brokers and members
# killed) run 2 at a time in a second `cargo test` beside the first (they
# ran after it until session 13: 117 + 107 s one after the other, 126 and
# 130 s side by side). They kept a pass of their own because with 6 at a
# time a broker restart left duplicate records in the topic of Tansu, the
# broker then: its producer sequences were lost on restart.
if [ $# -eq 0 ]; then
  # The Airflow DAG in a real Airflow, against the same servers (skipped
  # when arguments narrow the tests to some crates or tests).
  background "airflow dags test (scripts/test-airflow.sh)" \
    env TXFLOW_BIN="$PWD/target/debug/txflow" scripts/test-airflow.sh
  # --workspace as above: `-p txflow-cli` alone unifies features otherwise
  # (tokio's test-util, a dev-dependency of txflow-kafka) and rebuilt the
  # tree for 48 s.
  background "cargo test (the outage tests, 2 at a time)" \
    cargo test --workspace --locked -- survival:: batch_outages:: --test-threads 2
  stage "cargo test (all but the outage tests, 4 at a time)" \
    cargo test --workspace --locked -- --skip survival:: --skip batch_outages:: --test-threads 4
  settle "cargo test (the outage tests, 2 at a time)"
  settle "airflow dags test (scripts/test-airflow.sh)"
else
  stage "cargo test" cargo test --workspace --locked "$@"
fi
settle "cargo clippy -p txflow-cli --no-default-features -- -D warnings"

echo "== every stage passed in $((SECONDS - started)) s:"
printf '   %s\n' "${timings[@]}"
