#!/usr/bin/env bash
# The review loop, simulated on the labeled file
# (../shared/data/labeled/transactions_labeled_us.csv), split by merchant
# (20 % of the merchants held out for scoring): a model starts from 10 % of
# the training part, and each round a simulated reviewer labels ROUND more
# rows with their true category, the least confident predictions first or
# random ones; the model is trained again and scored (macro-F1 on the
# held-out merchants). See crates/txflow-learn/examples/review_loop.rs.
#
#   scripts/bench-review-loop.sh [ROUNDS] [ROUND]     default 24 rounds of 500
#
# Copy the output into docs/MODELS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-24}
round=${2:-500}
labeled=${LABELED:-../shared/data/labeled/transactions_labeled_us.csv}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
cargo run --release --locked -q -p txflow-learn --example review_loop -- "$labeled" "$rounds" "$round"
