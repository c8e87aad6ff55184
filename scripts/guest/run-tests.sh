#!/usr/bin/env bash
# Runs cargo test binaries one after the other, as `cargo test` would, and
# sums them up; scripts/guest-test.sh runs it inside the cgroup v2 guest.
#
#   scripts/guest/run-tests.sh [--filter TEST-FILTER] [--arg ARG]... -- BINARY...
#
#   --filter F   passed to every binary (libtest's name filter)
#   --arg A      passed to every binary too (repeatable; e.g. --test-threads=1)
#
# The binaries' output goes to stderr (the guest's console streams it live);
# stdout gets only the summary: one line a binary, its "test result:" line or
# how it ended. Runs in the current directory (cargo runs test binaries in
# the package's root) with CARGO_MANIFEST_DIR set to it.
# Exit status 0 when every binary passed, 1 otherwise.
set -uo pipefail
args=()
while (($#)); do
    case "$1" in
        --filter) args+=("${2:?--filter F}"); shift 2 ;;
        --arg) args+=("${2:?--arg A}"); shift 2 ;;
        --) shift; break ;;
        *) echo "run-tests: unknown option $1" >&2; exit 2 ;;
    esac
done
(($#)) || { echo "run-tests: no test binaries" >&2; exit 2; }
export CARGO_MANIFEST_DIR="${CARGO_MANIFEST_DIR:-$PWD}"
logs="$(mktemp -d "${TMPDIR:-/tmp}/run-tests.XXXXXX")"
summary=()
failed=0
for bin in "$@"; do
    name="$(basename "$bin")"
    name="${name%-*}" # the hash cargo appends
    echo "==== $name ($bin ${args[*]})" >&2
    start=$SECONDS
    "$bin" "${args[@]}" 2>&1 | tee "$logs/$name.log" >&2
    status=${PIPESTATUS[0]}
    result="$(grep -a '^test result:' "$logs/$name.log" | tail -n 1)"
    [[ -n $result ]] || result="no test result"
    ((status == 0)) || { failed=1; result="$result; exit status $status"; }
    summary+=("$(printf '%-28s %s (%d s)' "$name:" "$result" $((SECONDS - start)))")
done
printf '%s\n' "${summary[@]}"
rm -rf "$logs"
exit "$failed"
