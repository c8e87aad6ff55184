#!/usr/bin/env bash
# The benchmark suite (B1-B7, quick mode) on cgroup v2: runs bench/bench.py
# in a testenv environment (as bench/run.sh does) in the cgroup v2 guest (scripts/guest-test.sh: Debian's kernel, the unified
# hierarchy only; emulated with TCG where the host's KVM cannot boot it) and
# writes its figures into docs/benchmarks.md as a v2 section, beside the
# tether/Go ratios of the host's own (v1) run already there.
#
#   bash bench/guest-v2.sh [extra bench.py options, e.g. --only B1,B2]
#
# CPU time is read from cpu.stat (usage_usec) in the guest. Under TCG every
# figure is slower in absolute terms; the ratios are what compare.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench/guest-v2.sh: run as root" >&2; exit 1; }
cargo build --release --bins >&2
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
# In the guest, /tmp is the scratch disk: the report goes there, and its
# table comes back on stdout.
GUEST_TIMEOUT="${GUEST_TIMEOUT:-5400}" bash scripts/guest-test.sh --mem 6144 -- bash -c '
    set -e
    target/release/testenv exec --containerd system --log-level warn \
        --runc "$(command -v runc)" -- \
        python3 bench/bench.py --quick --out-dir /tmp/bench-v2 --results-dir /tmp/bench-v2 "$@" >&2
    echo "==== machine"
    grep -E "^- (Date|Machine|cgroups|containerd|Go shim|Rounds)" /tmp/bench-v2/benchmarks.md
    echo "==== table"
    grep -E "^\| B" /tmp/bench-v2/benchmarks.md
' bench "$@" >"$out"
python3 bench/v2_section.py "$out" docs/benchmarks.md
echo "bench/guest-v2.sh: wrote the cgroup v2 section of docs/benchmarks.md" >&2
