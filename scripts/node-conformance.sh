#!/usr/bin/env bash
# Kubernetes' own node conformance suite, offline: the [NodeConformance] specs
# of k8s.io/kubernetes v1.34.4's test/e2e_node (e2e_node.test, run by the
# ginkgo CLI in parallel), against a private containerd 2.3.7 whose DEFAULT
# runtime is the handler under test (also configured as `test-handler`),
# running runc 1.5.3.
#
#   scripts/node-conformance.sh --handler runc|tether [--keep] [--focus R]
#                               [--skip R] [--procs N] [--results DIR]
#                               [--shim PATH]
#
#   --handler NAME   runc (containerd's Go shim) or tether (this repository's)
#   --focus R        ginkgo focus (default '\[NodeConformance\]')
#   --skip R         ginkgo skip (default
#                    '\[Serial\]|\[Slow\]|\[Flaky\]|\[Disruptive\]|AppArmor')
#   --procs N        ginkgo parallel processes (default 8: most specs wait)
#   --results DIR    default /tmp/tether-node-conformance/HANDLER-TIME
#   --shim PATH      the tether shim (default: critest.sh's cargo build)
#   --keep           keep the private temp dir
#
# How: scripts/kube/build.sh (kubelet) and scripts/node/build.sh
# (e2e_node.test, ginkgo, agnhost, nnp) build from the Go module proxy into
# /var/cache/tether-peers; scripts/node/mkimages.py makes the stand-in images
# (cached there too). Then, in a private mount namespace in which
# /usr/bin/systemd-run is hidden under /dev/null (so that e2e_node starts the
# kubelet itself instead of through systemd), scripts/critest.sh --exec sets
# up the registry (its images plus these), the CNI bridge and containerd (in
# a cgroup of its own, the kubelet's --runtime-cgroups) and runs
# scripts/node/run.sh, which runs the suite and undoes what the kubelet does
# to the host. Everything is stopped by PID, failure included.
#
# Results dir (printed): ginkgo.log, report.json, junit.xml, results.tsv
# (STATE<TAB>spec, one line a spec that ran or was skipped at run time),
# times.tsv (STATE<TAB>SECONDS<TAB>spec), failures.txt, skipped.txt,
# kubelet.log, services.log, host-diff.txt, critest/ (containerd.log ...).
# Last line printed: `N passed, M failed, K skipped` (K: specs selected by
# focus and skip that skipped themselves). Exit status: 0 when none failed,
# 1 when some failed, 2 when the run could not be set up.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${TETHER_PEERS_DIR:-/var/cache/tether-peers}"
handler="" keep=() focus='\[NodeConformance\]' skip='\[Serial\]|\[Slow\]|\[Flaky\]|\[Disruptive\]|AppArmor'
procs=8 results="" shim=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --handler) handler="${2:?}"; shift 2 ;;
        --focus) focus="${2:?}"; shift 2 ;;
        --skip) skip="$2"; shift 2 ;;
        --procs) procs="${2:?}"; shift 2 ;;
        --results) results="${2:?}"; shift 2 ;;
        --shim) shim=(--shim "${2:?}"); shift 2 ;;
        --keep) keep=(--keep); shift ;;
        -h|--help) usage ;;
        *) echo "node-conformance.sh: unknown argument $1" >&2; usage ;;
    esac
done
case "$handler" in runc|tether) ;; *) echo "node-conformance.sh: --handler runc|tether" >&2; usage ;; esac
log() { echo "[node-conformance.sh] $*" >&2; }
setup_failed() {
    log "$*"
    [[ -n "${kube_copy:-}" ]] && rm -rf "$kube_copy"
    echo "0 passed, 0 failed, 0 skipped"
    exit 2
}
[[ $EUID == 0 ]] || setup_failed "needs root"
started=$SECONDS

# ---------------------------------------------------------------- builds ---
t0=$SECONDS
kube_bin="$(bash "$here/scripts/kube/build.sh")" || setup_failed "building the kubelet failed"
node_bin="$(bash "$here/scripts/node/build.sh")" || setup_failed "building e2e_node.test failed"
log "kubelet: $kube_bin; e2e_node.test, ginkgo, agnhost, nnp: $node_bin ($((SECONDS - t0)) s)"
# The kubelet is started a minute or more from now: a copy of its own, so
# that a build in another worktree that prunes the cache cannot pull it away.
kube_copy="$(mktemp -d /tmp/tether-node-kubelet.XXXXXX)"
trap 'rm -rf "$kube_copy"' EXIT
cp "$kube_bin/kubelet" "$kube_copy/kubelet"
kube_bin="$kube_copy"

# ---------------------------------------------------------------- images ---
prepare_images() {
    local debdir="$cache/cri-busybox" deb porter key w
    mkdir -p "$debdir"
    exec 7>"$cache/.node-images.lock"
    flock 7
    deb="$(compgen -G "$debdir/busybox_*.deb" | head -n1 || true)"
    if [[ -z "$deb" ]]; then
        (cd "$debdir" && { apt-get download busybox >&2 || { apt-get update >&2 && apt-get download busybox >&2; }; })
        deb="$(compgen -G "$debdir/busybox_*.deb" | head -n1)"
    fi
    porter="$(cd "$here/tests/kube" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost/porter"
    [[ -f "$porter/localhost.crt" ]] || { log "no $porter/localhost.crt"; return 1; }
    key="$(cat "$here/scripts/node/mkimages.py" "$here/scripts/cri/mkimages.py" "$here/tests/node/images/"*.c \
        "$here/tests/cri/images/pause.c" "$node_bin/agnhost" "$node_bin/nnp" /usr/bin/curl \
        <(basename "$deb") <(gcc --version | head -n1) | sha256sum | cut -c1-16)"
    images_dir="$cache/node-images-$key"
    if [[ ! -f "$images_dir/images.txt" ]]; then
        log "building the node test images into $images_dir"
        w="$images_dir.tmp.$$"
        rm -rf "$w"
        mkdir -p "$w/bb" "$w/bin"
        dpkg -x "$deb" "$w/bb"
        gcc -static -O2 -o "$w/bin/pause" "$here/tests/cri/images/pause.c"
        gcc -static -O2 -o "$w/bin/nmeter" "$here/tests/node/images/nmeter.c"
        gcc -static -O2 -o "$w/bin/nc" "$here/tests/node/images/nc.c" 2>/dev/null
        python3 "$here/scripts/node/mkimages.py" --out "$w/oci" --busybox-root "$w/bb" \
            --agnhost "$node_bin/agnhost" --nnp "$node_bin/nnp" --nmeter "$w/bin/nmeter" --nc "$w/bin/nc" \
            --pause "$w/bin/pause" --porter "$porter"
        mv "$w/oci" "$images_dir"
        rm -rf "$w"
        local old
        for old in "$cache"/node-images-*; do
            [[ "$old" == "$images_dir" ]] || rm -rf "$old"
        done
    fi
    exec 7>&-
}
images_dir=""
prepare_images || setup_failed "building the test images failed"

# ------------------------------------------------------------------- run ---
if [[ -z "$results" ]]; then
    results="/tmp/tether-node-conformance/$handler-$(date -u +%Y%m%dT%H%M%SZ)"
fi
mkdir -p "$results"
results="$(realpath "$results")"
log "results: $results"
out="$(mktemp)"
trap 'rm -f "$out"; rm -rf "$kube_copy"' EXIT
# The whole critest.sh run in a private mount namespace: containerd, the
# kubelet and the shims share it (the kubelet's volume mounts must be
# visible to containerd), and /usr/bin/systemd-run is /dev/null in it only.
# In the background, so that a TERM or INT sent to this script reaches
# critest.sh (unshare execs it: same PID) and its clean-up runs.
cgname="tether-nodeconf-$$"
unshare -m --propagation private bash -c 'mount --bind /dev/null /usr/bin/systemd-run && exec "$@"' node-ns \
    bash "$here/scripts/critest.sh" --containerd 2.3.7 --runc 1.5.3 --handler "$handler" \
    --default-runtime "$handler" --containerd-cgroup "$cgname" --images "$images_dir" \
    --results "$results/critest" "${shim[@]}" "${keep[@]}" \
    --exec -- env NODE_BIN="$node_bin" KUBE_BIN="$kube_bin" NODE_RESULTS="$results" \
    NODE_FOCUS="$focus" NODE_SKIP="$skip" NODE_PROCS="$procs" \
    bash "$here/scripts/node/run.sh" >"$out" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
rc=0
wait "$pid" || rc=$?
while kill -0 "$pid" 2>/dev/null; do
    rc=0
    wait "$pid" || rc=$?
done
trap - TERM INT
cat "$out" >&2

# ---------------------------------------------------------------- report ---
[[ -f "$results/report.json" ]] || setup_failed "the suite wrote no report (status $rc); see $results"
read -r passed failed skipped < <(python3 "$here/scripts/node/report.py" "$results/report.json" "$results")
status=0
[[ $failed -gt 0 ]] && status=1
if [[ $rc != 0 && $failed == 0 ]]; then
    log "the suite exited $rc with no failed spec"
    status=2
fi
log "results: $results; the whole run took $((SECONDS - started)) s"
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
