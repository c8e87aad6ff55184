#!/usr/bin/env bash
# The part of scripts/critest.sh that runs inside its `testenv exec`
# environment (with testenv's CONTAINERD_* and TESTENV_DIR and critest.sh's
# CRI_* variables): waits for containerd's CRI, completes the environment
# critest.sh documents, then either runs critest and summarises its report,
# or runs a command.
#
#   scripts/cri/inside.sh --critest
#   scripts/cri/inside.sh --exec CMD [ARGS...]
#
# --critest prints `critest HANDLER: P passed, F failed, S skipped` last (also
# into $CRI_RESULTS/summary) and exits 0 when nothing failed, 1 otherwise, 2
# when critest wrote no report.
set -euo pipefail
: "${TESTENV_DIR:?run by scripts/critest.sh}" "${CRI_RESULTS:?}" "${CRICTL:?}" "${CONTAINERD_PID_FILE:?}" "${CRI_SHIM:?}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
log() { echo "[critest.sh] $*" >&2; }

export CRI_TMP="$TESTENV_DIR" CONTAINERD_NAMESPACE=k8s.io CRI_CONFIG_FILE="$TESTENV_DIR/crictl.yaml" \
    CRI_BUSYBOX_IMAGE="registry.k8s.io/e2e-test-images/busybox:1.29-2" \
    CRI_PAUSE_IMAGE="registry.k8s.io/pause:3.10"
printf 'runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 30\n' "$CRI_ENDPOINT" "$CRI_ENDPOINT" >"$CRI_CONFIG_FILE"
cp "$CONTAINERD_CONFIG" "$CRI_RESULTS/config.toml"
ready=0
for _ in $(seq 240); do
    if "$CRICTL" --timeout 2s info >"$CRI_RESULTS/cri-info.json" 2>/dev/null; then ready=1; break; fi
    sleep 0.25
done
[[ $ready == 1 ]] || { log "containerd's CRI did not answer"; tail -n 30 "$CONTAINERD_LOG" >&2; exit 2; }
CONTAINERD_PID="$(cat "$CONTAINERD_PID_FILE")"
export CONTAINERD_PID
log "containerd $CONTAINERD_VERSION (pid $CONTAINERD_PID) on $CONTAINERD_ADDRESS; handler $CRI_HANDLER, shim $CRI_SHIM"
log "ready after $((SECONDS - ${CRI_STARTED:-0})) s"

if [[ "${1:-}" == --exec ]]; then
    shift
    log "exec: $*"
    exec "$@"
fi
[[ "${1:-}" == --critest ]] || { log "usage: inside.sh --critest | --exec CMD..."; exit 2; }

mkdir -p "$TESTENV_DIR/critest-tmp"
args=(
    -runtime-endpoint "$CRI_ENDPOINT"
    -image-endpoint "$CRI_ENDPOINT"
    -runtime-handler "$CRI_HANDLER"
    -parallel "${CRI_PARALLEL:-2}"
    -ginkgo.no-color
    -ginkgo.junit-report "$CRI_RESULTS/junit.xml"
    -ginkgo.json-report "$CRI_RESULTS/report.json"
)
[[ -n "${CRI_FOCUS:-}" ]] && args+=(-ginkgo.focus "$CRI_FOCUS")
[[ -n "${CRI_SKIP:-}" ]] && args+=(-ginkgo.skip "$CRI_SKIP")
log "critest ${args[*]}"
t0=$SECONDS
critest_rc=0
(cd "$CRI_RESULTS" && TMPDIR="$TESTENV_DIR/critest-tmp" PATH="$CRI_BIN:$PATH" \
    "$CRI_BIN/critest" "${args[@]}") </dev/null 2>&1 | tee "$CRI_RESULTS/critest.log" || critest_rc=$?
log "critest took $((SECONDS - t0)) s (exit $critest_rc)"
if [[ ! -f "$CRI_RESULTS/report.json" ]]; then
    log "critest wrote no report"
    exit 2
fi
read -r passed failed skipped < <(python3 "$here/scripts/cri/report.py" "$CRI_RESULTS/report.json" "$CRI_RESULTS")
status=0
if [[ $failed -gt 0 || $critest_rc != 0 ]]; then status=1; fi
echo "critest $CRI_HANDLER: $passed passed, $failed failed, $skipped skipped" | tee "$CRI_RESULTS/summary"
exit "$status"
