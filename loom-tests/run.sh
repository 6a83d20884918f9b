#!/usr/bin/env bash
# Runs every loom model of diana-bus. Bounded so the suite stays within a
# few minutes on a 2-core machine; raise LOOM_MAX_PREEMPTIONS locally for a
# deeper search.
#
# Usage: loom-tests/run.sh [MODEL_FILE ...] [NAME_FILTER ...] [HARNESS_FLAG ...]
# A MODEL_FILE names a file of loom-tests/tests/ without `.rs` (park_wake)
# and runs only that file's models; another word filters models by name.
# From the first argument that starts with `-`, everything goes to the
# test harness as it is. Fails if no model ran (a misspelt name).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg diana_bus_loom -C debug-assertions"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
files=()
harness=()
flags=0
for arg in "$@"; do
    if [[ $arg == -* ]]; then
        flags=1
    fi
    if [[ $flags -eq 0 && -f "loom-tests/tests/$arg.rs" ]]; then
        files+=(--test "$arg")
    else
        harness+=("$arg")
    fi
done
if [[ ${#files[@]} -eq 0 ]]; then
    files=(--tests)
fi
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cargo test --release -p loom-tests "${files[@]}" -- --test-threads=1 ${harness[@]+"${harness[@]}"} 2>&1 | tee "$out"
if ! grep -qE "test result: ok\. [1-9]" "$out"; then
    echo "loom-tests/run.sh: no model ran for: $*" >&2
    exit 1
fi
