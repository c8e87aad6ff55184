#!/usr/bin/env bash
# Kubernetes end to end: a real one-node cluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kubectl, built from the
# Go module proxy by scripts/kube/build.sh) on a private containerd with the
# CRI plugin, running pods through the RuntimeClasses `tether`,
# `tether-sandbox` (pods without pause; containerd 2.x only) and `runc`;
# the checks are in scripts/kube/checks.sh.
#
#   scripts/kube-e2e.sh [--containerd VERSION] [--runc VERSION] [--shim PATH]
#                       [--keep]
#
#   --containerd VERSION  a version scripts/peers.sh builds (default 2.3.7),
#                         or system (Debian's 1.6.20)
#   --runc VERSION        the runc both RuntimeClasses run: a version
#                         scripts/peers.sh builds (default: the newest of
#                         tests/peers/runc-matrix), or system (Debian's 1.1.5)
#   --shim PATH           the tether shim (default: cargo build --release)
#   --keep                keep the private temp dir
#
# Environment: KUBE_HANDLERS (default "tether tether-sandbox runc"). Everything runs under a
# private temp dir and is stopped by PID at the end, failure included
# (scripts/critest.sh --exec does containerd, the registry and CNI;
# scripts/kube/cluster.sh the Kubernetes components). Needs root, Go, openssl.
# Last line printed: `N passed, M failed`. Exit status 0 when every check
# passed, 1 when one failed, 2 when the run could not be set up.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
containerd_version=2.3.7
runc_version="$(bash "$here/scripts/peers.sh" runc-list | head -n1)"
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --containerd) containerd_version="${2:?}"; shift 2 ;;
        --runc) runc_version="${2:?}"; shift 2 ;;
        --shim) args+=(--shim "${2:?}"); shift 2 ;;
        --keep) args+=(--keep); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
        *) echo "kube-e2e.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
# Setup failures end with the summary line too: nothing could be checked.
setup_failed() {
    echo "kube-e2e.sh: $*" >&2
    echo "0 passed, 1 failed"
    exit 2
}
command -v openssl >/dev/null || setup_failed "openssl is needed (apt-get install openssl)"
t0=$SECONDS
kube_bin="$(bash "$here/scripts/kube/build.sh")" || setup_failed "building Kubernetes failed"
echo "[kube-e2e.sh] Kubernetes binaries: $kube_bin ($((SECONDS - t0)) s)" >&2
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
# critest.sh in the background, so that a TERM or INT sent to this script
# (timeout(1) in tests/kube_e2e.rs) reaches it and its clean-up runs.
bash "$here/scripts/critest.sh" --containerd "$containerd_version" --runc "$runc_version" \
    --handler tether "${args[@]}" \
    --exec -- env KUBE_BIN="$kube_bin" bash "$here/scripts/kube/checks.sh" >"$out" &
pid=$!
# Its stdout, live; tail ends once it has printed the rest after critest.sh.
tail -n +1 -s 0.2 -f --pid="$pid" "$out" &
tailpid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
status=0
wait "$pid" || status=$?
# A trapped signal ends the first wait early: wait for the clean-up too.
while kill -0 "$pid" 2>/dev/null; do
    status=0
    wait "$pid" || status=$?
done
trap - TERM INT
wait "$tailpid" 2>/dev/null || true
# critest.sh failing before the checks ran (containerd, registry, CNI).
grep -Eq '^[0-9]+ passed, [0-9]+ failed$' "$out" || setup_failed "the cluster could not be set up (status $status)"
exit "$status"
