#!/usr/bin/env bash
# Runs every loom model of diana-bus. Bounded so the suite stays within a
# few minutes on a 2-core machine; raise LOOM_MAX_PREEMPTIONS locally for a
# deeper search.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg diana_bus_loom -C debug-assertions"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
exec cargo test --release -p loom-tests --tests -- --test-threads=1 "$@"
