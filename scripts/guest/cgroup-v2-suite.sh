#!/usr/bin/env bash
# The cgroup v2 suite, for running in the test guest (tests/cgroup_v2.rs's
# in_a_cgroup_v2_guest starts it through scripts/guest-test.sh):
#
#   scripts/guest/cgroup-v2-suite.sh TEST-BINARY GO-SHIM
#
# GO-SHIM: the Go shim the direct scenarios start (Debian's, 1.6.20).
#
# Runs TEST-BINARY's ignored tests (tests/cgroup_v2.rs built by cargo: its
# cgroup v2 scenarios) twice: with tether on containerd 2.3.7 and 1.6.20 (the
# matrix tests of the other versions are left out by name), then with
# containerd's Go shim for comparison, on containerd 2.3.7 only
# (TETHER_TEST_RUNTIME for the
# scenarios that go through containerd and ctr, TETHER_DIRECT_SHIM=GO-SHIM
# for those that drive the shim directly); the comparison only with
# TETHER_CGROUP_V2_GO=1 (it checks the scenarios, not tether, and costs CI
# about 4 minutes of emulated guest). Their output goes to stderr; stdout
# gets one line each, "tether: test result: ..." and "go-shim: ...", with the
# time taken. Exit status 0 when every run passed.
set -uo pipefail
(($# == 2)) || { echo "cgroup-v2-suite: TEST-BINARY GO-SHIM" >&2; exit 2; }
bin="$1" go_shim="$2"
[[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]] || { echo "cgroup-v2-suite: /sys/fs/cgroup is not cgroup v2" >&2; exit 2; }
[[ -x $bin ]] || { echo "cgroup-v2-suite: $bin is not executable" >&2; exit 2; }
[[ -x $go_shim ]] || { echo "cgroup-v2-suite: no Go shim at $go_shim" >&2; exit 2; }
log="$(mktemp "${TMPDIR:-/tmp}/cgroup-v2-suite.XXXXXX")"
failed=0
summary=()
run() {
    local who="$1"
    shift
    echo "==== $who: $bin" >&2
    local start=$SECONDS
    # Arguments after "--" go to the test binary (libtest filters).
    local envs=() args=()
    while (($#)); do
        if [[ $1 == -- ]]; then shift; args=("$@"); break; fi
        envs+=("$1"); shift
    done
    env "${envs[@]}" "$bin" "${args[@]}" 2>&1 | tee "$log" >&2
    local status=${PIPESTATUS[0]}
    local result
    result="$(grep -a '^test result:' "$log" | tail -n 1)"
    [[ -n $result ]] || result="no test result"
    ((status == 0)) || { failed=1; result="$result; exit status $status"; }
    summary+=("$who: $result ($((SECONDS - start)) s)")
}
# Each containerd version is its own test (`<scenario>::v2_3`): the versions
# not wanted here are left out by name, never run.
others=(--skip ::v2_0 --skip ::v2_4 --skip ::v1_7)
run tether -- --ignored "${others[@]}"
# The comparison runs on the supported line only (2.3.7) and with Debian's
# runc only (not the v2_3_runc_newest variants), to keep the emulated guest's
# time in bounds.
[[ ${TETHER_CGROUP_V2_GO:-0} == 1 ]] &&
    run go-shim TETHER_TEST_RUNTIME=io.containerd.runc.v2 TETHER_DIRECT_SHIM="$go_shim" -- --ignored "${others[@]}" --skip ::v1_6 --skip runc_newest
rm -f "$log"
printf '%s\n' "${summary[@]}"
exit "$failed"
