#!/usr/bin/env bash
# Fuzzes txflow's parsers with cargo fuzz (libFuzzer, nightly toolchain):
# the CSV decoder (both dialects, any chunking), the Kafka event decoder,
# the /predict request parser and the model file loader. Each target runs SECONDS (default 60) from
# the seeds in fuzz/seeds/<target> plus a corpus kept in
# $TXFLOW_CACHE/fuzz-corpus/<target>, so later runs start where earlier ones
# stopped. A crash stops the script (exit 1) and leaves its input in
# $TXFLOW_CACHE/fuzz-artifacts/<target>; turn it into a regular test.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain; installs cargo-fuzz into $TXFLOW_CACHE once.
# With no nightly toolchain it says so and exits 0 (the test command then
# reports the smoke as skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(csv_decoder kafka_event predict_request model_file)

CACHE=${TXFLOW_CACHE:-$HOME/.cache/txflow}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)" >&2
  exit 0
fi
if [ ! -x "$CACHE/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz into $CACHE (once)" >&2
  cargo install --locked cargo-fuzz --root "$CACHE" >&2
fi
export PATH="$CACHE/bin:$PATH"

for target in "${targets[@]}"; do
  corpus="$CACHE/fuzz-corpus/$target"
  artifacts="$CACHE/fuzz-artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  echo "== fuzz $target for ${seconds}s"
  log="$artifacts/last-run.log"
  status=0
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|artifact_prefix|Test unit written)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz: $target failed (exit $status); a crashing input is in $artifacts, the log in $log" >&2
    exit 1
  fi
done
