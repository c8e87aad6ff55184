#!/usr/bin/env bash
# Restarts the private containerd of a `scripts/critest.sh --exec` run:
# SIGKILLs the current one (the PID in $CRI_TMP/containerd.pid), starts a new
# one with the same binary, config and PATH, appending to the same log, waits
# until its CRI answers and prints the new PID (also into
# $CRI_TMP/containerd.pid). It runs inside critest.sh's testenv environment,
# so the new containerd is in its cgroup and stopped with it.
#
#   scripts/cri/restart-containerd.sh [--no-kill]
#
#   --no-kill   only start (the current containerd is already gone)
#
# Needs the environment critest.sh --exec sets: CRI_TMP, CONTAINERD_BIN,
# CONTAINERD_CONFIG, CONTAINERD_LOG, CONTAINERD_PATH, CRICTL, CRI_ENDPOINT.
# Exit status 0 when the new containerd answers, 1 otherwise.
set -euo pipefail
: "${CRI_TMP:?} ${CONTAINERD_BIN:?} ${CONTAINERD_CONFIG:?} ${CONTAINERD_LOG:?} ${CRICTL:?} ${CRI_ENDPOINT:?}"
kill_old=1
[[ "${1:-}" == --no-kill ]] && kill_old=0

old="$(cat "$CRI_TMP/containerd.pid")"
if [[ $kill_old == 1 ]] && [[ "$(readlink "/proc/$old/exe" 2>/dev/null)" == "$(realpath "$CONTAINERD_BIN")" ]]; then
    kill -KILL "$old"
fi
# Gone, or a zombie its parent has not reaped yet.
for _ in $(seq 100); do
    [[ "$(awk '{print $3}' "/proc/$old/stat" 2>/dev/null)" =~ ^(Z|)$ ]] && break
    sleep 0.1
done

echo "---- restart-containerd.sh $(date -u +%FT%TZ) ----" >>"$CONTAINERD_LOG"


env -u CONTAINERD_ADDRESS -u CONTAINERD_NAMESPACE PATH="${CONTAINERD_PATH:-$PATH}" \
    "$CONTAINERD_BIN" --config "$CONTAINERD_CONFIG" </dev/null >>"$CONTAINERD_LOG" 2>&1 &
new=$!
echo "$new" >"$CRI_TMP/containerd.pid"
for _ in $(seq 120); do
    kill -0 "$new" 2>/dev/null || { echo "restart-containerd.sh: containerd exited" >&2; tail -n 20 "$CONTAINERD_LOG" >&2; exit 1; }
    if "$CRICTL" --timeout 2s -r "$CRI_ENDPOINT" info >/dev/null 2>&1; then
        echo "$new"
        exit 0
    fi
    sleep 0.25
done
echo "restart-containerd.sh: containerd's CRI did not answer" >&2
exit 1
