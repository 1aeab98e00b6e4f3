#!/usr/bin/env bash
# The project's test command (the README's, and CI's through .ci/run):
# formatting, lints, then every test against real PostgreSQL and S3 servers
# started by scripts/harness.sh and stopped on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the build needs (libssl-dev for librdkafka's TLS), and
# the servers, installed once.
scripts/harness.sh install

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

dir=$(mktemp -d "${TMPDIR:-/tmp}/txflow-harness.XXXXXX")
trap 'scripts/harness.sh stop "$dir"' EXIT
scripts/harness.sh start "$dir"
# shellcheck disable=SC1091
source "$dir/env"

# Alert rules (promtool) and the dashboard (Grafana's SDK), offline.
scripts/check-observability.sh

echo "== cargo test"
cargo test --workspace --locked "$@"

# A short fuzzing smoke of each parser (scripts/fuzz.sh; skipped, saying
# so, without a nightly toolchain).
if [ $# -eq 0 ]; then
  echo "== fuzz smoke (scripts/fuzz.sh 10)"
  scripts/fuzz.sh 10
fi

# The Airflow DAG in a real Airflow, against the same servers (skipped when
# arguments narrow the tests to some crates or tests).
if [ $# -eq 0 ]; then
  echo "== airflow dags test (scripts/test-airflow.sh)"
  TXFLOW_BIN=$PWD/target/debug/txflow scripts/test-airflow.sh
fi
