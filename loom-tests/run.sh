#!/usr/bin/env bash
# Runs every loom model of diana-bus. Bounded so the suite stays within a
# few minutes on a 2-core machine; raise LOOM_MAX_PREEMPTIONS locally for a
# deeper search.
#
# Usage: loom-tests/run.sh [MODEL_FILE ...] [NAME_FILTER ...]
# A MODEL_FILE names a file of loom-tests/tests/ without `.rs` (park_wake)
# and runs only that file's models; anything else filters models by name.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg diana_bus_loom -C debug-assertions"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
files=()
filters=()
for arg in "$@"; do
    if [[ -f "loom-tests/tests/$arg.rs" ]]; then
        files+=(--test "$arg")
    else
        filters+=("$arg")
    fi
done
if [[ ${#files[@]} -eq 0 ]]; then
    files=(--tests)
fi
exec cargo test --release -p loom-tests "${files[@]}" -- --test-threads=1 "${filters[@]}"
