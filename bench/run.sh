#!/usr/bin/env bash
# Benchmark suite: tether vs containerd-shim-runc-v2 (see bench/README.md).
#
#   bash bench/run.sh           full run (~10 min on 2 vCPUs plus the build), writes docs/benchmarks.{md,png}
#   bash bench/run.sh --quick   fewer rounds and containers, for development
#
# Extra options are passed to bench/bench.py (--only B2,B5 ; --out-dir DIR).
# Needs root, containerd 1.6+, ctr, runc, busybox-static, gcc, python3, iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench: run as root" >&2
    exit 1
fi
for tool in cargo ctr containerd runc gcc python3; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "bench: /bin/busybox (busybox-static) not found" >&2; exit 1; }

build_start=$(date +%s)
echo "[bench] cargo build --release --bins" >&2
cargo build --release --bins
export BENCH_BUILD_SECONDS=$(( $(date +%s) - build_start ))

if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "[bench] matplotlib missing; trying pip install (else the chart falls back to SVG)" >&2
    python3 -m pip install --quiet matplotlib >&2 || true
fi

# The harness runs as the command of a testenv environment (testenv/): its
# own cgroup, mount, network, IPC and UTS namespaces, and in them a private
# containerd (Debian's, CRI disabled; runc first on its PATH). Teardown is
# testenv's, on exit, error, SIGINT, SIGTERM and SIGHUP: it kills the
# environment's cgroup and the namespaces go with it. Nothing is started
# before this exec.
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/testenv" exec --containerd system --log-level warn \
    --runc "$(command -v runc)" -- \
    python3 bench/bench.py --command "bash bench/run.sh $*" "$@"
