#!/usr/bin/env bash
# The long soak runs, outside CI's time budget: the same tests `cargo test`
# runs with smaller sizes, at the sizes docs/reliability.md reports.
#
#   scripts/soak.sh
#
#   fuzz_smoke   every fuzz target for 30 s (cargo test: 10 s)
#   exec_soak    10,000 execs through one shim (cargo test: 2,000)
#   events_away  1,000 containers exiting while containerd is away for
#                10 minutes (cargo test: 100 containers, 60 s)
#
# Needs what `cargo test` needs (root, the peers .ci/run builds, cargo-fuzz).
# About 20 minutes on a 2-core VM.
set -euo pipefail
cd "$(dirname "$0")/.."
export TETHER_FUZZ_SECONDS="${TETHER_FUZZ_SECONDS:-30}"
export TETHER_EXEC_CYCLES="${TETHER_EXEC_CYCLES:-10000}"
export TETHER_AWAY_CONTAINERS="${TETHER_AWAY_CONTAINERS:-1000}"
export TETHER_AWAY_SECONDS="${TETHER_AWAY_SECONDS:-600}"
exec cargo test --test fuzz_smoke --test exec_soak --test events_away -- --nocapture
