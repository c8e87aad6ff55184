#!/usr/bin/env bash
# Fuzzes tether's parsers of outside input (src/fuzzing.rs) with cargo-fuzz
# (libFuzzer, nightly Rust), each target for a while, and sums it up.
#
#   fuzz/run.sh [--seconds N] [--jobs J] [TARGET...]
#
#   --seconds N  per target (default 30; CI uses 30, the first long run 600)
#   --jobs J     targets fuzzed at once (default: the number of CPUs)
#   TARGET       default: every target in fuzz/Cargo.toml
#
# The committed seed corpus (fuzz/corpus/TARGET) is read, never written: new
# inputs go to a temp dir, dropped at the end. A crash, leak or timeout
# leaves its input in fuzz/artifacts/TARGET/ and fails the run. Prints one
# line a target: runs, seconds, corpus size, and the result; the last line is
# `N targets passed, M failed`. Exit status 0 when none failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds=30 jobs="$(nproc)"
targets=()
while (($#)); do
    case "$1" in
        --seconds) seconds="${2:?}"; shift 2 ;;
        --jobs) jobs="${2:?}"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
        -*) echo "fuzz/run.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
((${#targets[@]})) || mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$here/Cargo.toml" | grep -v '^tether-fuzz$')
command -v cargo-fuzz >/dev/null || { echo "fuzz/run.sh: cargo-fuzz is needed (cargo install cargo-fuzz)" >&2; exit 2; }
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "fuzz/run.sh: a nightly toolchain is needed (rustup toolchain install nightly)" >&2; exit 2; }

cd "$here/.."
work="$(mktemp -d "${TMPDIR:-/tmp}/tether-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$SECONDS
# One build for all targets (release, debug assertions on, AddressSanitizer).
cargo +nightly fuzz build --fuzz-dir fuzz -O --debug-assertions >&2
echo "fuzz/run.sh: targets built in $((SECONDS - start)) s" >&2

one() {
    local t="$1" out="$work/$1"
    mkdir -p "$out/corpus" "$here/artifacts/$t"
    local status=0
    cargo +nightly fuzz run --fuzz-dir fuzz -O --debug-assertions "$t" "$out/corpus" "$here/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$t/" >"$out/log" 2>&1 || status=$?
    local runs corpus
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n1)"
    corpus="$(find "$out/corpus" "$here/corpus/$t" -type f | wc -l)"
    if ((status == 0)); then
        printf '%-16s ok      %s runs in %s s, corpus %s\n' "$t" "${runs:-?}" "$seconds" "$corpus" >"$out/summary"
        rmdir "$here/artifacts/$t" 2>/dev/null || true
    else
        printf '%-16s FAILED  status %s after %s runs; input in fuzz/artifacts/%s/\n' "$t" "$status" "${runs:-?}" "$t" >"$out/summary"
        tail -n 40 "$out/log" >&2
    fi
}
export -f one
export work here seconds
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'one "$@"' _ {}

passed=0 failed=0
for t in "${targets[@]}"; do
    cat "$work/$t/summary"
    if grep -q ' ok ' "$work/$t/summary"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
rmdir "$here/artifacts" 2>/dev/null || true
echo "$passed targets passed, $failed failed"
((failed == 0))
