#!/usr/bin/env bash
# Offline checks of deploy/observability (run by scripts/test.sh):
# - the example Prometheus configuration loads, and the alert rules load
#   and pass their unit tests (promtool test rules);
# - the Grafana dashboard decodes with the Grafana foundation SDK for the
#   Grafana version we target (no Grafana server can run here), installed
#   once into ~/.cache/txflow/grafana-venv.
# The PromQL of both is checked against the exported metrics by a Rust test
# (txflow-cli's catalogue tests, in cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${TXFLOW_CACHE:-$HOME/.cache/txflow}
# The SDK build generated for Grafana 11.6 (a plain install picks another).
SDK='grafana-foundation-sdk==1769699379!11.6.0'

venv=$CACHE/grafana-venv
if ! "$venv/bin/python" -c 'import grafana_foundation_sdk' 2>/dev/null; then
  echo "installing $SDK into $venv (once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "$SDK"
fi
# `scripts/check-observability.sh install`: only that (scripts/test.sh
# installs ahead, beside the build).
[ "${1:-}" != install ] || exit 0

echo "== promtool check config / rules / test rules (deploy/observability)"
promtool check config deploy/observability/prometheus.yml
promtool check rules deploy/observability/alerts.yml
promtool test rules deploy/observability/alerts_test.yml

echo "== Grafana dashboard with the foundation SDK ($SDK)"
"$venv/bin/python" deploy/observability/grafana/check_dashboard.py \
  deploy/observability/grafana/txflow.json
