#!/usr/bin/env bash
# The systemd node suite, for running in the test guest with systemd as PID 1
# (tests/systemd_node.rs runs it through `scripts/guest-test.sh --init
# systemd`):
#
#   scripts/guest/systemd-suite.sh SHIM TOOL TESTENV
#
# SHIM: tether's containerd-shim-tether-v2 (the cargo build). TOOL: the
# tests/systemd_node.rs test binary, whose update_through_the_task_api sends
# Update to a shim. TESTENV: the testenv binary (the same build), whose
# `testenv config --system` writes containerd's config.
#
# First it does what an operator does on a systemd node (README, "Install"):
# installs the shim in /usr/local/bin and our drop-in as
# /etc/systemd/system/containerd.service.d/50-tether.conf, writes
# /etc/containerd/config.toml with SystemdCgroup = true for every runtime
# (testenv config),
# reloads systemd and starts containerd.service: Debian's unit, with a
# guest-only drop-in (10-tether-guest.conf) pointing ExecStart and PATH at
# containerd 2.3.7 of /var/cache/tether-peers. Then, for tether and for
# containerd's Go shim (2.3.7's containerd-shim-runc-v2), each with the
# newest runc of tests/peers/runc-matrix and with Debian's runc, the checks
# of scripts/guest/systemd/checks.sh (ctr: run, exit codes, exec, a
# terminal, kill, metrics against the scope's files, Update, pause, OOM) and
# scripts/guest/systemd/cri.sh (a CRI pod of two containers under a
# kubepods slice, one shim, ShimCgroup a slice), then
# scripts/guest/systemd/restart.sh (containerd restarted, SIGKILLed and
# stopped with containers of every kind running; then the drop-in's own
# effect, against a unit with systemd's default KillMode, and without it).
#
# Each check prints `ok|FAIL SHIM RUNC NAME [detail]` on stdout; the last
# line is `N passed, M failed`. Exit status 0 when none failed.
set -uo pipefail
(($# == 3)) || { echo "systemd-suite: SHIM TOOL TESTENV" >&2; exit 2; }
shim="$(realpath "$1")" tool="$(realpath "$2")" testenv="$(realpath "$3")"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
peers="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
sd="$repo/scripts/guest/systemd"
# shellcheck source=scripts/guest/systemd/lib.sh
source "$sd/lib.sh"

[[ "$(cat /proc/1/comm)" == systemd ]] || { echo "systemd-suite: PID 1 is not systemd" >&2; exit 2; }
[[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]] || { echo "systemd-suite: /sys/fs/cgroup is not cgroup v2" >&2; exit 2; }
[[ -x $shim ]] || { echo "systemd-suite: no shim at $shim" >&2; exit 2; }
[[ -x $tool ]] || { echo "systemd-suite: no test binary at $tool" >&2; exit 2; }
[[ -x $testenv ]] || { echo "systemd-suite: no testenv at $testenv" >&2; exit 2; }
cd_bin="$peers/containerd-2.3.7/bin"
[[ -x $cd_bin/containerd ]] || { echo "systemd-suite: no containerd 2.3.7 in $cd_bin (scripts/peers.sh matrix)" >&2; exit 2; }
newest="$(grep -v '^#' "$repo/tests/peers/runc-matrix" | awk 'NF {print $1; exit}')"
runc_newest="$peers/runc-$newest/bin/runc"
[[ -x $runc_newest ]] || { echo "systemd-suite: no runc $newest in $peers (scripts/peers.sh runc-matrix)" >&2; exit 2; }
runc_debian=/usr/sbin/runc
[[ -x $runc_debian ]] || { echo "systemd-suite: no Debian runc at $runc_debian" >&2; exit 2; }

work="$(mktemp -d /tmp/systemd-suite.XXXXXX)"
export SUITE_WORK="$work"
# Boot: systemd's start to this unit's, on the monotonic clock (the boot
# is not finished while this unit runs: it is part of the boot target).
sd_start="$(systemctl show -p UserspaceTimestampMonotonic --value)"
unit_start="$(systemctl show -p InactiveExitTimestampMonotonic --value tether-test.service)"
read -r up _ </proc/uptime
say "systemd $(systemctl --version | head -n1 | awk '{print $2}') PID 1 since ${sd_start:0:-6}.${sd_start: -6:2} s of uptime, this unit since $((unit_start / 1000000)).$(((unit_start / 10000) % 100)) s; now $up s"
say "virtualization: $(systemctl show -p Virtualization --value) (empty: none)"
systemctl --failed --no-legend --plain 2>/dev/null | sed 's/^/systemd-suite: failed unit: /' >&2

# --- what an operator does (README, "Install")
install -m 0755 "$shim" /usr/local/bin/containerd-shim-tether-v2
install -D -m 0644 "$repo/systemd/containerd.service.d/50-tether.conf" \
    /etc/systemd/system/containerd.service.d/50-tether.conf
# The guest's own: containerd 2.3.7 instead of Debian's 1.6.20, and its
# directory first in PATH, where containerd looks for
# containerd-shim-runc-v2 (Debian's 1.6.20 is in /usr/bin).
install -D -m 0644 /dev/stdin /etc/systemd/system/containerd.service.d/10-tether-guest.conf <<EOF
[Service]
ExecStart=
ExecStart=$cd_bin/containerd
Environment=PATH=$cd_bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
write_containerd_config "$runc_newest" "$runc_debian" /etc/containerd ||
    { echo "systemd-suite: testenv config failed" >&2; exit 2; }
for s in tether-shims go-shims; do
    printf '[Unit]\nDescription=%s\n' "$s" | install -m 0644 /dev/stdin "/etc/systemd/system/$s.slice"
done
systemctl daemon-reload
systemctl start tether-shims.slice go-shims.slice
# systemd makes a slice's cgroup only once something runs in it; ShimCgroup
# (tether's, as the Go shim's) must exist.
for s in tether-shims go-shims; do
    mkdir -p "/sys/fs/cgroup/$s.slice"
done
start=$SECONDS
if systemctl start containerd.service && wait_containerd; then
    pass - - "containerd.service started ($((SECONDS - start)) s)"
else
    fail - - "containerd.service did not start"
    journalctl -u containerd --no-pager | tail -n 40 >&2
fi
# Plugins that did not load, and containerd's warnings, for the record.
c plugins ls 2>/dev/null | awk 'NR > 1 && $NF != "ok" {print "systemd-suite: plugin " $1 " " $2 ": " $NF}' >&2
c plugins ls --detailed 2>/dev/null | grep -B3 -A8 -E '^ *Error:' | sed 's/^/systemd-suite: /' >&2
journalctl -u containerd --no-pager -o cat 2>/dev/null | grep -E 'level=(error|warning)' | tail -n 20 |
    sed 's/^/systemd-suite: containerd: /' >&2
props="$(systemctl show containerd -p KillMode -p Delegate -p DropInPaths -p ExecStart)"
# shellcheck disable=SC2001 # a prefix on every line, which ${props//} cannot anchor
sed 's/^/systemd-suite: /' <<<"$props" >&2
check - - "our drop-in is in effect" "yes" \
    "$(grep -q 'containerd.service.d/50-tether.conf' <<<"$props" && grep -qx 'KillMode=process' <<<"$props" && grep -qx 'Delegate=yes' <<<"$props" && echo yes || echo no)"

# --- the checks, per shim and runc
# SYSTEMD_SUITE_SHIMS (none, or some of "tether go"), SYSTEMD_SUITE_RUNCS
# and SYSTEMD_SUITE_RESTART=0 narrow a run by hand (the test runs
# everything); SYSTEMD_SUITE_OOM_ONLY=N runs only the OOM check, N times per
# shim and runc.
for shim_kind in ${SYSTEMD_SUITE_SHIMS:-tether go}; do
    [[ $shim_kind == none ]] && continue
    for runc_kind in ${SYSTEMD_SUITE_RUNCS:-newest debian}; do
        runc_bin="$runc_newest"
        [[ $runc_kind == debian ]] && runc_bin="$runc_debian"
        label="$runc_kind"
        [[ $runc_kind == newest ]] && label="$newest"
        [[ $runc_kind == debian ]] && label="$($runc_bin --version | awk 'NR == 1 {print $3}')"
        if [[ -n ${SYSTEMD_SUITE_OOM_ONLY:-} ]]; then
            oom_checks "$shim_kind" "$label" "$runc_bin" "$SYSTEMD_SUITE_OOM_ONLY"
            continue
        fi
        checks "$shim_kind" "$label" "$runc_bin"
        cri_checks "$shim_kind" "$label" "$runc_kind"
    done
done
if [[ ${SYSTEMD_SUITE_RESTART:-1} == 1 ]]; then
    restart_checks "$runc_newest"
    dropin_checks "$runc_newest"
fi

summary
