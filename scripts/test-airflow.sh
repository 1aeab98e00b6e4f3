#!/usr/bin/env bash
# Runs the shipped DAG (deploy/airflow/dags/txflow_batch.py) in a real Apache
# Airflow 3 with `airflow dags test`, against the harness's PostgreSQL and S3:
#   1. two good files under an S3 prefix: both land in PostgreSQL, each with
#      its Airflow run id; the DAG run succeeds;
#   2. a third, broken file: the next run skips the two done files, the
#      broken file's task fails and the final check fails the DAG run.
#
# Needs the harness's variables (scripts/test.sh sources them) and TXFLOW_BIN.
# Airflow is installed once into $TXFLOW_CACHE/airflow-venv (about a minute;
# `scripts/test-airflow.sh install` does only that).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${TXFLOW_CACHE:-$HOME/.cache/txflow}
venv=$CACHE/airflow-venv
AIRFLOW_VERSION=3.3.2

# The marker is written last: an install cut short is redone, not reused.
if [ ! -f "$venv/.installed-$AIRFLOW_VERSION" ]; then
  echo "installing apache-airflow $AIRFLOW_VERSION into $venv (about a minute, once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "apache-airflow==$AIRFLOW_VERSION"
  touch "$venv/.installed-$AIRFLOW_VERSION"
fi
# `scripts/test-airflow.sh install`: only that (scripts/test.sh installs
# ahead, beside the build).
[ "${1:-}" != install ] || exit 0

: "${TXFLOW_TEST_DATABASE_URL:?run inside the harness (scripts/test.sh)}"
: "${TXFLOW_BIN:?set TXFLOW_BIN to the txflow binary}"

work=$(mktemp -d "${TMPDIR:-/tmp}/txflow-airflow.XXXXXX")
trap 'rm -rf "$work"' EXIT
export AIRFLOW_HOME=$work/airflow
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$PWD/deploy/airflow/dags
export AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
"$venv/bin/airflow" db migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; exit 1; }

db=airflow_$(date +%s%N)
psql -q "$TXFLOW_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
export DATABASE_URL=${TXFLOW_TEST_DATABASE_URL%/*}/$db
export AWS_ENDPOINT_URL=$TXFLOW_TEST_S3_ENDPOINT
prefix=airflow-$(date +%s%N)
export TXFLOW_INPUT=s3://$TXFLOW_TEST_S3_BUCKET/$prefix/
export TXFLOW_TASK_RETRIES=0

put() { # FILE KEY: upload through the S3 API
  curl -sf --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    -T "$1" "$TXFLOW_TEST_S3_ENDPOINT/$TXFLOW_TEST_S3_BUCKET/$prefix/$2"
}
sql() { psql -At "$DATABASE_URL" -c "$1"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

"$TXFLOW_BIN" generate --rows 50 --seed 1 -o "$work/a.csv"
"$TXFLOW_BIN" generate --rows 70 --seed 2 -o "$work/b.csv"
put "$work/a.csv" a.csv
put "$work/b.csv" b.csv

echo "== airflow dags test txflow_batch 2024-06-01 (two good files)"
"$venv/bin/airflow" dags test txflow_batch 2024-06-01 >"$work/run1.log" 2>&1 ||
  { cat "$work/run1.log"; fail "the DAG run with two good files failed"; }
[ "$(sql "SELECT count(*) FROM transactions")" = 120 ] || fail "expected 120 transactions"
[ "$(sql "SELECT count(*) FROM predictions")" = 120 ] || fail "expected 120 predictions"
# One txflow run per file: "<Airflow run id>.<map index>".
mapfile -t runs < <(sql "SELECT DISTINCT run_id FROM transactions ORDER BY 1")
echo "run ids: ${runs[*]}"
airflow_run=${runs[0]%.0}
[ ${#runs[@]} = 2 ] && [ "${runs[0]}" = "$airflow_run.0" ] && [ "${runs[1]}" = "$airflow_run.1" ] ||
  fail "expected the run ids <airflow run id>.0 and .1, got: ${runs[*]}"
case $airflow_run in manual__*) ;; *) fail "$airflow_run is not an Airflow run id" ;; esac
[ "$(sql "SELECT count(*) FROM run_files WHERE status = 'done'")" = 2 ] || fail "expected 2 files done"

printf 'id;description;amount;timestamp;merchant;operation_type\n1;x;-1,00;2024-06-02 10:00:00;EDF;card\n' >"$work/broken.csv"
put "$work/broken.csv" c_broken.csv

echo "== airflow dags test txflow_batch 2024-06-02 (a broken file; the done ones skipped)"
if "$venv/bin/airflow" dags test txflow_batch 2024-06-02 >"$work/run2.log" 2>&1; then
  cat "$work/run2.log"; fail "the DAG run with a broken file succeeded"
fi
[ "$(sql "SELECT count(*) FROM run_files WHERE run_id NOT LIKE '$airflow_run%'")" = 1 ] ||
  fail "the second run should have read only the new file"
[ "$(sql "SELECT count(*) FROM run_files WHERE status = 'failed' AND source_location LIKE '%c_broken.csv'")" = 1 ] ||
  fail "the broken file is not recorded as failed"
grep -q "failed or went over the error budget" "$work/run2.log" || { cat "$work/run2.log"; fail "the check task did not fail the run"; }
[ "$(sql "SELECT count(*) FROM transactions")" = 120 ] || fail "the broken file wrote rows"
echo "airflow: ok"
