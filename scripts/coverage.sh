#!/usr/bin/env bash
# Line coverage of every unit and integration test (cargo llvm-cov), the
# `txflow` processes the integration tests start included, against the
# harness's real servers; a table per crate.
#
#   scripts/coverage.sh [OUT_DIR]      default target/coverage
#
# Installs what is missing: Debian's llvm-19 (its llvm-cov and llvm-profdata
# read this rustc's profiles) and cargo-llvm-cov into $TXFLOW_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/coverage}
CACHE=${TXFLOW_CACHE:-$HOME/.cache/txflow}

if [ ! -x /usr/lib/llvm-19/bin/llvm-cov ]; then
  echo "coverage: installing llvm-19 (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq llvm-19 >/dev/null
fi
export LLVM_COV=/usr/lib/llvm-19/bin/llvm-cov
export LLVM_PROFDATA=/usr/lib/llvm-19/bin/llvm-profdata
if [ ! -x "$CACHE/bin/cargo-llvm-cov" ]; then
  echo "coverage: installing cargo-llvm-cov into $CACHE (once)" >&2
  cargo install --locked cargo-llvm-cov --root "$CACHE" >&2
fi
export PATH="$CACHE/bin:$PATH"

dir=$(mktemp -d "${TMPDIR:-/tmp}/txflow-harness.XXXXXX")
trap 'scripts/harness.sh stop "$dir"' EXIT
scripts/harness.sh start "$dir"
# shellcheck disable=SC1091
source "$dir/env"

mkdir -p "$out"
cargo llvm-cov clean --workspace
# Timing-bound tests may fail under instrumentation; the report is made all
# the same and the failures are listed above it.
cargo llvm-cov --workspace --locked --ignore-run-fail --json --summary-only \
  --output-path "$out/coverage.json"
cargo llvm-cov report --html --output-dir "$out" >/dev/null

python3 - "$out/coverage.json" "$PWD" <<'PY'
import json, sys, collections
data = json.load(open(sys.argv[1]))["data"][0]["files"]
root = sys.argv[2].rstrip("/") + "/"
per = collections.defaultdict(lambda: [0, 0])
for f in data:
    name = f["filename"].removeprefix(root)
    if not name.startswith("crates/") or "/tests/" in name:
        continue
    crate = name.split("/")[1]
    lines = f["summary"]["lines"]
    per[crate][0] += lines["covered"]
    per[crate][1] += lines["count"]
print("| crate | lines covered | lines | coverage |")
print("|---|---:|---:|---:|")
total = [0, 0]
for crate in sorted(per):
    covered, count = per[crate]
    total[0] += covered; total[1] += count
    print(f"| {crate} | {covered:,} | {count:,} | {100 * covered / count:.1f} % |")
print(f"| all | {total[0]:,} | {total[1]:,} | {100 * total[0] / total[1]:.1f} % |")
PY
echo "HTML report: $out/html/index.html" >&2
